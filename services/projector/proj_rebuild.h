/* proj_rebuild: `stockflow-projector --rebuild`, the read model replayed
 * from the log into fresh tables and switched in atomically.
 *
 * Steps (docs/operations.md, "Rebuilding the read model"):
 *  1. Take the session advisory lock PROJ_REBUILD_LOCK (one rebuild at a
 *     time); drop leftovers of an interrupted rebuild.
 *  2. Create schema stockflow_rebuild_<unix time> with a copy of every
 *     read-model table (columns, defaults, constraints with their names,
 *     an own sequence for changes.id, owner and grants; secondary indexes
 *     and foreign keys only after the load, which is faster).
 *  3. Replay both topics from offset 0 with a group-less consumer up to the
 *     high watermarks measured at the start, through the same plan and
 *     statements as the live projector (proj_intake, proj_pg with the
 *     schema as search_path), offsets recorded under the live group. The
 *     replay writes no change log and no dead letters: that history was
 *     already announced and dead-lettered by the live projector.
 *  4. Catch up, unlocked, to the live projector's stored offsets.
 *  5. In one transaction on the rebuild's connection: LOCK the public
 *     read-model tables (ACCESS EXCLUSIVE, in the order the live projector
 *     writes them, so the two cannot deadlock; lock_timeout with retries so
 *     a long reader cannot stall everyone behind the lock), catch up to the
 *     live offsets once more (they cannot move while we hold the lock), copy
 *     other groups' offset rows, start the new change log after every id
 *     the old one handed out and mark those ids pruned (clients resume with
 *     cursor_expired and take a fresh snapshot: the rebuilt state may differ
 *     from what they saw), move the public tables to stockflow_old_<ts> and
 *     the rebuilt ones to public, drop the old schema, notify
 *     stockflow_offsets and stockflow_changes, COMMIT.
 *
 * Why the running projector needs no pause: its next batch waits on the
 * lock; after the COMMIT its prepared statements are re-analysed against
 * the new public tables (PostgreSQL replans a cached statement whose tables
 * changed), and it continues from its in-memory position. That is correct
 * because the rebuilt offsets are >= its position (step 5 catches up to
 * exactly its stored offsets, or beyond when the rebuild was ahead), every
 * write is version-guarded or ON CONFLICT DO NOTHING (re-applying an event
 * changes nothing and writes no change row), and stored offsets only move
 * forward. A rebalance later re-reads the offsets from the new table.
 *
 * Progress: a log line with done/total offsets, rate and ETA every
 * few seconds of the replay, and an optional callback (opts.progress).
 *
 * Not thread-safe except proj_rebuild_stop. No global state. */
#ifndef PROJ_REBUILD_H
#define PROJ_REBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "sf/log.h"

/* Session advisory lock held for the whole rebuild. */
#define PROJ_REBUILD_LOCK 4243

typedef struct proj_rebuild proj_rebuild_t;

/* Where a rebuild is, for a progress display. done and total count log
 * offsets over every partition of both topics (events and the transaction
 * markers between them: a count of events cannot be known before reading
 * them); total is the sum of the high watermarks measured at the start,
 * raised when the catch-up follows the live projector further. Before the
 * replay both are 0. rate (offsets per second) and eta_s (negative while
 * unknown) come from sf_progress. */
typedef struct proj_rebuild_progress {
  const char *phase; /* "lock", "create", "replay", "indexes", "catch-up",
                        "switch": static strings */
  uint64_t done, total;
  double rate, eta_s, elapsed_s;
} proj_rebuild_progress_t;

/* Fires on the rebuild's thread at the start of each phase and at most
 * every progress_ms during the replay and the catch-up; p is borrowed for
 * the call. It must not call back into the rebuild. */
typedef void (*proj_rebuild_progress_cb)(void *ud,
                                         const proj_rebuild_progress_t *p);

typedef struct proj_rebuild_opts {
  const char *brokers;
  const char *group; /* the live projector's group: key of the offsets */
  const char *topic_catalog;
  const char *topic_stock;
  const char *registry_url; /* schema registry; NULL or "" when none */
  const char *pg_dsn;
  size_t batch_max;
  int batch_wait_ms;
  int lock_timeout_ms;               /* per attempt to lock the public tables; 5000 if <= 0 */
  int lock_attempts;                 /* 10 if <= 0 */
  proj_rebuild_progress_cb progress; /* optional */
  void *progress_ud;
  int progress_ms; /* between two progress callbacks; 1000 if <= 0 */
} proj_rebuild_opts_t;

typedef struct proj_rebuild_report {
  char schema[64];   /* the schema the tables were built in */
  uint64_t messages; /* consumed */
  uint64_t applied;  /* decoded events in committed batches */
  uint64_t poison;   /* undecodable or unstorable (skipped) */
  uint64_t batches;
  uint64_t caught_up;     /* messages applied under the switch lock */
  double replay_seconds;  /* steps 3 and 4 */
  double switch_seconds;  /* step 5, lock to commit */
  int64_t pruned_through; /* the new changes_meta.pruned_through */
} proj_rebuild_report_t;

/* Creates the rebuild (no connection yet). Strings of opts and log are
 * borrowed and must outlive it. Returns 0, SF_EINVAL or SF_ENOMEM. */
int proj_rebuild_new(proj_rebuild_t **out, const proj_rebuild_opts_t *opts,
                     sf_log_t *log);
void proj_rebuild_destroy(proj_rebuild_t *rb);

/* Runs the whole rebuild on the calling thread (minutes for a big log).
 * Returns 0 after the switch committed (rep filled), SF_ECANCELED after
 * proj_rebuild_stop (the new schema is dropped, public is untouched),
 * SF_ESTATE when another rebuild holds the lock, SF_ECONFIG
 * when the database or the log cannot be rebuilt (tables missing, a topic
 * whose log no longer starts at offset 0), SF_EPG / SF_EKAFKA on
 * failures (public untouched unless the final COMMIT succeeded). */
int proj_rebuild_run(proj_rebuild_t *rb, proj_rebuild_report_t *rep);

/* Asks a running rebuild to stop before the switch; safe from any thread
 * (not from a signal handler). Once the switch transaction has begun it
 * runs to its end. */
void proj_rebuild_stop(proj_rebuild_t *rb);

#endif

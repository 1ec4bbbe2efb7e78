/* proj_pg: the projector's own blocking PostgreSQL connection.
 *
 * The projector's work is one transaction per batch, and a batch cannot
 * start before the previous one committed (its offsets depend on it), so
 * there is nothing to overlap: one blocking libpq connection on the worker
 * thread is the simplest correct tool (sf_pg is the loop-driven pool for the
 * request-serving services). It prepares the statements of proj_batch on
 * connect, runs a plan inside BEGIN ... COMMIT and reads the stored offsets.
 *
 * The change log: after the plan's stock statement (which returns the ids of
 * the transactions rows it really inserted, in event order) the batch takes
 * pg_advisory_xact_lock(PROJ_CHANGES_LOCK) and inserts one changes row per
 * inserted transaction, in that order. The lock serialises the short tail
 * (changes insert, offsets, notifications, COMMIT) of two projector
 * instances' transactions, so change ids become visible in id order: a
 * reader that sees id n has already seen every id below it. Inside the same
 * transaction it then sends pg_notify('stockflow_changes', max change id)
 * (only when the batch wrote changes) and pg_notify('stockflow_offsets',
 * ''), both delivered at COMMIT.
 *
 * One thread at a time (the worker's). No global state. */
#ifndef PROJ_PG_H
#define PROJ_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proj_batch.h"
#include "sf/kafka.h"
#include "sf/log.h"

typedef struct proj_pg proj_pg_t;
struct pg_conn;   /* libpq's PGconn */
struct pg_result; /* libpq's PGresult */

/* The advisory lock key of the change log tail (phase 2 contract). */
#define PROJ_CHANGES_LOCK 4242

typedef struct proj_pg_opts {
  const char *dsn;   /* libpq connection string */
  const char *group; /* consumer group: the key of the stored offsets */
  /* NULL: the default search_path (the live read model in public). Else
   * the only schema on the search_path: the rebuild writes into its own
   * schema with the same statements. */
  const char *schema;
  /* false: no changes rows and no notifications (the rebuild, whose
   * replayed history is not news to anyone). */
  bool change_log;
} proj_pg_opts_t;

/* What a committed batch did beyond its plan. */
typedef struct proj_pg_result {
  size_t changes;     /* changes rows written */
  int64_t max_change; /* highest change id written, 0 when none */
} proj_pg_result_t;

/* Why the last operation failed (for logs): sqlstate is "" for connection
 * errors; stmt names the step ("connect", "BEGIN", a statement name, ...). */
typedef struct proj_pg_error {
  char sqlstate[6];
  char stmt[32];
  char message[512];
} proj_pg_error_t;

/* Creates the handle without connecting. The strings of opts and log are
 * borrowed and must outlive it. Returns 0, SF_EINVAL or SF_ENOMEM. */
int proj_pg_new(proj_pg_t **out, const proj_pg_opts_t *opts, sf_log_t *log);
void proj_pg_destroy(proj_pg_t *pg);

/* Connects (dropping any previous connection) and prepares the statements.
 * Blocks up to the connect timeout. Returns 0 or SF_EPG with err filled. */
int proj_pg_connect(proj_pg_t *pg, proj_pg_error_t *err);
/* True when the connection is up (as far as libpq knows). */
bool proj_pg_connected(const proj_pg_t *pg);

/* Sets tps[i].offset to the stored next_offset of the group for that topic
 * x partition, or SF_KAFKA_OFFSET_BEGINNING when none is stored. Connects
 * first if needed. Returns 0 or SF_EPG (tps unchanged). */
int proj_pg_load_offsets(proj_pg_t *pg, sf_kafka_tp_t *tps, size_t n,
                         proj_pg_error_t *err);

/* Runs every statement of plan with rows in one transaction: the plan's
 * statements, the change log (see above), the offsets, the notifications.
 * On any failure rolls back and returns SF_EPG with err filled; the caller
 * may call again with the same plan (after proj_pg_connect when the
 * connection is lost). Returns 0 on commit; res (may be NULL) then says
 * what the change log got. */
int proj_pg_apply(proj_pg_t *pg, const proj_plan_t *plan,
                  proj_pg_result_t *res, proj_pg_error_t *err);

/* The same statements inside a transaction the caller already opened (with
 * proj_pg_conn): no BEGIN, no COMMIT, no ROLLBACK. On failure the caller's
 * transaction is aborted and the caller must roll it back. Returns 0 or
 * SF_EPG. */
int proj_pg_apply_open(proj_pg_t *pg, const proj_plan_t *plan,
                       proj_pg_result_t *res, proj_pg_error_t *err);

/* Retention of the change log: in one transaction, deletes the changes up
 * to the highest id recorded before now() - retention_s (a prefix of ids,
 * so that "id <= pruned_through is gone" stays exact even when two
 * instances' recorded_at and id orders differ) and raises
 * changes_meta.pruned_through to it. *deleted gets the rows deleted,
 * *pruned_through the new value (unchanged when nothing was old enough).
 * Returns 0 or SF_EPG. */
int proj_pg_prune(proj_pg_t *pg, long long retention_s, int64_t *deleted,
                  int64_t *pruned_through, proj_pg_error_t *err);

/* The open connection for statements this module does not wrap (the
 * rebuild's DDL), or NULL when not connected. Borrowed; same thread rules
 * as the handle. */
struct pg_conn *proj_pg_conn(proj_pg_t *pg);

/* Fills err from the connection or res (may be NULL) for a statement the
 * caller ran through proj_pg_conn. */
void proj_pg_set_error(proj_pg_t *pg, proj_pg_error_t *err, const char *stmt,
                       const struct pg_result *res);

#endif

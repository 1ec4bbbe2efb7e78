/* cmd_writer: the command service's single writer, with group commit.
 *
 * One thread owns the transactional Kafka producers (acks=all, idempotence,
 * stable transactional.ids so that a second instance with the same ids
 * fences this one). Transactions go to them in turn, one at a time, so the
 * log holds them in the order they were decided; with two or more, a
 * producer's next transaction starts after the coordinator has completed
 * its previous one (no CONCURRENT_TRANSACTIONS refusal and 20 ms retry).
 * The price: a transaction's commit markers may land after the next one's,
 * so read_committed readers can see two partitions' transactions in the
 * other order for a moment. Within a partition the order holds; across
 * topics the writer keeps catalog before stock by giving the transaction
 * after one with a catalog event to the same producer.
 *
 * Units of work (the messages of one command, which must commit together)
 * are submitted from the loop thread; the writer takes
 * everything queued (up to max_batch messages), produces it in ONE Kafka
 * transaction and commits. While one transaction commits, the next batch
 * fills: that is the group commit. The outcome of each batch comes back to
 * the loop thread (done callback), with the partition and offset of every
 * message, and only then are the requests answered.
 *
 * Failure: if a batch fails, it is aborted, every unit queued after it
 * fails too (they were decided against a state that assumed the batch),
 * the state is rebuilt from the log and handed back (state callback), and
 * the generation counter moves on; a unit submitted for an older generation
 * fails without being sent. At start the thread runs init_transactions
 * (which also aborts a transaction left open by a crashed predecessor with
 * the same id), then the first rebuild.
 *
 * Threads: cmd_writer_new, _submit and _destroy are called on the loop
 * thread; callbacks fire on the loop thread. */
#ifndef CMD_WRITER_H
#define CMD_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cmd_state.h"
#include "sf/event.h"
#include "sf/log.h"

/* One Kafka message of a unit. The loop fills the input fields; the writer
 * fills the result fields before the done callback. */
typedef struct cmd_msg {
  struct cmd_msg *next;
  const char *topic;          /* borrowed from the settings */
  char key[SF_ID_LEN];        /* partition key: store id or catalog id */
  uint8_t *value;             /* owned (free()d with the message) */
  size_t value_len;
  /* CloudEvents Kafka binding headers */
  char ce_id[SF_ID_LEN];
  char ce_type[64];
  char ce_time[40];
  char ce_subject[128];
  /* results */
  int err;                    /* 0 or a negative SF_E code */
  int32_t partition;
  int64_t offset;
} cmd_msg_t;

/* A unit: the messages of one command; they commit or fail together. */
typedef struct cmd_unit {
  struct cmd_unit *next;
  cmd_msg_t *msgs;
  size_t n_msgs;
  uint64_t generation; /* the state generation it was decided against */
  int err;             /* result: 0 or negative SF_E code */
  uint64_t batch_id;   /* which transaction carried it */
  size_t batch_units;  /* how many units that transaction carried */
  void *ud;            /* the caller's (e.g. the pending HTTP request) */
} cmd_unit_t;

/* Frees a unit and its messages. */
void cmd_unit_free(cmd_unit_t *u);

typedef struct cmd_writer cmd_writer_t;

#define CMD_WRITER_MAX_PRODUCERS 8

typedef struct cmd_writer_opts {
  const char *brokers;
  const char *transactional_id; /* producer 0; producer i > 0: "<id>-<i>" */
  size_t producers;             /* 1 .. CMD_WRITER_MAX_PRODUCERS */
  const char *topic_catalog;
  const char *topic_stock;
  size_t max_batch;        /* messages per transaction */
  int64_t linger_us;       /* extra wait for a fuller batch; 0: none */
  int txn_timeout_ms;      /* commit/abort bound */
  int64_t idem_retention_us; /* idempotency keys restored by the rebuild */
  /* optional, borrowed: kept current by every rebuild (cmd_rebuild.h) */
  struct cmd_rebuild_progress *rebuild_progress;
} cmd_writer_opts_t;

/* Fires once per unit on the loop thread; takes ownership of unit. */
typedef void (*cmd_writer_done_cb)(void *ud, cmd_unit_t *unit);
/* Fires when a (re)built state is ready; takes ownership of state.
 * generation is the value to tag the units decided against it. */
typedef void (*cmd_writer_state_cb)(void *ud, cmd_state_t *state,
                                    uint64_t generation, double seconds,
                                    uint64_t events);
/* Fires when the writer cannot go on (fenced by another instance, or a
 * fatal producer error); reason is borrowed for the call. */
typedef void (*cmd_writer_fatal_cb)(void *ud, const char *reason);
/* Fires when a batch fails: the loop should stop taking writes until the
 * next state callback. */
typedef void (*cmd_writer_resync_cb)(void *ud, const char *reason);

typedef struct cmd_writer_cbs {
  cmd_writer_done_cb done;
  cmd_writer_state_cb state;
  cmd_writer_fatal_cb fatal;
  cmd_writer_resync_cb resync;
  void *ud;
} cmd_writer_cbs_t;

/* Starts the writer thread. opts strings are borrowed for the writer's
 * life; loop and log are borrowed. Returns 0, SF_ENOMEM, SF_EINTERNAL. */
int cmd_writer_new(cmd_writer_t **out, uv_loop_t *loop,
                   const cmd_writer_opts_t *opts, const cmd_writer_cbs_t *cbs,
                   sf_log_t *log);

/* Queues a unit (ownership passes to the writer; it comes back through the
 * done callback, always, even on shutdown). */
void cmd_writer_submit(cmd_writer_t *w, cmd_unit_t *unit);

/* Asks for a rebuild of the state from the log before the next batch (the
 * loop's state no longer matches what it submitted, e.g. an event that was
 * decided could not be folded): units queued now fail with SF_EUNAVAILABLE,
 * the generation moves on, the resync callback fires, then the state
 * callback with the rebuilt state. The batch being committed, decided
 * earlier, finishes. reason is copied. */
void cmd_writer_resync(cmd_writer_t *w, const char *reason);

/* Stats for /metrics (read on the loop thread). */
typedef struct cmd_writer_stats {
  uint64_t batches, batch_units, batch_msgs, failed_batches;
  double commit_seconds_sum;
} cmd_writer_stats_t;
void cmd_writer_stats(cmd_writer_t *w, cmd_writer_stats_t *out);

/* Stops the thread (the batch being committed finishes), fails queued
 * units with SF_ECANCELED through the done callback, destroys the
 * producer. Runs the loop's pending callbacks; call before closing the
 * loop. */
void cmd_writer_destroy(cmd_writer_t *w);

#endif

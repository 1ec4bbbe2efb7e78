/* proj_worker: the projector's consume -> apply loop, on its own thread.
 *
 * The worker owns a Kafka consumer (group, read_committed, both topics,
 * never committing to Kafka) and a blocking PostgreSQL connection
 * (proj_pg). On assignment it seeks every partition to the next_offset
 * stored in projector_offsets. It then repeats: poll up to batch_max
 * messages or batch_wait_ms after the first one, decode, plan
 * (proj_batch), dead-letter what cannot be applied (proj_dlq, acknowledged
 * before the commit), and apply the plan with its change log and offsets in
 * one transaction. A failed batch is rolled back and retried with backoff
 * from the messages it keeps in memory, never skipped. Between batches it
 * refreshes the consumer-lag gauges (every 5 s) and prunes the change log
 * (every 60 s).
 *
 * Two instances in one group share the partitions: every assignment
 * re-reads the stored offsets, and a batch that straddles a rebalance may
 * apply events the new owner applies too, which the version guards and
 * ON CONFLICT clauses make harmless (offsets only move forward).
 *
 * It reports to a proj_status_t (borrowed) that the HTTP thread reads.
 * proj_worker_stop may be called from any thread (it sets an atomic flag);
 * the worker then aborts the batch in hand (nothing is committed for it, so
 * it is read again at the next start) and its thread ends. Every other
 * function belongs to the thread that created the worker. */
#ifndef PROJ_WORKER_H
#define PROJ_WORKER_H

#include <stddef.h>

#include "proj_status.h"
#include "sf/log.h"

typedef struct proj_worker proj_worker_t;

typedef struct proj_worker_opts {
  const char *brokers;
  const char *group;         /* consumer group and projector_offsets key */
  const char *topic_catalog; /* e.g. "inventory.catalog" */
  const char *topic_stock;   /* e.g. "inventory.stock" */
  const char *topic_dlq;     /* e.g. "inventory.dlq" */
  const char *registry_url;  /* schema registry; NULL or "" when none */
  const char *pg_dsn;
  size_t batch_max;      /* messages per batch, >= 1 */
  int batch_wait_ms;     /* wait after a batch's first message, >= 0 */
  int stats_interval_ms; /* the periodic info line; 10000 when <= 0 */
  long long retention_s; /* change log retention; <= 0: never prune */
  int prune_interval_ms; /* 60000 when <= 0 */
  int lag_interval_ms;   /* 5000 when <= 0 */
  /* Called on the worker thread as its last act, with 0 after a requested
   * stop or a negative code after a fatal error (e.g. the consumer is
   * broken). May be NULL. Use it to wake the loop (uv_async_send). */
  void (*on_exit)(void *ud, int rc);
  void *on_exit_ud;
} proj_worker_opts_t;

/* Creates the worker and its consumer (no thread yet). Strings in opts are
 * borrowed and must outlive the worker; st and log too. Returns 0,
 * SF_EINVAL, SF_ENOMEM, SF_ESCHEMA or SF_ECONFIG / SF_EKAFKA. */
int proj_worker_new(proj_worker_t **out, const proj_worker_opts_t *opts,
                    proj_status_t *st, sf_log_t *log);

/* Starts the thread. Returns 0 or SF_EINTERNAL. */
int proj_worker_start(proj_worker_t *w);

/* Asks the thread to stop; returns at once. Safe from any thread (not from
 * a signal handler: use uv_signal, which runs on the loop). */
void proj_worker_stop(proj_worker_t *w);

/* Waits for the thread to end; returns its exit code (see on_exit), or 0
 * when it was never started. */
int proj_worker_join(proj_worker_t *w);

/* Frees the worker; join first when it was started. NULL is fine. */
void proj_worker_destroy(proj_worker_t *w);

#endif

/* cmd_rebuild: folds the whole event log into a fresh state.
 *
 * Reads every partition of the catalog topic, then of the stock topic, from
 * the beginning to the end as it stands at the start of the call, with
 * isolation.level=read_committed (aborted transactions are invisible), and
 * applies each event with cmd_state_apply. Duplicates (a stream version
 * already applied, which librdkafka 2.0 can produce after a timeout or
 * restart) are skipped and counted. An event that does not decode is logged
 * and skipped: it cannot have been accepted by this service.
 *
 * Progress: the end offsets of every partition of both topics are read
 * first; done/total count log offsets (events and the transaction markers
 * between them, which is what the end offsets count). A log line with
 * done/total, rate and ETA opens the replay, follows every 5 s and closes
 * it, and a cmd_rebuild_progress_t, when given, is kept current (about 4
 * times a second) for other threads (/readyz, /metrics).
 *
 * Blocking; runs on the writer thread. Thread-safe with respect to other
 * threads (it owns everything it creates). */
#ifndef CMD_REBUILD_H
#define CMD_REBUILD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cmd_state.h"
#include "sf/log.h"

typedef struct cmd_rebuild_stats {
  uint64_t events, duplicates, skipped, idempotency_keys;
  double seconds;
} cmd_rebuild_stats_t;

/* Progress shared with other threads: written by the rebuild, read by
 * anyone through cmd_rebuild_progress_read (each field is atomic; a read
 * is not one snapshot, which a display does not need). Embed it in an
 * object that outlives the rebuild and cmd_rebuild_progress_init it. */
typedef struct cmd_rebuild_progress {
  atomic_bool running;
  _Atomic uint64_t done, total; /* log offsets */
  _Atomic uint64_t rate_milli;  /* offsets per second x 1000 */
  _Atomic int64_t eta_ms;       /* -1 while unknown */
  _Atomic int64_t elapsed_ms;
} cmd_rebuild_progress_t;

typedef struct cmd_rebuild_snapshot {
  bool running;
  uint64_t done, total;
  double rate, eta_s, elapsed_s; /* eta_s negative while unknown */
} cmd_rebuild_snapshot_t;

void cmd_rebuild_progress_init(cmd_rebuild_progress_t *p);
/* Safe from any thread. */
void cmd_rebuild_progress_read(const cmd_rebuild_progress_t *p,
                               cmd_rebuild_snapshot_t *out);

/* Returns 0 with *out (caller owns) or SF_EKAFKA / SF_ENOMEM /
 * SF_ECANCELED (stop became true). */
/* Events in the Confluent wire format have their schema ids looked up at
 * registry_url (NULL or "": none, and such events are skipped as
 * undecodable); a registry that does not answer is waited for (logged,
 * retried until stop). Events carrying an idempotency key younger than
 * idem_retention_us also
 * restore the key's first answer (cmd_reply), so a retry after a restart
 * is answered exactly as the first time. progress (may be NULL; borrowed)
 * is running from the start to the end of the call. */
int cmd_rebuild_run(const char *brokers, const char *topic_catalog,
                    const char *topic_stock, const char *registry_url,
                    int64_t idem_retention_us,
                    const atomic_bool *stop, sf_log_t *log, cmd_state_t **out,
                    cmd_rebuild_stats_t *stats,
                    cmd_rebuild_progress_t *progress);

#endif

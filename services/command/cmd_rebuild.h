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
 * Blocking; runs on the writer thread. Thread-safe with respect to other
 * threads (it owns everything it creates). */
#ifndef CMD_REBUILD_H
#define CMD_REBUILD_H

#include <stdatomic.h>
#include <stdint.h>

#include "cmd_state.h"
#include "sf/log.h"

typedef struct cmd_rebuild_stats {
  uint64_t events, duplicates, skipped, idempotency_keys;
  double seconds;
} cmd_rebuild_stats_t;

/* Returns 0 with *out (caller owns) or SF_EKAFKA / SF_ENOMEM /
 * SF_ECANCELED (stop became true). */
/* Events carrying an idempotency key younger than idem_retention_us also
 * restore the key's first answer (cmd_reply), so a retry after a restart
 * is answered exactly as the first time. */
int cmd_rebuild_run(const char *brokers, const char *topic_catalog,
                    const char *topic_stock, int64_t idem_retention_us,
                    const atomic_bool *stop, sf_log_t *log, cmd_state_t **out,
                    cmd_rebuild_stats_t *stats);

#endif

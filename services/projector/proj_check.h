/* proj_check: `stockflow-projector --check`, the conservation check.
 *
 * In one REPEATABLE READ snapshot of PostgreSQL it reads the offsets the
 * projector's consumer group has applied to the stock topic and every
 * inventory row; then it reads the stock topic itself (read_committed, no
 * consumer group) from the beginning up to exactly those offsets and folds
 * it with proj_ledger. So the read model and the fold describe the same
 * prefix of the log, and the check may run while the projector is busy.
 * It writes a report to out: one line per store x product whose read-model
 * row differs from the log, one per product whose Σ stores + in transit
 * differs from Σ movements, and a summary.
 *
 * Blocking (libpq, librdkafka); one call at a time. */
#ifndef PROJ_CHECK_H
#define PROJ_CHECK_H

#include <stddef.h>
#include <stdio.h>

#include "sf/log.h"

typedef struct proj_check_opts {
  const char *brokers;
  const char *group; /* the projector's group: whose offsets are checked */
  const char *topic_stock;
  const char *registry_url; /* schema registry; NULL or "" when none */
  const char *pg_dsn;
  int timeout_ms; /* bound on reading the log without progress */
} proj_check_opts_t;

/* Runs the check. Returns 0 with *differences set (0: the read model and
 * the log agree), or an error (logged: PostgreSQL or Kafka unreachable,
 * the log shorter than the stored offsets, ...). */
int proj_check_run(const proj_check_opts_t *o, FILE *out, sf_log_t *log,
                   size_t *differences);

#endif

/* proj_config: the projector's settings and the table that describes them.
 *
 * One table (key, type, default, range, environment variable, help) drives
 * flags, environment, --help, --print-config and docs/configuration.md via
 * sf_config. Flags mirror the environment names in kebab case
 * (STOCKFLOW_PROJECTOR_BATCH_MAX <-> --projector-batch-max). */
#ifndef PROJ_CONFIG_H
#define PROJ_CONFIG_H

#include <stdbool.h>

#include "sf/config.h"

typedef struct proj_config {
  const char *kafka_brokers;
  const char *pg_dsn;
  const char *listen; /* host:port of /healthz, /readyz, /metrics */
  const char *log_level;
  const char *topic_catalog;
  const char *topic_stock;
  const char *schema_registry_url; /* "" when none */
  const char *topic_dlq;
  const char *group;
  long long batch_max;
  long long batch_wait_ms;
  long long max_body;
  long long changes_retention_s;
  bool rebuild;               /* run the one-shot rebuild instead of the service */
  bool check;                 /* run the one-shot conservation check (proj_check) */
  bool rebuild_progress_json; /* --rebuild: progress as JSON lines on stdout */
} proj_config_t;

/* The static spec (program name, summary, table). */
const sf_cfg_spec_t *proj_config_spec(void);

#endif

/* proj_config: the projector's configuration table (see proj_config.h). */
#include "proj_config.h"

#include <stddef.h>

#define F(field) offsetof(proj_config_t, field), SF_CFG_OWN
#define S(id, help, field) SF_CFG_SHARED(id, help, offsetof(proj_config_t, field))

static const sf_cfg_entry_t k_entries[] = {
    S(SF_CFG_KAFKA_BROKERS, NULL, kafka_brokers),
    S(SF_CFG_PG_DSN, "libpq connection string of the read-model database",
      pg_dsn),
    {"projector-listen", SF_CFG_STRING, "127.0.0.1:8083", 0, 0,
     "STOCKFLOW_PROJECTOR_LISTEN",
     "host:port of the operations endpoints (/healthz, /readyz, /metrics)",
     F(listen)},
    S(SF_CFG_LOG_LEVEL, NULL, log_level),
    S(SF_CFG_TOPIC_CATALOG, NULL, topic_catalog),
    S(SF_CFG_TOPIC_STOCK, NULL, topic_stock),
    S(SF_CFG_SCHEMA_REGISTRY_URL, NULL, schema_registry_url),
    {"topic-dlq", SF_CFG_STRING, "inventory.dlq", 0, 0, "STOCKFLOW_TOPIC_DLQ",
     "dead-letter topic: messages that do not decode or cannot be stored",
     F(topic_dlq)},
    S(SF_CFG_PROJECTOR_GROUP, NULL, group),
    {"projector-batch-max", SF_CFG_INT, "1000", 1, 10000,
     "STOCKFLOW_PROJECTOR_BATCH_MAX",
     "most messages applied in one PostgreSQL transaction", F(batch_max)},
    {"projector-batch-wait-ms", SF_CFG_INT, "0", 0, 10000,
     "STOCKFLOW_PROJECTOR_BATCH_WAIT_MS",
     "extra wait for more messages after a batch's first one (0: apply what "
     "has arrived at once; batches still grow under load)",
     F(batch_wait_ms)},
    {"max-body", SF_CFG_INT, "65536", 1024, 16777216, "STOCKFLOW_MAX_BODY",
     "largest HTTP request body in bytes", F(max_body)},
    {"changes-retention-s", SF_CFG_INT, "604800", 60, 315360000,
     "STOCKFLOW_CHANGES_RETENTION_S",
     "seconds the change log keeps a row (pruned every 60 s)",
     F(changes_retention_s)},
    {"rebuild", SF_CFG_BOOL, "false", 0, 0, "STOCKFLOW_REBUILD",
     "one-shot: replay both topics into fresh tables, switch them in "
     "atomically, exit (see docs/operations.md)",
     F(rebuild)},
    {"check", SF_CFG_BOOL, "false", 0, 0, "STOCKFLOW_CHECK",
     "one-shot: fold the stock topic up to the group's applied offsets and "
     "compare it with the inventory read model (exit 0 equal, 1 "
     "differences, 2 error; see docs/operations.md)",
     F(check)},
    {"rebuild-progress-json", SF_CFG_BOOL, "false", 0, 0,
     "STOCKFLOW_REBUILD_PROGRESS_JSON",
     "with --rebuild: also write its progress (phase, done/total offsets, "
     "rate, ETA) as one JSON object per line on stdout, every second",
     F(rebuild_progress_json)},
};

static const sf_cfg_spec_t k_spec = {
    .prog = "stockflow-projector",
    .summary = "Applies inventory.catalog and inventory.stock events to the "
               "PostgreSQL read models, exactly once.",
    .entries = k_entries,
    .n_entries = sizeof k_entries / sizeof k_entries[0],
};

const sf_cfg_spec_t *proj_config_spec(void) { return &k_spec; }

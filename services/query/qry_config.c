/* qry_config: the settings table of stockflow-query. See qry_config.h. */
#include "qry_config.h"

#include <stddef.h>

#define E(key, type, def, min, max, env, help, field)                     \
  { key, type, def, min, max, env, help, offsetof(qry_settings_t, field), \
    SF_CFG_OWN }
#define S(id, help, field) SF_CFG_SHARED(id, help, offsetof(qry_settings_t, field))

static const sf_cfg_entry_t entries[] = {
    E("query-listen", SF_CFG_STRING, "127.0.0.1:8082", 0, 0,
      "STOCKFLOW_QUERY_LISTEN", "HTTP listen address (host:port)", listen),
    S(SF_CFG_PG_DSN, "libpq connection string of the read models", pg_dsn),
    E("pg-pool", SF_CFG_INT, "4", 1, 256, "STOCKFLOW_PG_POOL",
      "PostgreSQL connections in the pool", pg_pool),
    E("pg-statement-timeout-ms", SF_CFG_INT, "30000", 0, 3600000,
      "STOCKFLOW_PG_STATEMENT_TIMEOUT_MS",
      "statement_timeout of each connection in ms (0: none)",
      pg_statement_timeout_ms),
    E("min-position-wait-ms", SF_CFG_INT, "5000", 0, 600000,
      "STOCKFLOW_MIN_POSITION_WAIT_MS",
      "how long a read waits for ?min_position= before 504", min_position_wait_ms),
    S(SF_CFG_PROJECTOR_GROUP, NULL, projector_group),
    S(SF_CFG_TOPIC_CATALOG, NULL, topic_catalog),
    S(SF_CFG_TOPIC_STOCK, NULL, topic_stock),
    E("position-poll-ms", SF_CFG_INT, "250", 10, 60000,
      "STOCKFLOW_POSITION_POLL_MS",
      "safety re-check period of a min_position wait (it is woken by NOTIFY "
      "stockflow_offsets first)",
      position_poll_ms),
    E("stream-max-buffer", SF_CFG_INT, "1048576", 4096, 1073741824,
      "STOCKFLOW_STREAM_MAX_BUFFER",
      "unsent bytes a change stream may hold before it is cut off "
      "(overflow)",
      stream_max_buffer),
    E("stream-heartbeat-ms", SF_CFG_INT, "15000", 10, 3600000,
      "STOCKFLOW_STREAM_HEARTBEAT_MS",
      "heartbeat period of change streams (SSE comment, WebSocket ping); "
      "a stream making no progress for 4 periods is cut off",
      stream_heartbeat_ms),
    E("max-body", SF_CFG_INT, "65536", 0, 16777216, "STOCKFLOW_MAX_BODY",
      "largest request body in bytes (413 beyond)", max_body),
    E("command-url", SF_CFG_STRING, "http://127.0.0.1:8081", 0, 0,
      "STOCKFLOW_COMMAND_URL",
      "base URL of the command service, where the Parse facade sends its "
      "writes and sign-ins",
      command_url),
    E("parse-app-id", SF_CFG_STRING, "stockflow", 0, 0,
      "STOCKFLOW_PARSE_APP_ID",
      "application id that Parse clients must send on /parse "
      "(X-Parse-Application-Id or _ApplicationId); others get 403",
      parse_app_id),
    S(SF_CFG_LOG_LEVEL, NULL, log_level),
};

static const sf_cfg_spec_t spec = {
    .prog = "stockflow-query",
    .summary = "stockflow query service: HTTP reads over the PostgreSQL read "
               "models",
    .entries = entries,
    .n_entries = sizeof(entries) / sizeof(entries[0]),
};

const sf_cfg_spec_t *qry_config_spec(void) { return &spec; }

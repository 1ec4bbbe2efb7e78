/* qry_config: the configuration table of stockflow-query. One table (key,
 * type, default, range, environment variable, description) drives flags,
 * environment, --help, --print-config and docs/configuration.md through
 * sf_config. Settings are parsed once into a qry_settings_t that main()
 * passes down; nothing here is global or mutable. */
#ifndef QRY_CONFIG_H
#define QRY_CONFIG_H

#include <stdbool.h>

#include "sf/config.h"

typedef struct qry_settings {
  const char *listen;                /* STOCKFLOW_QUERY_LISTEN host:port */
  const char *pg_dsn;                /* STOCKFLOW_PG_DSN */
  long long pg_pool;                 /* STOCKFLOW_PG_POOL */
  long long pg_statement_timeout_ms; /* STOCKFLOW_PG_STATEMENT_TIMEOUT_MS */
  long long min_position_wait_ms;    /* STOCKFLOW_MIN_POSITION_WAIT_MS */
  const char *projector_group;       /* STOCKFLOW_PROJECTOR_GROUP */
  const char *topic_catalog;         /* STOCKFLOW_TOPIC_CATALOG */
  const char *topic_stock;           /* STOCKFLOW_TOPIC_STOCK */
  long long position_poll_ms;        /* STOCKFLOW_POSITION_POLL_MS */
  long long stream_max_buffer;       /* STOCKFLOW_STREAM_MAX_BUFFER */
  long long stream_heartbeat_ms;     /* STOCKFLOW_STREAM_HEARTBEAT_MS */
  long long max_body;                /* STOCKFLOW_MAX_BODY */
  const char *command_url;           /* STOCKFLOW_COMMAND_URL */
  const char *parse_app_id;          /* STOCKFLOW_PARSE_APP_ID */
  const char *log_level;             /* STOCKFLOW_LOG_LEVEL */
} qry_settings_t;

/* The table, for sf_config_parse and sf_config_print_markdown. Static and
 * immutable. */
const sf_cfg_spec_t *qry_config_spec(void);

#endif

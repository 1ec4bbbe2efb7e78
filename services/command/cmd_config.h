/* cmd_config: the command service's settings and the table that parses
 * them (flags, STOCKFLOW_* environment, defaults, --help, --print-config,
 * docs/configuration.md). */
#ifndef CMD_CONFIG_H
#define CMD_CONFIG_H

#include <stdbool.h>

#include "sf/config.h"

typedef struct cmd_settings {
  const char *listen;
  const char *kafka_brokers;
  const char *topic_catalog;
  const char *topic_stock;
  const char *event_format;        /* "single-object" or "confluent" */
  const char *schema_registry_url; /* "" when none */
  const char *transactional_id;
  const char *topic_commands;
  const char *topic_results;
  const char *intake_group;
  bool intake;
  const char *log_level;
  long long max_body;
  long long batch_max_body;
  long long max_batch;
  long long writer_lanes;
  long long linger_us;
  long long commit_gap_us;
  const char *kafka_debug; /* librdkafka "debug" of the writers; "" none */
  long long txn_timeout_ms;
  long long header_timeout_ms;
  long long idle_timeout_ms;
  long long idem_retention_s;
  /* accounts (cmd_users, sf_authn); the admin password is read from
   * STOCKFLOW_ADMIN_PASSWORD by cmd_app, never from a flag or this table */
  const char *pg_dsn;
  long long pg_pool;
  const char *admin_username;
  long long session_ttl_s;
  const char *trusted_proxies; /* peers whose X-Real-IP names the client */
  long long order_ttl_s;       /* rules: reservation time-to-live, 0 never */
  /* instances (cmd_instances.h): this one's share of the stock partitions */
  long long instance_index;
  long long instance_count;
  const char *peer_urls;
} cmd_settings_t;

/* The spec for sf_config_parse (static storage). */
const sf_cfg_spec_t *cmd_config_spec(void);

#endif

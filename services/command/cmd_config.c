/* cmd_config: the command service's configuration table. */
#include "cmd_config.h"

#include <stddef.h>

#define E(key, type, def, min, max, env, help, field)                     \
  { key, type, def, min, max, env, help, offsetof(cmd_settings_t, field), \
    SF_CFG_OWN }
#define S(id, help, field) SF_CFG_SHARED(id, help, offsetof(cmd_settings_t, field))

static const sf_cfg_entry_t entries[] = {
    E("listen", SF_CFG_STRING, "127.0.0.1:8081", 0, 0,
      "STOCKFLOW_COMMAND_LISTEN", "HTTP listen address host:port", listen),
    S(SF_CFG_KAFKA_BROKERS, NULL, kafka_brokers),
    S(SF_CFG_TOPIC_CATALOG, NULL, topic_catalog),
    S(SF_CFG_TOPIC_STOCK, NULL, topic_stock),
    E("event-format", SF_CFG_STRING, "single-object", 0, 0,
      "STOCKFLOW_EVENT_FORMAT",
      "wire format of the events written: single-object (Avro single-object "
      "encoding, schema by fingerprint) or confluent (magic 0 and a schema "
      "id of the registry at --schema-registry-url, which is then required)",
      event_format),
    S(SF_CFG_SCHEMA_REGISTRY_URL, NULL, schema_registry_url),
    E("transactional-id", SF_CFG_STRING, "stockflow-command-0", 0, 0,
      "STOCKFLOW_COMMAND_TXN_ID",
      "Kafka transactional.id of lane 0 (lane k: <id>-<k>; with several "
      "instances <id>-p<index>of<count>[-<k>]); a second instance with the "
      "same ids fences the first",
      transactional_id),
    E("intake", SF_CFG_BOOL, "true", 0, 0, "STOCKFLOW_COMMAND_INTAKE",
      "take Avro stock commands from the commands topic (bus intake)",
      intake),
    E("topic-commands", SF_CFG_STRING, "inventory.commands", 0, 0,
      "STOCKFLOW_TOPIC_COMMANDS",
      "topic of Avro StockCommand records (schemas/command.avsc), keyed by "
      "store id",
      topic_commands),
    E("topic-command-results", SF_CFG_STRING, "inventory.command-results", 0,
      0, "STOCKFLOW_TOPIC_COMMAND_RESULTS",
      "topic the outcome of each bus command is published to (JSON)",
      topic_results),
    E("intake-group", SF_CFG_STRING, "stockflow-command-intake", 0, 0,
      "STOCKFLOW_COMMAND_INTAKE_GROUP",
      "consumer group of the bus intake (with several instances, each uses "
      "<group>-i<index>of<count>)",
      intake_group),
    S(SF_CFG_LOG_LEVEL, NULL, log_level),
    E("max-body", SF_CFG_INT, "65536", 1024, 16777216, "STOCKFLOW_MAX_BODY",
      "largest accepted request body in bytes (413 above)", max_body),
    E("batch-max-body", SF_CFG_INT, "1048576", 1024, 67108864,
      "STOCKFLOW_BATCH_MAX_BODY",
      "largest accepted body of POST /v1/batches in bytes (1,000 "
      "transactions need about 150 KiB)",
      batch_max_body),
    E("max-batch", SF_CFG_INT, "1000", 1, 100000, "STOCKFLOW_COMMIT_MAX_BATCH",
      "most Kafka messages per group-commit transaction", max_batch),
    E("writer-lanes", SF_CFG_INT, "0", 0, 64, "STOCKFLOW_WRITER_LANES",
      "writer lanes committing in parallel, each with its own transactional "
      "producer (ids <transactional-id>, <transactional-id>-1, ...) and the "
      "stock partitions p with p mod lanes = its number; 0: one per core",
      writer_lanes),
    E("commit-linger-us", SF_CFG_INT, "0", 0, 100000,
      "STOCKFLOW_COMMIT_LINGER_US",
      "extra wait before a commit to gather a fuller batch (0: commit at "
      "once; batches still form while a commit is in flight)",
      linger_us),
    E("commit-gap-us", SF_CFG_INT, "2000", 0, 100000,
      "STOCKFLOW_COMMIT_GAP_US",
      "least time between a commit and the next transaction of the same "
      "lane: the broker completes a commit a moment after answering it, and "
      "a transaction begun before that is refused "
      "(CONCURRENT_TRANSACTIONS) and retried by librdkafka 20 ms later; "
      "0: begin at once",
      commit_gap_us),
    E("kafka-debug", SF_CFG_STRING, "", 0, 0, "STOCKFLOW_COMMAND_KAFKA_DEBUG",
      "librdkafka debug contexts of the writer lanes' producers (e.g. "
      "eos,protocol: each transaction's requests with their round trips), "
      "logged at debug level (--log-level debug); empty: none",
      kafka_debug),
    E("txn-timeout-ms", SF_CFG_INT, "10000", 100, 600000,
      "STOCKFLOW_COMMIT_TIMEOUT_MS",
      "bound on one transaction's flush and commit", txn_timeout_ms),
    E("header-timeout-ms", SF_CFG_INT, "10000", 10, 600000,
      "STOCKFLOW_HTTP_HEADER_TIMEOUT_MS",
      "time a client has to send a request's headers", header_timeout_ms),
    E("idle-timeout-ms", SF_CFG_INT, "60000", 10, 3600000,
      "STOCKFLOW_HTTP_IDLE_TIMEOUT_MS", "keep-alive idle timeout",
      idle_timeout_ms),
    E("idempotency-retention-s", SF_CFG_INT, "86400", 60, 2592000,
      "STOCKFLOW_IDEMPOTENCY_RETENTION_S",
      "how long an Idempotency-Key remembers its first answer", idem_retention_s),
    /* accounts and sessions (cmd_users.c, sf_authn) */
    S(SF_CFG_PG_DSN,
      "libpq connection string of the database holding users and sessions",
      pg_dsn),
    E("pg-pool", SF_CFG_INT, "2", 1, 64, "STOCKFLOW_COMMAND_PG_POOL",
      "PostgreSQL connections for accounts and sessions", pg_pool),
    E("admin-username", SF_CFG_STRING, "admin", 0, 0,
      "STOCKFLOW_ADMIN_USERNAME",
      "the first admin, created at the first start when no admin exists, "
      "with the password from STOCKFLOW_ADMIN_PASSWORD (environment only; "
      "there is no default password)",
      admin_username),
    E("session-ttl-s", SF_CFG_INT, "86400", 60, 31536000,
      "STOCKFLOW_SESSION_TTL_S", "lifetime of a login token in seconds",
      session_ttl_s),
    E("trusted-proxies", SF_CFG_STRING, "", 0, 0, "STOCKFLOW_TRUSTED_PROXIES",
      "comma-separated peer IP addresses (a gateway in front of the "
      "service) whose X-Real-IP header names the client that login "
      "attempts count against; empty: the peer's own address, always",
      trusted_proxies),
    /* business rules (cmd_expiry.c) */
    E("order-ttl-s", SF_CFG_INT, "0", 0, 31536000, "STOCKFLOW_ORDER_TTL_S",
      "seconds after which a placed order's reservation expires (an "
      "OrderCancelled with cause \"expired\" releases the stock); 0: "
      "never",
      order_ttl_s),
    /* instances (cmd_instances.c) */
    E("instance-index", SF_CFG_INT, "0", 0, 1023, "STOCKFLOW_INSTANCE_INDEX",
      "this command instance's number i: it owns the stock partitions p "
      "with p mod instance-count = i (instance 0 also owns the catalog)",
      instance_index),
    E("instance-count", SF_CFG_INT, "1", 1, 1024, "STOCKFLOW_INSTANCE_COUNT",
      "command instances sharing the stock partitions; 1: this instance "
      "owns everything",
      instance_count),
    E("peer-urls", SF_CFG_STRING, "", 0, 0, "STOCKFLOW_PEER_URLS",
      "base URLs of every instance, in instance order "
      "(http://host:port,...): a request for another instance's store is "
      "redirected there (307); empty: answered 421 naming the owner",
      peer_urls),
};

static const sf_cfg_spec_t spec = {
    "stockflow-command",
    "stockflow command service: validates stock commands against the state "
    "rebuilt from the log and appends them as Avro events to Kafka.",
    entries, sizeof(entries) / sizeof(entries[0])};

const sf_cfg_spec_t *cmd_config_spec(void) { return &spec; }

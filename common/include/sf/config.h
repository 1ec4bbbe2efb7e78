/* config: one table per service drives flags, environment, --help,
 * --print-config and the configuration docs.
 *
 * A service declares a struct of settings and a table of sf_cfg_entry_t
 * describing each field (offsetof). The settings several services share
 * (brokers, database, log level, topics, projector group) are one list in
 * common/src/config.c: a service's table names them with SF_CFG_SHARED, so
 * they have one key, variable, type, default and range everywhere and one
 * environment serves the whole stack. sf_config_parse() fills the struct from
 * the defaults, then STOCKFLOW_* environment variables, then --key=value or
 * --key value flags (later wins). String fields are `const char *` pointing
 * into the table's defaults, the environment or argv: they are borrowed and
 * live as long as the process does not modify its environment or argv.
 * Nothing here allocates, nothing is global; thread-safe. */
#ifndef SF_CONFIG_H
#define SF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum sf_cfg_type {
  SF_CFG_STRING, /* field: const char * */
  SF_CFG_INT,    /* field: long long, checked against [min, max] */
  SF_CFG_BOOL    /* field: bool; accepts true/false/1/0/yes/no/on/off */
} sf_cfg_type_t;

/* The shared settings (SF_CFG_OWN: an entry of the service's own). */
typedef enum sf_cfg_shared {
  SF_CFG_OWN = 0,
  SF_CFG_KAFKA_BROKERS,       /* --kafka-brokers, STOCKFLOW_KAFKA_BROKERS */
  SF_CFG_PG_DSN,              /* --pg-dsn, STOCKFLOW_PG_DSN */
  SF_CFG_LOG_LEVEL,           /* --log-level, STOCKFLOW_LOG_LEVEL */
  SF_CFG_TOPIC_CATALOG,       /* --topic-catalog, STOCKFLOW_TOPIC_CATALOG */
  SF_CFG_TOPIC_STOCK,         /* --topic-stock, STOCKFLOW_TOPIC_STOCK */
  SF_CFG_PROJECTOR_GROUP,     /* --projector-group, STOCKFLOW_PROJECTOR_GROUP */
  SF_CFG_SCHEMA_REGISTRY_URL, /* --schema-registry-url,
                                 STOCKFLOW_SCHEMA_REGISTRY_URL */
  SF_CFG__SHARED_COUNT
} sf_cfg_shared_t;

typedef struct sf_cfg_entry {
  const char *key; /* flag name without "--", e.g. "kafka-brokers" */
  sf_cfg_type_t type;
  const char *def;        /* default as text; never NULL */
  long long min, max;     /* range for SF_CFG_INT */
  const char *env;        /* environment variable, e.g. "STOCKFLOW_KAFKA_BROKERS" */
  const char *help;       /* one line */
  size_t offset;          /* offsetof(settings struct, field) */
  sf_cfg_shared_t shared; /* not SF_CFG_OWN: key, type, default, range and
                             env come from the shared list (help too, when
                             help is NULL) */
} sf_cfg_entry_t;

/* An entry of a shared setting filling field offset off, with the service's
 * own description help (NULL: the shared one). */
#define SF_CFG_SHARED(id, help_, off) \
  { .help = (help_), .offset = (off), .shared = (id) }

/* What the caller should do after parsing. */
typedef enum sf_cfg_outcome {
  SF_CFG_RUN = 0,   /* settings filled: run the service */
  SF_CFG_EXIT_OK,   /* --help, --version or --print-config was printed */
  SF_CFG_EXIT_USAGE /* an error was printed to err; exit with status 2 */
} sf_cfg_outcome_t;

typedef struct sf_cfg_spec {
  const char *prog;    /* e.g. "stockflow-command" */
  const char *summary; /* one line for --help */
  const sf_cfg_entry_t *entries;
  size_t n_entries;
} sf_cfg_spec_t;

/* Entry i of spec with a shared setting filled in from the shared list. */
sf_cfg_entry_t sf_config_entry(const sf_cfg_spec_t *spec, size_t i);

/* Parses defaults, environment and argv into settings. Messages (help,
 * version, config dump) go to out, errors to err (both borrowed). Returns
 * the outcome; never fails silently. */
sf_cfg_outcome_t sf_config_parse(const sf_cfg_spec_t *spec, void *settings,
                                 int argc, char **argv, FILE *out, FILE *err);

/* Writes the table as a Markdown table (key, env, type, default,
 * description) for docs/configuration.md. */
void sf_config_print_markdown(const sf_cfg_spec_t *spec, FILE *out);

/* Splits "host:port" (IPv4 host or name) into host (copied into host, of
 * size host_cap) and port 1..65535. Returns 0 or SF_EINVAL. */
int sf_config_split_hostport(const char *text, char *host, size_t host_cap,
                             int *port);

#endif

/* config: table-driven settings. See sf/config.h for the contract. */
#include "sf/config.h"
#include "sf/err.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The settings several services share, indexed by sf_cfg_shared_t. */
static const sf_cfg_entry_t shared[SF_CFG__SHARED_COUNT] = {
    [SF_CFG_KAFKA_BROKERS] = {"kafka-brokers", SF_CFG_STRING, "127.0.0.1:9092",
                              0, 0, "STOCKFLOW_KAFKA_BROKERS",
                              "Kafka bootstrap servers (host:port,...)", 0,
                              SF_CFG_KAFKA_BROKERS},
    [SF_CFG_PG_DSN] = {"pg-dsn", SF_CFG_STRING,
                       "host=127.0.0.1 port=55432 dbname=stockflow "
                       "user=postgres",
                       0, 0, "STOCKFLOW_PG_DSN",
                       "libpq connection string of the database", 0,
                       SF_CFG_PG_DSN},
    [SF_CFG_LOG_LEVEL] = {"log-level", SF_CFG_STRING, "info", 0, 0,
                          "STOCKFLOW_LOG_LEVEL",
                          "debug, info, warn, error or off", 0,
                          SF_CFG_LOG_LEVEL},
    [SF_CFG_TOPIC_CATALOG] = {"topic-catalog", SF_CFG_STRING,
                              "inventory.catalog", 0, 0,
                              "STOCKFLOW_TOPIC_CATALOG",
                              "topic of product and store events (position "
                              "tokens catalog-*)",
                              0, SF_CFG_TOPIC_CATALOG},
    [SF_CFG_TOPIC_STOCK] = {"topic-stock", SF_CFG_STRING, "inventory.stock", 0,
                            0, "STOCKFLOW_TOPIC_STOCK",
                            "topic of stock events, keyed by store id "
                            "(position tokens stock-*)",
                            0, SF_CFG_TOPIC_STOCK},
    [SF_CFG_PROJECTOR_GROUP] = {"projector-group", SF_CFG_STRING,
                                "stockflow-projector", 0, 0,
                                "STOCKFLOW_PROJECTOR_GROUP",
                                "the projector's consumer group; also the key "
                                "of its stored offsets in projector_offsets, "
                                "which position tokens are checked against",
                                0, SF_CFG_PROJECTOR_GROUP},
    [SF_CFG_SCHEMA_REGISTRY_URL] = {
        "schema-registry-url", SF_CFG_STRING, "", 0, 0,
        "STOCKFLOW_SCHEMA_REGISTRY_URL",
        "base URL of a schema registry's Confluent-compatible API (e.g. "
        "http://127.0.0.1:8090/apis/ccompat/v7), where the schema ids of "
        "events in the Confluent wire format are looked up; empty: none",
        0, SF_CFG_SCHEMA_REGISTRY_URL},
};

sf_cfg_entry_t sf_config_entry(const sf_cfg_spec_t *spec, size_t i) {
  sf_cfg_entry_t e = spec->entries[i];
  if (e.shared > SF_CFG_OWN && e.shared < SF_CFG__SHARED_COUNT) {
    const sf_cfg_entry_t *s = &shared[e.shared];
    e.key = s->key;
    e.type = s->type;
    e.def = s->def;
    e.min = s->min;
    e.max = s->max;
    e.env = s->env;
    if (!e.help)
      e.help = s->help;
  }
  return e;
}

static int parse_bool(const char *v, bool *out) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcasecmp(v, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return SF_EINVAL;
}

static int parse_int(const char *v, long long min, long long max,
                     long long *out) {
  if (!*v)
    return SF_EINVAL;
  errno = 0;
  char *end = NULL;
  long long n = strtoll(v, &end, 10);
  if (errno || *end || n < min || n > max)
    return SF_EINVAL;
  *out = n;
  return 0;
}

/* Stores text into the field described by e. */
static int set_value(const sf_cfg_entry_t *e, void *settings, const char *v) {
  char *field = (char *)settings + e->offset;
  switch (e->type) {
  case SF_CFG_STRING:
    *(const char **)(void *)field = v;
    return 0;
  case SF_CFG_INT: {
    long long n;
    int rc = parse_int(v, e->min, e->max, &n);
    if (rc == 0)
      *(long long *)(void *)field = n;
    return rc;
  }
  case SF_CFG_BOOL: {
    bool b;
    int rc = parse_bool(v, &b);
    if (rc == 0)
      *(bool *)(void *)field = b;
    return rc;
  }
  }
  return SF_EINVAL;
}

static const char *type_name(sf_cfg_type_t t) {
  switch (t) {
  case SF_CFG_STRING: return "string";
  case SF_CFG_INT: return "int";
  case SF_CFG_BOOL: return "bool";
  }
  return "?";
}

static void print_help(const sf_cfg_spec_t *spec, FILE *out) {
  fprintf(out, "Usage: %s [options]\n%s\n\nOptions (flag, environment, default):\n",
          spec->prog, spec->summary);
  for (size_t i = 0; i < spec->n_entries; i++) {
    const sf_cfg_entry_t ent = sf_config_entry(spec, i), *e = &ent;
    fprintf(out, "  --%s=<%s>\n      %s (env %s, default \"%s\"", e->key,
            type_name(e->type), e->help, e->env, e->def);
    if (e->type == SF_CFG_INT)
      fprintf(out, ", range %lld..%lld", e->min, e->max);
    fprintf(out, ")\n");
  }
  fprintf(out, "  --help           print this help and exit\n"
               "  --version        print the version and exit\n"
               "  --print-config   print the effective settings and exit\n");
}

static void print_config(const sf_cfg_spec_t *spec, const void *settings,
                         FILE *out) {
  for (size_t i = 0; i < spec->n_entries; i++) {
    const sf_cfg_entry_t ent = sf_config_entry(spec, i), *e = &ent;
    const char *field = (const char *)settings + e->offset;
    switch (e->type) {
    case SF_CFG_STRING:
      fprintf(out, "%s=%s\n", e->key, *(const char *const *)(const void *)field);
      break;
    case SF_CFG_INT:
      fprintf(out, "%s=%lld\n", e->key, *(const long long *)(const void *)field);
      break;
    case SF_CFG_BOOL:
      fprintf(out, "%s=%s\n", e->key,
              *(const bool *)(const void *)field ? "true" : "false");
      break;
    }
  }
}

/* Finds the entry of flag key (key_len bytes) into *out. */
static bool find_key(const sf_cfg_spec_t *spec, const char *key,
                     size_t key_len, sf_cfg_entry_t *out) {
  for (size_t i = 0; i < spec->n_entries; i++) {
    *out = sf_config_entry(spec, i);
    if (strlen(out->key) == key_len && strncmp(out->key, key, key_len) == 0)
      return true;
  }
  return false;
}

sf_cfg_outcome_t sf_config_parse(const sf_cfg_spec_t *spec, void *settings,
                                 int argc, char **argv, FILE *out, FILE *err) {
  for (size_t i = 0; i < spec->n_entries; i++) {
    const sf_cfg_entry_t ent = sf_config_entry(spec, i), *e = &ent;
    if (set_value(e, settings, e->def) != 0) {
      fprintf(err, "%s: internal error: bad default for --%s\n", spec->prog,
              e->key);
      return SF_CFG_EXIT_USAGE;
    }
  }
  for (size_t i = 0; i < spec->n_entries; i++) {
    const sf_cfg_entry_t ent = sf_config_entry(spec, i), *e = &ent;
    const char *v = e->env ? getenv(e->env) : NULL;
    if (v && set_value(e, settings, v) != 0) {
      fprintf(err, "%s: invalid value \"%s\" in %s (expected %s)\n", spec->prog,
              v, e->env, type_name(e->type));
      return SF_CFG_EXIT_USAGE;
    }
  }
  bool dump = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      print_help(spec, out);
      return SF_CFG_EXIT_OK;
    }
    if (strcmp(a, "--version") == 0) {
      fprintf(out, "%s %s\n", spec->prog, SF_VERSION);
      return SF_CFG_EXIT_OK;
    }
    if (strcmp(a, "--print-config") == 0) {
      dump = true;
      continue;
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(err, "%s: unexpected argument \"%s\" (try --help)\n", spec->prog, a);
      return SF_CFG_EXIT_USAGE;
    }
    const char *key = a + 2;
    const char *eq = strchr(key, '=');
    size_t key_len = eq ? (size_t)(eq - key) : strlen(key);
    sf_cfg_entry_t found;
    const sf_cfg_entry_t *e = &found;
    if (!find_key(spec, key, key_len, &found)) {
      fprintf(err, "%s: unknown option \"%s\" (try --help)\n", spec->prog, a);
      return SF_CFG_EXIT_USAGE;
    }
    const char *v = NULL;
    if (eq) {
      v = eq + 1;
    } else if (e->type == SF_CFG_BOOL) {
      v = "true";
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      fprintf(err, "%s: option --%s needs a value\n", spec->prog, e->key);
      return SF_CFG_EXIT_USAGE;
    }
    if (set_value(e, settings, v) != 0) {
      if (e->type == SF_CFG_INT)
        fprintf(err, "%s: invalid value \"%s\" for --%s (integer %lld..%lld)\n",
                spec->prog, v, e->key, e->min, e->max);
      else
        fprintf(err, "%s: invalid value \"%s\" for --%s (expected %s)\n",
                spec->prog, v, e->key, type_name(e->type));
      return SF_CFG_EXIT_USAGE;
    }
  }
  if (dump) {
    print_config(spec, settings, out);
    return SF_CFG_EXIT_OK;
  }
  return SF_CFG_RUN;
}

void sf_config_print_markdown(const sf_cfg_spec_t *spec, FILE *out) {
  fprintf(out, "### %s\n\n%s\n\n| flag | environment | type | default | "
               "description |\n|---|---|---|---|---|\n",
          spec->prog, spec->summary);
  for (size_t i = 0; i < spec->n_entries; i++) {
    const sf_cfg_entry_t ent = sf_config_entry(spec, i), *e = &ent;
    fprintf(out, "| `--%s` | `%s` | %s | `%s` | %s |\n", e->key, e->env,
            type_name(e->type), e->def, e->help);
  }
  fprintf(out, "\n");
}

int sf_config_split_hostport(const char *text, char *host, size_t host_cap,
                             int *port) {
  if (!text || !host || !port || host_cap == 0)
    return SF_EINVAL;
  const char *colon = strrchr(text, ':');
  if (!colon || colon == text)
    return SF_EINVAL;
  size_t hlen = (size_t)(colon - text);
  if (hlen + 1 > host_cap)
    return SF_EINVAL;
  long long p;
  if (parse_int(colon + 1, 1, 65535, &p) != 0)
    return SF_EINVAL;
  memcpy(host, text, hlen);
  host[hlen] = '\0';
  *port = (int)p;
  return 0;
}

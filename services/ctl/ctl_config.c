/* ctl_config: stockflowctl's options table, parser and help texts (see
 * ctl_config.h). */
#include "ctl_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_id {
  O_HELP,
  O_VERSION,
  O_JSON,
  O_COMMAND_URL,
  O_QUERY_URL,
  O_TOKEN_FILE,
  O_REASON,
  O_REFERENCE,
  O_KEY,
  O_BELOW_REORDER,
  O_STORE,
  O_PRODUCT,
  O_AFTER,
  O_COUNT,
  O_PROJECTOR_BIN,
  O_VERBOSE
} opt_id_t;

#define BIT(c) (1u << (c))
#define ALL 0xffffffffu

typedef struct opt {
  const char *name; /* without "--" */
  opt_id_t id;
  const char *metavar; /* NULL: a switch without a value */
  unsigned cmds;       /* where it is allowed */
  const char *env;     /* environment variable giving its default */
  const char *help;
} opt_t;

static const opt_t k_opts[] = {
    {"help", O_HELP, NULL, ALL, NULL, "this help (also -h)"},
    {"version", O_VERSION, NULL, ALL, NULL, "print the version"},
    {"command-url", O_COMMAND_URL, "URL", ALL, "STOCKFLOW_COMMAND_URL",
     "the command service (default " CTL_DEFAULT_COMMAND_URL ")"},
    {"query-url", O_QUERY_URL, "URL", ALL, "STOCKFLOW_QUERY_URL",
     "the query service (default " CTL_DEFAULT_QUERY_URL ")"},
    {"token-file", O_TOKEN_FILE, "PATH", ALL, "STOCKFLOW_TOKEN_FILE",
     "where login keeps the token (default "
     "$XDG_CONFIG_HOME/stockflow/token or ~/.config/stockflow/token)"},
    {"json", O_JSON, NULL,
     BIT(CTL_CMD_LOGIN) | BIT(CTL_CMD_STOCK) | BIT(CTL_CMD_MOVE) |
         BIT(CTL_CMD_TAIL),
     NULL, "machine output: the service's JSON (tail: one object a line)"},
    {"below-reorder", O_BELOW_REORDER, NULL, BIT(CTL_CMD_STOCK), NULL,
     "only rows whose available stock is below the reorder level"},
    {"reason", O_REASON, "TEXT", BIT(CTL_CMD_MOVE), NULL,
     "why (required for an adjustment)"},
    {"reference", O_REFERENCE, "TEXT", BIT(CTL_CMD_MOVE), NULL,
     "a reference of yours (till, delivery note)"},
    {"key", O_KEY, "KEY", BIT(CTL_CMD_MOVE), NULL,
     "Idempotency-Key: the same key and movement again is applied once"},
    {"store", O_STORE, "ID", BIT(CTL_CMD_TAIL), NULL, "only this store"},
    {"product", O_PRODUCT, "ID", BIT(CTL_CMD_TAIL), NULL, "only this product"},
    {"after", O_AFTER, "ID", BIT(CTL_CMD_TAIL), NULL,
     "start after this change id (default: from now)"},
    {"count", O_COUNT, "N", BIT(CTL_CMD_TAIL), NULL,
     "exit 0 after N changes (default: until Ctrl-C)"},
    {"projector-bin", O_PROJECTOR_BIN, "PATH", BIT(CTL_CMD_REBUILD),
     "STOCKFLOW_PROJECTOR_BIN",
     "the stockflow-projector to run (default: next to stockflowctl, then "
     "../projector/, then PATH)"},
    {"verbose", O_VERBOSE, NULL, BIT(CTL_CMD_REBUILD), NULL,
     "pass every log line of the projector through to stderr"},
};
#define N_OPTS (sizeof k_opts / sizeof k_opts[0])

typedef struct cmd_info {
  const char *name;
  const char *synopsis; /* after the name */
  int min_pos, max_pos;
  const char *summary;
  const char *details; /* NULL or more lines */
} cmd_info_t;

static const cmd_info_t k_cmds[CTL_CMD_COUNT_] = {
    [CTL_CMD_NONE] = {"", "", 0, 0, "", NULL},
    [CTL_CMD_LOGIN] = {"login", "<username>", 1, 1,
                       "sign in and keep the token in the token file (0600)",
                       "The password is read from the terminal without echo, "
                       "or as the first line of\nstdin when stdin is not a "
                       "terminal."},
    [CTL_CMD_LOGOUT] = {"logout", "", 0, 0,
                        "revoke the session and delete the token file", NULL},
    [CTL_CMD_STOCK] = {"stock", "<store-id> [product-id]", 1, 2,
                       "stock levels of a store (every product, or one) as a "
                       "table",
                       NULL},
    [CTL_CMD_MOVE] = {"move", "<store-id> <product-id> <type> <quantity>", 4,
                      4,
                      "post a stock movement and print the answer",
                      "type: receipt, sale, return, adjustment (quantity "
                      "may be negative; needs --reason)\nor count (the "
                      "quantity counted)."},
    [CTL_CMD_TAIL] = {"tail", "", 0, 0,
                      "follow the change stream, one line per change",
                      "Resumes after a dropped connection with Last-Event-ID "
                      "(nothing lost or repeated);\nCtrl-C exits 0."},
    [CTL_CMD_REBUILD] = {"rebuild", "", 0, 0,
                         "rebuild the read model from the log "
                         "(stockflow-projector --rebuild) with a progress bar",
                         "Runs the projector's one-shot rebuild with this "
                         "environment (STOCKFLOW_PG_DSN,\n"
                         "STOCKFLOW_KAFKA_BROKERS, STOCKFLOW_PROJECTOR_GROUP, "
                         "the topics). Ctrl-C stops it before\nthe switch "
                         "(the read model is left untouched) and exits 130."},
};

const char *ctl_cmd_name(ctl_cmd_t cmd) {
  return cmd > CTL_CMD_NONE && cmd < CTL_CMD_COUNT_ ? k_cmds[cmd].name : "";
}

int ctl_parse_int(const char *text, long long min, long long max,
                  long long *out) {
  if (!text || !*text || isspace((unsigned char)*text))
    return -1;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(text, &end, 10);
  if (errno || *end || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

static int fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
  return CTL_EXIT_USAGE;
}

static const opt_t *find_opt(const char *name, size_t len) {
  for (size_t i = 0; i < N_OPTS; i++)
    if (strlen(k_opts[i].name) == len && memcmp(k_opts[i].name, name, len) == 0)
      return &k_opts[i];
  return NULL;
}

static ctl_cmd_t find_cmd(const char *name) {
  for (int c = CTL_CMD_NONE + 1; c < CTL_CMD_COUNT_; c++)
    if (strcmp(k_cmds[c].name, name) == 0)
      return (ctl_cmd_t)c;
  return CTL_CMD_NONE;
}

/* An argument that is an option: "-x..." or "--x...", but not a negative
 * number (an adjustment's quantity) nor "-" alone. */
static bool is_option(const char *s) {
  return s[0] == '-' && s[1] && !isdigit((unsigned char)s[1]);
}

static int set_opt(ctl_args_t *a, const opt_t *o, const char *val, char *err,
                   size_t cap) {
  long long n;
  switch (o->id) {
  case O_HELP: a->help = true; break;
  case O_VERSION: a->version = true; break;
  case O_JSON: a->json = true; break;
  case O_COMMAND_URL: a->command_url = val; break;
  case O_QUERY_URL: a->query_url = val; break;
  case O_TOKEN_FILE: a->token_file = val; break;
  case O_REASON: a->reason = val; break;
  case O_REFERENCE: a->reference = val; break;
  case O_KEY: a->key = val; break;
  case O_BELOW_REORDER: a->below_reorder = true; break;
  case O_STORE: a->store = val; break;
  case O_PRODUCT: a->product = val; break;
  case O_AFTER:
    if (ctl_parse_int(val, 0, INT64_MAX, &n))
      return fail(err, cap, "--after: \"%s\" is not a change id (an integer "
                            ">= 0)",
                  val);
    a->has_after = true;
    a->after = (uint64_t)n;
    break;
  case O_COUNT:
    if (ctl_parse_int(val, 1, INT64_MAX, &n))
      return fail(err, cap, "--count: \"%s\" is not a positive integer", val);
    a->count = n;
    break;
  case O_PROJECTOR_BIN: a->projector_bin = val; break;
  case O_VERBOSE: a->verbose = true; break;
  }
  return CTL_EXIT_OK;
}

/* Checks that every option given is allowed for the command (they may have
 * come before it). */
static int check_opts(const ctl_args_t *a, const unsigned char *seen,
                      char *err, size_t cap) {
  for (size_t i = 0; i < N_OPTS; i++)
    if (seen[i] && !(k_opts[i].cmds & BIT(a->cmd)))
      return fail(err, cap, "--%s is not an option of %s", k_opts[i].name,
                  a->cmd ? ctl_cmd_name(a->cmd) : "stockflowctl without a "
                                                  "command");
  return CTL_EXIT_OK;
}

static int positionals(ctl_args_t *a, char *err, size_t cap) {
  const cmd_info_t *ci = &k_cmds[a->cmd];
  if (a->n_pos < ci->min_pos || a->n_pos > ci->max_pos)
    return fail(err, cap, "%s takes %s%s (got %d argument%s)", ci->name,
                ci->max_pos ? "" : "no arguments", ci->synopsis, a->n_pos,
                a->n_pos == 1 ? "" : "s");
  switch (a->cmd) {
  case CTL_CMD_LOGIN:
    a->username = a->pos[0];
    break;
  case CTL_CMD_STOCK:
    a->store = a->pos[0];
    a->product = a->n_pos > 1 ? a->pos[1] : NULL;
    break;
  case CTL_CMD_MOVE:
    a->store = a->pos[0];
    a->product = a->pos[1];
    a->type = a->pos[2];
    if (ctl_parse_int(a->pos[3], INT64_MIN, INT64_MAX, &a->quantity))
      return fail(err, cap, "quantity \"%s\" is not an integer", a->pos[3]);
    break;
  default:
    break;
  }
  for (int i = 0; i < a->n_pos; i++)
    if (!*a->pos[i])
      return fail(err, cap, "argument %d of %s is empty", i + 1, ci->name);
  return CTL_EXIT_OK;
}

int ctl_args_parse(ctl_args_t *a, int argc, char **argv, ctl_getenv_fn env,
                   char *err, size_t cap) {
  memset(a, 0, sizeof *a);
  err[0] = '\0';
  unsigned char seen[N_OPTS] = {0};
  bool options_done = false;
  for (int i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (!options_done && strcmp(s, "--") == 0) {
      options_done = true;
      continue;
    }
    if (!options_done && is_option(s)) {
      if (strcmp(s, "-h") == 0) {
        a->help = true;
        continue;
      }
      if (s[1] != '-')
        return fail(err, cap, "unknown option %s (options are --long-names)",
                    s);
      const char *name = s + 2, *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      const opt_t *o = find_opt(name, len);
      if (!o)
        return fail(err, cap, "unknown option --%.*s", (int)len, name);
      const char *val = NULL;
      if (o->metavar) {
        if (eq)
          val = eq + 1;
        else if (i + 1 < argc)
          val = argv[++i];
        else
          return fail(err, cap, "--%s needs a value (%s)", o->name,
                      o->metavar);
      } else if (eq) {
        return fail(err, cap, "--%s takes no value", o->name);
      }
      int rc = set_opt(a, o, val, err, cap);
      if (rc)
        return rc;
      seen[o - k_opts] = 1;
      continue;
    }
    if (a->cmd == CTL_CMD_NONE) {
      a->cmd = find_cmd(s);
      if (a->cmd == CTL_CMD_NONE)
        return fail(err, cap, "unknown command \"%s\"", s);
      continue;
    }
    if (a->n_pos == CTL_MAX_POS)
      return fail(err, cap, "too many arguments");
    a->pos[a->n_pos++] = s;
  }
  if (!a->command_url)
    a->command_url = env ? env("STOCKFLOW_COMMAND_URL") : NULL;
  if (!a->query_url)
    a->query_url = env ? env("STOCKFLOW_QUERY_URL") : NULL;
  if (!a->token_file)
    a->token_file = env ? env("STOCKFLOW_TOKEN_FILE") : NULL;
  if (!a->projector_bin)
    a->projector_bin = env ? env("STOCKFLOW_PROJECTOR_BIN") : NULL;
  if (!a->command_url || !*a->command_url)
    a->command_url = CTL_DEFAULT_COMMAND_URL;
  if (!a->query_url || !*a->query_url)
    a->query_url = CTL_DEFAULT_QUERY_URL;
  if (a->token_file && !*a->token_file)
    a->token_file = NULL;
  if (a->projector_bin && !*a->projector_bin)
    a->projector_bin = NULL;
  if (a->help || a->version)
    return CTL_EXIT_OK;
  if (a->cmd == CTL_CMD_NONE)
    return fail(err, cap, "no command given");
  int rc = check_opts(a, seen, err, cap);
  return rc ? rc : positionals(a, err, cap);
}

static void print_opts(unsigned mask, bool global, FILE *out) {
  for (size_t i = 0; i < N_OPTS; i++) {
    const opt_t *o = &k_opts[i];
    if ((o->cmds == ALL) != global || !(o->cmds & mask))
      continue;
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", o->name, o->metavar ? " " : "",
             o->metavar ? o->metavar : "");
    fprintf(out, "  %-22s %s%s%s%s\n", left, o->help, o->env ? " [env " : "",
            o->env ? o->env : "", o->env ? "]" : "");
  }
}

void ctl_usage(ctl_cmd_t cmd, FILE *out) {
  if (cmd <= CTL_CMD_NONE || cmd >= CTL_CMD_COUNT_) {
    fputs("usage: stockflowctl [options] <command> [options] [arguments]\n\n"
          "Operates a stockflow system through its HTTP API.\n\ncommands:\n",
          out);
    for (int c = CTL_CMD_NONE + 1; c < CTL_CMD_COUNT_; c++)
      fprintf(out, "  %-8s %s\n", k_cmds[c].name, k_cmds[c].summary);
    fputs("\noptions of every command:\n", out);
    print_opts(ALL, true, out);
    fputs("\nThe token comes from STOCKFLOW_TOKEN when set, else from the "
          "token file.\n"
          "Exit status: 0 done, 1 failed, 2 bad usage, 3 refused by the "
          "service (4xx),\n4 service unavailable (503 or unreachable), 130 "
          "rebuild interrupted.\n"
          "`stockflowctl <command> --help` describes one command.\n",
          out);
    return;
  }
  const cmd_info_t *ci = &k_cmds[cmd];
  fprintf(out, "usage: stockflowctl %s [options]%s%s\n\n%s.\n", ci->name,
          *ci->synopsis ? " " : "", ci->synopsis, ci->summary);
  if (ci->details)
    fprintf(out, "%s\n", ci->details);
  bool any = false;
  for (size_t i = 0; i < N_OPTS; i++)
    any = any || (k_opts[i].cmds != ALL && (k_opts[i].cmds & BIT(cmd)));
  if (any) {
    fputs("\noptions:\n", out);
    print_opts(BIT(cmd), false, out);
  }
  fputs("\noptions of every command:\n", out);
  print_opts(ALL, true, out);
}

/* ctl_config: stockflowctl's command line, exit codes and help texts.
 *
 * `stockflowctl [options] <command> [options] [arguments]`: options may
 * stand before or after the command; `--name value` and `--name=value`;
 * `--` ends the options. One table names every option, the commands that
 * take it and its environment variable; the help texts come from it.
 * Service addresses and the token file come from flags, then the
 * environment, then the defaults of docs/api.md.
 *
 * Pure (the environment is read through the injected lookup), no global
 * state; thread-safe. Strings in ctl_args_t are borrowed from argv, the
 * lookup's answers or static defaults. */
#ifndef CTL_CONFIG_H
#define CTL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes that scripts can rely on (docs/operations.md). */
typedef enum ctl_exit {
  CTL_EXIT_OK = 0,
  CTL_EXIT_FAIL = 1,         /* anything else: a 500, a local error */
  CTL_EXIT_USAGE = 2,        /* bad command line or argument */
  CTL_EXIT_REFUSED = 3,      /* the service answered 4xx */
  CTL_EXIT_UNAVAILABLE = 4,  /* 503, or the service cannot be reached */
  CTL_EXIT_INTERRUPTED = 130 /* a rebuild stopped by Ctrl-C / SIGTERM */
} ctl_exit_t;

typedef enum ctl_cmd {
  CTL_CMD_NONE = 0,
  CTL_CMD_LOGIN,
  CTL_CMD_LOGOUT,
  CTL_CMD_STOCK,
  CTL_CMD_MOVE,
  CTL_CMD_TAIL,
  CTL_CMD_REBUILD,
  CTL_CMD_COUNT_
} ctl_cmd_t;

#define CTL_DEFAULT_COMMAND_URL "http://127.0.0.1:8081"
#define CTL_DEFAULT_QUERY_URL "http://127.0.0.1:8082"
#define CTL_MAX_POS 4

typedef struct ctl_args {
  ctl_cmd_t cmd;
  bool help, version, json;
  const char *command_url, *query_url;
  const char *token_file; /* NULL: the default path (ctl_token.h) */
  const char *pos[CTL_MAX_POS];
  int n_pos;
  /* login */
  const char *username;
  /* move */
  const char *store, *product, *type; /* also tail's filters */
  long long quantity;
  const char *reason, *reference, *key;
  /* stock */
  bool below_reorder;
  /* tail */
  bool has_after;
  uint64_t after;
  long long count; /* 0: until Ctrl-C */
  /* rebuild */
  const char *projector_bin; /* NULL: found next to stockflowctl */
  bool verbose;
} ctl_args_t;

/* getenv-shaped lookup (NULL when unset). */
typedef const char *(*ctl_getenv_fn)(const char *name);

/* Parses argv (argv[0] is the program) into a. Returns CTL_EXIT_OK, or
 * CTL_EXIT_USAGE with a one-line reason in err (cap > 0). --help and
 * --version set a->help / a->version and skip the checks of arguments. */
int ctl_args_parse(ctl_args_t *a, int argc, char **argv, ctl_getenv_fn env,
                   char *err, size_t cap);

/* The command's name ("stock"), "" for CTL_CMD_NONE. */
const char *ctl_cmd_name(ctl_cmd_t cmd);

/* Writes the help of cmd (CTL_CMD_NONE: the overview) to out. */
void ctl_usage(ctl_cmd_t cmd, FILE *out);

/* Parses a whole decimal integer in [min, max] (no blanks, no sign on
 * unsigned use: pass min 0). Returns 0 or -1. */
int ctl_parse_int(const char *text, long long min, long long max,
                  long long *out);

#endif

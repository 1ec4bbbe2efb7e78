/* ctl_rebuild: `stockflowctl rebuild` runs `stockflow-projector --rebuild
 * --rebuild-progress-json` (services/projector/proj_rebuild.c) as a child
 * with this environment and shows its progress.
 *
 * Why a child and not an HTTP call: the rebuild is a one-shot command of
 * the projector (it holds an advisory lock, its own connections and a
 * group-less consumer, and ends with an exit status), and the projector's
 * HTTP listener has no authentication, so it must not start one. The
 * progress comes from the process doing the work: one JSON object per line
 * on its stdout (phase, done/total offsets, rate, ETA; a final "done" or
 * "failed"), the format of docs/operations.md. Its log (stderr, JSON lines)
 * is shown for warnings and errors, all of it with --verbose.
 *
 * The bar is redrawn in place on a terminal and printed one line per
 * report otherwise. SIGINT/SIGTERM are passed on as SIGTERM: the rebuild
 * stops before the switch and public stays untouched.
 *
 * Not thread-safe; blocks SIGINT and SIGTERM (ctl_signal.h). */
#ifndef CTL_REBUILD_H
#define CTL_REBUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ctl_config.h"

typedef struct ctl_rebuild_report {
  char phase[16]; /* lock, create, replay, indexes, catch-up, switch, done,
                      failed */
  uint64_t done, total;
  double rate, eta_s, elapsed_s; /* eta_s < 0: unknown */
  /* "done" */
  uint64_t messages, applied, poison, batches;
  double replay_s, switch_s;
  /* "failed" */
  char error[32], message[160];
} ctl_rebuild_report_t;

/* Parses one stdout line of the projector. Returns 0 or -1 (not a report:
 * not JSON, or no phase). */
int ctl_rebuild_parse(const char *line, ctl_rebuild_report_t *r);

/* Writes the display line of a progress report, for example
 * "replay    [#######-----------------------]  1234/5678 offsets  21.7 %
 * 9900/s  ETA 3s" (bar of bar_width cells). Returns what snprintf
 * returned. */
int ctl_rebuild_render(const ctl_rebuild_report_t *r, int bar_width,
                       char *buf, size_t cap);

/* The exit code for the end of a rebuild: exit_status of the child (-1:
 * killed by a signal) and the error name of its "failed" line (NULL if
 * none). */
int ctl_rebuild_exit_code(int exit_status, const char *error);

int ctl_rebuild_run(const ctl_args_t *a, FILE *out, FILE *err);

#endif

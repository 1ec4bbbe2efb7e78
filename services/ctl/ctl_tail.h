/* ctl_tail: `stockflowctl tail`, the change stream (GET /v1/changes over
 * SSE) printed one line per change.
 *
 * A dropped connection, an overflow message or a 503 is followed by a new
 * request with Last-Event-ID set to the last change id received, after a
 * pause that doubles from 1 s to 10 s (1 s again after a stream that
 * answered 200), so nothing is lost or repeated. A 4xx answer and the
 * final "expired" message end it with CTL_EXIT_REFUSED; SIGINT or SIGTERM
 * ends it with CTL_EXIT_OK, as does --count N after N changes.
 *
 * Not thread-safe; blocks SIGINT and SIGTERM (ctl_signal.h). */
#ifndef CTL_TAIL_H
#define CTL_TAIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "ctl_config.h"
#include "ctl_http.h"

int ctl_tail_run(const ctl_args_t *a, ctl_http_t *h, const char *token,
                 FILE *out, FILE *err);

/* The line of a change message (borrowed): "<id> <occurred_at> <cause>
 * store=<id> product=<id> on_hand=<n> reserved=<n> available=<n>
 * version=<n>", absent fields as "?". Returns what snprintf returned. */
int ctl_tail_format(const json_t *change, char *buf, size_t cap);

/* The request path for the filters of a (values escaped with h). Returns
 * a new string (caller frees) or NULL when out of memory. */
char *ctl_tail_path(const ctl_args_t *a, ctl_http_t *h);

#endif

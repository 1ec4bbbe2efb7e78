/* ctl_sse: a parser of the text/event-stream format (Server-Sent Events,
 * the HTML standard's "event stream interpretation"), fed with the bytes of
 * the body as they arrive.
 *
 * Lines end with LF, CRLF or CR (also when the CR and the LF arrive in two
 * chunks); "field: value" with one optional space after the colon; lines
 * starting with ':' are comments (heartbeats); data lines are joined with
 * LF; a blank line dispatches the event (none when it has no data). An id
 * containing NUL is ignored. No library in Debian parses this format, and
 * it is this small; the tests are tests/unit/ctl/test_sse.c.
 *
 * A value type; not thread-safe. */
#ifndef CTL_SSE_H
#define CTL_SSE_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_SSE_LINE_MAX (1u << 20) /* a longer line is refused */

typedef struct ctl_sse {
  char *line;
  size_t len, cap;
  bool after_cr; /* the last byte was a CR: skip an LF that follows */
  char *data;
  size_t data_len, data_cap;
  bool has_data;
  char event[64];
  char last_id[64]; /* the stream's last event id, kept across events */
} ctl_sse_t;

/* An event: id is the last event id seen on the stream ("" if none), type
 * "message" when the event had no event field; all borrowed for the call.
 * Returns false to stop parsing (ctl_sse_feed returns at once). */
typedef bool (*ctl_sse_event_cb)(void *ud, const char *id, const char *type,
                                 const char *data);

void ctl_sse_init(ctl_sse_t *p);
void ctl_sse_free(ctl_sse_t *p);
/* Forgets a partial line and event (a new connection), keeps last_id. */
void ctl_sse_reset(ctl_sse_t *p);

/* Parses n bytes. Returns 0, 1 when the callback asked to stop, SF_ENOMEM
 * or SF_ETOOBIG (a line over CTL_SSE_LINE_MAX). */
int ctl_sse_feed(ctl_sse_t *p, const char *bytes, size_t n,
                 ctl_sse_event_cb cb, void *ud);

#endif

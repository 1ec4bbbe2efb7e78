/* ctl_sse: event stream parser (see ctl_sse.h). */
#include "ctl_sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

void ctl_sse_init(ctl_sse_t *p) { memset(p, 0, sizeof *p); }

void ctl_sse_free(ctl_sse_t *p) {
  free(p->line);
  free(p->data);
  memset(p, 0, sizeof *p);
}

static void clear_event(ctl_sse_t *p) {
  p->data_len = 0;
  p->has_data = false;
  p->event[0] = '\0';
}

void ctl_sse_reset(ctl_sse_t *p) {
  p->len = 0;
  p->after_cr = false;
  clear_event(p);
}

static int grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  if (need > CTL_SSE_LINE_MAX + 1)
    return SF_ETOOBIG;
  size_t nc = *cap ? *cap : 256;
  while (nc < need)
    nc *= 2;
  char *nb = realloc(*buf, nc);
  if (!nb)
    return SF_ENOMEM;
  *buf = nb;
  *cap = nc;
  return 0;
}

/* One complete line (without its end) in p->line[0..len). */
static int line_done(ctl_sse_t *p, ctl_sse_event_cb cb, void *ud) {
  const char *l = p->line;
  size_t n = p->len;
  p->len = 0;
  if (n == 0) { /* dispatch */
    if (!p->has_data) {
      clear_event(p);
      return 0;
    }
    int rc = grow(&p->data, &p->data_cap, p->data_len + 1);
    if (rc)
      return rc;
    p->data[p->data_len] = '\0';
    bool go = cb(ud, p->last_id, p->event[0] ? p->event : "message", p->data);
    clear_event(p);
    return go ? 0 : 1;
  }
  if (l[0] == ':')
    return 0; /* a comment */
  const char *colon = memchr(l, ':', n);
  size_t fn = colon ? (size_t)(colon - l) : n;
  const char *v = colon ? colon + 1 : l + n;
  size_t vn = colon ? n - fn - 1 : 0;
  if (vn && *v == ' ')
    v++, vn--;
  if (fn == 4 && memcmp(l, "data", 4) == 0) {
    size_t need = p->data_len + (p->has_data ? 1 : 0) + vn + 1;
    int rc = grow(&p->data, &p->data_cap, need);
    if (rc)
      return rc;
    if (p->has_data)
      p->data[p->data_len++] = '\n';
    memcpy(p->data + p->data_len, v, vn);
    p->data_len += vn;
    p->has_data = true;
  } else if (fn == 5 && memcmp(l, "event", 5) == 0) {
    snprintf(p->event, sizeof p->event, "%.*s", (int)vn, v);
  } else if (fn == 2 && memcmp(l, "id", 2) == 0) {
    if (!memchr(v, '\0', vn) && vn < sizeof p->last_id)
      snprintf(p->last_id, sizeof p->last_id, "%.*s", (int)vn, v);
  } /* retry and unknown fields are ignored */
  return 0;
}

int ctl_sse_feed(ctl_sse_t *p, const char *bytes, size_t n,
                 ctl_sse_event_cb cb, void *ud) {
  for (size_t i = 0; i < n; i++) {
    char c = bytes[i];
    if (p->after_cr) {
      p->after_cr = false;
      if (c == '\n')
        continue;
    }
    if (c == '\r' || c == '\n') {
      p->after_cr = c == '\r';
      int rc = line_done(p, cb, ud);
      if (rc)
        return rc;
      continue;
    }
    if (p->len >= CTL_SSE_LINE_MAX)
      return SF_ETOOBIG;
    int rc = grow(&p->line, &p->cap, p->len + 1);
    if (rc)
      return rc;
    p->line[p->len++] = c;
  }
  return 0;
}

/* qry_event: refcounted, serialized-once stream messages, SSE framing,
 * subscriber filters and resume points. See qry_event.h.
 *
 * An event is one allocation: the struct followed by its JSON text and its
 * SSE frame, so a reference is all a queue or a write needs to hold. */
#include "qry_event.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

const char *qry_event_kind_name(qry_event_kind_t kind) {
  switch (kind) {
  case QRY_EVENT_CHANGE: return "change";
  case QRY_EVENT_SNAPSHOT: return "snapshot";
  case QRY_EVENT_SNAPSHOT_END: return "snapshot_end";
  case QRY_EVENT_OVERFLOW: return "overflow";
  case QRY_EVENT_EXPIRED: return "expired";
  }
  return "unknown";
}

/* Appends n bytes of s at out[*o] when they fit in cap - 1; always counts
 * them, so the caller learns the size it needs. */
static void put(char *out, size_t cap, size_t *o, const char *s, size_t n) {
  if (*o < cap && cap - *o > n)
    memcpy(out + *o, s, n);
  *o += n;
}

size_t qry_sse_frame(char *out, size_t cap, int64_t id, const char *event,
                     const char *data, size_t len) {
  size_t o = 0;
  char line[48];
  if (id > 0) {
    int n = snprintf(line, sizeof(line), "id: %lld\n", (long long)id);
    put(out, cap, &o, line, (size_t)n);
  }
  if (event) {
    put(out, cap, &o, "event: ", 7);
    put(out, cap, &o, event, strlen(event));
    put(out, cap, &o, "\n", 1);
  }
  /* Every line of data becomes one "data:" field; a final line ending
   * does not open an empty line. */
  size_t i = 0;
  do {
    size_t j = i;
    while (j < len && data[j] != '\n' && data[j] != '\r')
      j++;
    put(out, cap, &o, "data: ", 6);
    put(out, cap, &o, data + i, j - i);
    put(out, cap, &o, "\n", 1);
    if (j < len && data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
      j++;
    i = j + 1;
  } while (i < len);
  put(out, cap, &o, "\n", 1);
  if (cap > 0)
    out[o < cap ? o : cap - 1] = '\0';
  return o;
}

qry_event_t *qry_event_new_text(qry_event_kind_t kind, int64_t id,
                                const char *store_id, const char *product_id,
                                const char *obj, size_t len) {
  /* {"type":"<kind>", then obj's members: obj without its "{" */
  if (!obj || len < 2 || obj[0] != '{' || obj[len - 1] != '}')
    return NULL;
  const char *name = qry_event_kind_name(kind);
  bool empty = len == 2;
  size_t jlen = strlen("{\"type\":\"\"") + strlen(name) + (empty ? 0 : 1) +
                len - 1;
  size_t slen = 0;
  char *text = malloc(jlen + 1);
  if (!text)
    return NULL;
  int n = snprintf(text, jlen + 1, "{\"type\":\"%s\"%s", name,
                   empty ? "" : ",");
  memcpy(text + n, obj + 1, len - 1);
  text[jlen] = '\0';
  slen = qry_sse_frame(NULL, 0, id, name, text, jlen);
  qry_event_t *e = malloc(sizeof(*e) + jlen + 1 + slen + 1);
  if (!e) {
    free(text);
    return NULL;
  }
  char *jbuf = (char *)(e + 1);
  char *sbuf = jbuf + jlen + 1;
  memcpy(jbuf, text, jlen + 1);
  free(text);
  qry_sse_frame(sbuf, slen + 1, id, name, jbuf, jlen);
  e->refs = 1;
  e->kind = kind;
  e->id = id;
  snprintf(e->store_id, sizeof(e->store_id), "%s", store_id ? store_id : "");
  snprintf(e->product_id, sizeof(e->product_id), "%s",
           product_id ? product_id : "");
  e->json = jbuf;
  e->json_len = jlen;
  e->sse = sbuf;
  e->sse_len = slen;
  return e;
}

qry_event_t *qry_event_new(qry_event_kind_t kind, int64_t id,
                           const char *store_id, const char *product_id,
                           const json_t *obj) {
  if (!json_is_object(obj))
    return NULL;
  char *text = json_dumps(obj, JSON_COMPACT);
  if (!text)
    return NULL;
  qry_event_t *e =
      qry_event_new_text(kind, id, store_id, product_id, text, strlen(text));
  free(text);
  return e;
}

qry_event_t *qry_event_ref(qry_event_t *e) {
  e->refs++;
  return e;
}

void qry_event_unref(qry_event_t *e) {
  if (e && --e->refs == 0)
    free(e);
}

static int filter_id(const char *text, bool *has, char out[SF_UUID_STR_LEN + 1]) {
  *has = false;
  out[0] = '\0';
  if (!text || !*text)
    return 0;
  sf_uuid_t u;
  if (sf_uuid_parse(text, &u) != 0)
    return SF_EINVAL;
  sf_uuid_format(&u, out);
  *has = true;
  return 0;
}

int qry_filter_init(qry_filter_t *f, const char *store, const char *product) {
  memset(f, 0, sizeof(*f));
  if (filter_id(store, &f->has_store, f->store_id) != 0 ||
      filter_id(product, &f->has_product, f->product_id) != 0)
    return SF_EINVAL;
  return 0;
}

bool qry_filter_match(const qry_filter_t *f, const qry_event_t *e) {
  if (!e->store_id[0] && !e->product_id[0])
    return true;
  if (f->has_store && strcmp(f->store_id, e->store_id) != 0)
    return false;
  if (f->has_product && strcmp(f->product_id, e->product_id) != 0)
    return false;
  return true;
}

int qry_after_parse(const char *text, int64_t *out) {
  if (!text || !*text || strlen(text) > 19)
    return SF_EINVAL;
  int64_t v = 0;
  for (const char *p = text; *p; p++) {
    if (*p < '0' || *p > '9')
      return SF_EINVAL;
    int d = *p - '0';
    if (v > (INT64_MAX - d) / 10)
      return SF_EINVAL;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* qry_event: what a change stream sends, serialized once.
 *
 * A qry_event_t holds one message of a change stream (a change, a snapshot
 * row, or one of the control messages) in both wire forms: the JSON text
 * (one WebSocket text message) and the complete Server-Sent Events frame.
 * A change fetched once for many subscribers is one event whose reference
 * count is held by every subscriber's queue and by every write in flight
 * (sf_http_stream_write_shared); it is freed after its last write.
 *
 * Also here, because they are pure and tested on their own: SSE framing,
 * the subscriber filter, and parsing of resume points (Last-Event-ID,
 * ?after=). Nothing here touches the loop or the database; the functions
 * are pure, and an event is immutable after qry_event_new, but reference
 * counts are not atomic: one loop thread only. */
#ifndef QRY_EVENT_H
#define QRY_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/uuid.h"

typedef enum qry_event_kind {
  QRY_EVENT_CHANGE = 0,   /* a changes row: "event: change", with id */
  QRY_EVENT_SNAPSHOT,     /* an inventory row of a snapshot, no id */
  QRY_EVENT_SNAPSHOT_END, /* end of the snapshot, id = the changes id it
                             reflects (resume point) */
  QRY_EVENT_OVERFLOW,     /* final: the client was too slow; id = the last
                             change delivered */
  QRY_EVENT_EXPIRED       /* final: the resume point was pruned meanwhile */
} qry_event_kind_t;

/* "change", "snapshot", "snapshot_end", "overflow", "expired". */
const char *qry_event_kind_name(qry_event_kind_t kind);

typedef struct qry_event {
  int refs;
  qry_event_kind_t kind;
  int64_t id;                         /* changes.id; 0 when the event has none */
  char store_id[SF_UUID_STR_LEN + 1]; /* "" when not about one row */
  char product_id[SF_UUID_STR_LEN + 1];
  const char *json; /* NUL-terminated, json_len bytes; inside the event */
  size_t json_len;
  const char *sse; /* the SSE frame, sse_len bytes; inside the event */
  size_t sse_len;
} qry_event_t;

/* Builds an event from obj (borrowed): its JSON is obj with "type": <kind
 * name> put first; the SSE frame carries "id: <id>" when id > 0 (changes,
 * snapshot_end, overflow), "event: <kind name>" and the JSON as data.
 * store_id and product_id (may be NULL) are copied for filtering. Returns
 * the event with one reference, or NULL on out of memory or when obj is not
 * an object. */
qry_event_t *qry_event_new(qry_event_kind_t kind, int64_t id,
                           const char *store_id, const char *product_id,
                           const json_t *obj);

/* The same from obj's compact JSON text (len bytes, "{...}"), for rows
 * already written as text (qry_rowmap_row_text): no parse and re-dump.
 * NULL when obj is not an object's text or on out of memory. */
qry_event_t *qry_event_new_text(qry_event_kind_t kind, int64_t id,
                                const char *store_id, const char *product_id,
                                const char *obj, size_t len);

/* Takes one more reference; returns e. */
qry_event_t *qry_event_ref(qry_event_t *e);

/* Drops one reference; the last frees the event. NULL is ignored. */
void qry_event_unref(qry_event_t *e);

/* Writes one SSE frame into out (cap bytes, NUL-terminated): "id: <id>\n"
 * when id > 0, "event: <event>\n" when event is not NULL, one "data: " line
 * per line of data (CR, LF and CRLF all end a line), then an empty line.
 * Returns the frame's length, or the length it would need (>= cap: out is
 * not usable), like snprintf. */
size_t qry_sse_frame(char *out, size_t cap, int64_t id, const char *event,
                     const char *data, size_t len);

/* Which rows a subscriber wants: store and/or product, or everything. */
typedef struct qry_filter {
  bool has_store, has_product;
  char store_id[SF_UUID_STR_LEN + 1]; /* lowercase canonical */
  char product_id[SF_UUID_STR_LEN + 1];
} qry_filter_t;

/* Sets f from the optional query values store and product (NULL or "" =
 * no filter). A value that is not a UUID is SF_EINVAL (f is then
 * unusable); ids are stored in canonical lowercase, as PostgreSQL prints
 * them. Returns 0 or SF_EINVAL. */
int qry_filter_init(qry_filter_t *f, const char *store, const char *product);

/* True when the event's row passes the filter. Events without a row
 * (control messages) always pass. */
bool qry_filter_match(const qry_filter_t *f, const qry_event_t *e);

/* Parses a resume point: decimal digits only, 0 .. INT64_MAX (the changes
 * id after which to resume). Returns 0 or SF_EINVAL. */
int qry_after_parse(const char *text, int64_t *out);

#endif

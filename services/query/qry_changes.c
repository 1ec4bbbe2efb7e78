/* qry_changes: the change-stream hub, its subscribers and GET /v1/changes.
 * See qry_changes.h for the design; the notes here are about mechanics.
 *
 * Writing: a subscriber has a queue of event references. pump() moves
 * events from the queue to the socket while the socket's own queue is below
 * half of max_buffer (SSE: sf_http_stream_write_shared of the event's
 * frame, zero copy; WebSocket: wslay frames it and we copy each frame into
 * a write token). Every write holds a reference on the subscriber and its
 * completion pumps again, so a paced catch-up continues as the client
 * reads. A catch-up page is asked for only when the queue is empty and the
 * socket below a quarter of max_buffer: a client that reads slowly slows
 * its catch-up instead of growing our memory.
 *
 * The hub knows the highest id it has fetched (last_id) only while live
 * subscribers exist; with none, notifications are ignored, and the next
 * subscriber to go live sets last_id to its own cursor and triggers one
 * fetch, which covers whatever was committed since its snapshot.
 *
 * Out-of-memory policy: a subscriber that cannot queue or frame an event is
 * disconnected (it resumes with Last-Event-ID); an event the hub cannot
 * build disconnects every live subscriber, since each of them would
 * otherwise miss it. */
#include "qry_changes.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_call.h"
#include "qry_event.h"
#include "qry_sql.h"
#include "qry_ws.h"
#include "sf/err.h"

#define MOD "changes"
#define DEFAULT_POLL_MS 1000
#define DEFAULT_PAGE_ROWS 1000
#define STALL_BEATS 4 /* heartbeat periods without progress before a cut */

typedef enum sub_state { SUB_CATCHUP,
                         SUB_LIVE,
                         SUB_CLOSED } sub_state_t;
typedef enum transport { T_SSE,
                         T_WS,
                         T_SINK } transport_t;

/* A subscriber: a stream, or a listener (T_SINK, see qry_changes.h). */
typedef struct qry_changes_listener qry_sub_t;

struct qry_changes {
  uv_loop_t *loop;
  sf_pg_t *pg;
  qry_calls_t *calls;
  sf_log_t *log;
  qry_changes_opts_t opts;
  qry_sub_t *subs;      /* every open subscriber */
  bool last_known;      /* last_id is meaningful (live subscribers exist) */
  int64_t last_id;      /* highest id fetched by the shared fetch */
  bool fetching, dirty; /* dirty: notified while fetching */
  uint64_t last_fetch_ms;
  uv_timer_t tick; /* heartbeats, stalls, safety fetch */
  bool tick_init, tick_closed;
  bool closing;
  size_t inflight; /* queries of the hub and its subscribers */
  void (*idle_cb)(void *ud);
  void *idle_ud;
  qry_changes_counters_t c;
};

struct qry_changes_listener {
  qry_changes_t *hub;
  qry_sub_t *prev, *next; /* in hub->subs until closed */
  sf_http_req_t *req;     /* NULL once the stream ended */
  int refs;
  sub_state_t state;
  transport_t transport;
  qry_ws_t *ws;
  const qry_changes_sink_t *sink; /* T_SINK; NULL once unlistened */
  void *sink_ud;
  qry_filter_t filter;
  char user_id[40];  /* the subscriber's user, "" without accounts */
  int64_t cursor;    /* every change id <= cursor is handled */
  int64_t last_sent; /* last change id handed to the socket */
  bool fresh;        /* cursor was the newest id of a recent snapshot */
  bool page_inflight;
  qry_event_t **q; /* ring of queued events (one reference each) */
  size_t q_head, q_len, q_cap, q_bytes;
  uint64_t last_write_ms, last_progress_ms;
};

/* One write in flight: an event reference (SSE) or a frame copy (WS). */
typedef struct wtok {
  qry_sub_t *sub;
  qry_event_t *ev;
  char data[];
} wtok_t;

/* What GET /v1/changes asked for, kept in request memory (qry_call ext). */
typedef struct stream_req {
  qry_changes_t *hub;
  transport_t transport;
  qry_filter_t filter;
  bool has_after;
  int64_t after;
  bool snapshot;
  char accept_key[QRY_WS_ACCEPT_LEN + 1];
} stream_req_t;

static void pump(qry_sub_t *s);
static void hub_fetch(qry_changes_t *h);

/* ---- small helpers ---- */

static uint64_t now_ms(const qry_changes_t *h) { return uv_now(h->loop); }

static void maybe_idle(qry_changes_t *h) {
  if (!h->closing || !h->idle_cb || qry_changes_pending(h) > 0)
    return;
  void (*cb)(void *) = h->idle_cb;
  h->idle_cb = NULL;
  cb(h->idle_ud);
}

static size_t ev_bytes(const qry_sub_t *s, const qry_event_t *e) {
  return s->transport == T_SSE ? e->sse_len : e->json_len + 10;
}

static size_t socket_pending(const qry_sub_t *s) {
  if (s->transport == T_SINK)
    return s->sink && s->state != SUB_CLOSED ? s->sink->pending(s->sink_ud)
                                             : 0;
  return s->req ? sf_http_stream_pending(s->req) : 0;
}

/* Bytes accepted for this client but not yet on the wire. */
static size_t unsent(const qry_sub_t *s) {
  return s->q_bytes + socket_pending(s);
}

static int q_push(qry_sub_t *s, qry_event_t *e) {
  if (s->q_len == s->q_cap) {
    size_t cap = s->q_cap ? s->q_cap * 2 : 16;
    qry_event_t **q = malloc(cap * sizeof(*q));
    if (!q)
      return SF_ENOMEM;
    for (size_t i = 0; i < s->q_len; i++)
      q[i] = s->q[(s->q_head + i) % s->q_cap];
    free(s->q);
    s->q = q;
    s->q_cap = cap;
    s->q_head = 0;
  }
  s->q[(s->q_head + s->q_len) % s->q_cap] = qry_event_ref(e);
  s->q_len++;
  s->q_bytes += ev_bytes(s, e);
  return 0;
}

static qry_event_t *q_pop(qry_sub_t *s) {
  qry_event_t *e = s->q[s->q_head];
  s->q_head = (s->q_head + 1) % s->q_cap;
  s->q_len--;
  s->q_bytes -= ev_bytes(s, e);
  return e;
}

static void q_clear(qry_sub_t *s) {
  while (s->q_len)
    qry_event_unref(q_pop(s));
  free(s->q);
  s->q = NULL;
  s->q_cap = s->q_head = 0;
}

/* An object {"last_id": id} as an event of kind. */
static qry_event_t *control_event(qry_event_kind_t kind, int64_t id) {
  json_t *o = json_pack("{s:I}", "last_id", (json_int_t)id);
  qry_event_t *e = o ? qry_event_new(kind, id, NULL, NULL, o) : NULL;
  json_decref(o);
  return e;
}

/* ---- subscriber lifetime ---- */

static void sub_unref(qry_sub_t *s) {
  if (--s->refs > 0)
    return;
  q_clear(s);
  qry_ws_destroy(s->ws);
  free(s);
}

static void hub_unlink(qry_changes_t *h, qry_sub_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else if (h->subs == s)
    h->subs = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
  if (s->transport == T_SSE)
    h->c.open_sse--;
  else if (s->transport == T_WS)
    h->c.open_ws--;
  else
    h->c.open_listeners--;
  if (s->state == SUB_LIVE)
    h->c.live--;
  if (h->c.live == 0 && !h->fetching)
    h->last_known = false;
  if (!h->subs && h->tick_init && !h->tick_closed)
    uv_timer_stop(&h->tick);
}

/* Why a listener ends, from what sub_close was given. */
static qry_changes_end_t end_reason(const qry_event_t *final,
                                    uint16_t ws_code) {
  if (final && final->kind == QRY_EVENT_EXPIRED)
    return QRY_CHANGES_END_EXPIRED;
  if (final && final->kind == QRY_EVENT_OVERFLOW)
    return QRY_CHANGES_END_OVERFLOW;
  return ws_code == 1001 ? QRY_CHANGES_END_SHUTDOWN : QRY_CHANGES_END_FAILED;
}

/* Ends the subscriber once: drops its queue, sends final (may be NULL) and,
 * on a WebSocket, a close frame with ws_code, then ends the stream. Drops
 * the stream's reference: s may be freed when this returns. */
static void sub_close(qry_sub_t *s, qry_event_t *final, uint16_t ws_code,
                      const char *why) {
  if (s->state == SUB_CLOSED)
    return;
  qry_changes_t *h = s->hub;
  hub_unlink(h, s);
  s->state = SUB_CLOSED;
  q_clear(s);
  if (s->transport == T_SINK) {
    const qry_changes_sink_t *sink = s->sink;
    s->sink = NULL;
    if (sink)
      sink->end(s->sink_ud, end_reason(final, ws_code), s->last_sent);
    sub_unref(s);
    return;
  }
  sf_http_req_t *req = s->req;
  s->req = NULL;
  if (req) {
    SF_DEBUG(h->log, MOD, "stream %s closed: %s", sf_http_req_id(req), why);
    if (!sf_http_req_canceled(req)) {
      if (s->transport == T_SSE) {
        if (final)
          sf_http_stream_write(req, final->sse, final->sse_len);
      } else {
        s->req = req; /* the frames below are written through it */
        if (final)
          qry_ws_send_text(s->ws, final->json, final->json_len);
        qry_ws_send_close(s->ws, ws_code, why);
        s->req = NULL;
      }
    }
    sf_http_stream_end(req);
  }
  sub_unref(s);
}

static void on_write_done(void *ud) {
  wtok_t *t = ud;
  qry_sub_t *s = t->sub;
  qry_event_unref(t->ev);
  free(t);
  if (s->state != SUB_CLOSED) {
    s->last_progress_ms = now_ms(s->hub);
    pump(s);
  }
  sub_unref(s);
}

/* Queues one token write; on failure the token is released here. Every
 * caller holds a reference on s (a failed write may close s on the way). */
static int write_token(qry_sub_t *s, wtok_t *t, const char *data,
                       size_t len) {
  t->sub = s;
  s->refs++;
  int rc = sf_http_stream_write_shared(s->req, data, len, on_write_done, t);
  if (rc != 0) {
    qry_event_unref(t->ev);
    free(t);
    sub_unref(s); /* never the last: the caller holds one */
  }
  return rc;
}

/* qry_ws write function: every frame byte is copied into a token. */
static int ws_write(void *ud, const uint8_t *data, size_t len) {
  qry_sub_t *s = ud;
  if (!s->req)
    return SF_ECANCELED;
  wtok_t *t = malloc(sizeof(*t) + len);
  if (!t)
    return SF_ENOMEM;
  t->ev = NULL;
  memcpy(t->data, data, len);
  return write_token(s, t, t->data, len);
}

/* Hands one event to the socket. */
static int send_event(qry_sub_t *s, qry_event_t *e) {
  int rc;
  if (s->transport == T_SINK) {
    rc = s->sink ? s->sink->event(s->sink_ud, e) : SF_ECANCELED;
  } else if (s->transport == T_SSE) {
    wtok_t *t = malloc(sizeof(*t));
    if (!t)
      return SF_ENOMEM;
    t->ev = qry_event_ref(e);
    rc = write_token(s, t, e->sse, e->sse_len);
  } else {
    rc = qry_ws_send_text(s->ws, e->json, e->json_len);
  }
  if (rc == 0) {
    s->last_write_ms = now_ms(s->hub);
    if (e->kind == QRY_EVENT_CHANGE)
      s->last_sent = e->id;
  }
  return rc;
}

/* ---- catch-up ---- */

static void on_page(void *ud, int err, const PGresult *res,
                    const char *sqlstate, const char *errmsg);

static void go_live(qry_sub_t *s) {
  s->state = SUB_LIVE;
  s->hub->c.live++;
}

/* The subscriber has drained its catch-up: go live or read one more page. */
static void advance(qry_sub_t *s) {
  qry_changes_t *h = s->hub;
  if (h->closing)
    return;
  if (!h->last_known && s->fresh) {
    /* No live subscriber: the hub starts tracking from this cursor (the
     * newest id of a recent snapshot) and fetches once for whatever was
     * committed since. A subscriber further behind reads pages first, so
     * that its catch-up stays paced by its reader. */
    h->last_known = true;
    h->last_id = s->cursor;
    h->dirty = false;
    go_live(s);
    hub_fetch(h);
    return;
  }
  if (h->last_known && s->cursor >= h->last_id) {
    go_live(s);
    return;
  }
  char after[24], limit[16];
  snprintf(after, sizeof(after), "%" PRId64, s->cursor);
  snprintf(limit, sizeof(limit), "%d", h->opts.page_rows);
  const char *params[4] = {after,
                           s->filter.has_store ? s->filter.store_id : NULL,
                           s->filter.has_product ? s->filter.product_id : NULL,
                           limit};
  s->page_inflight = true;
  s->refs++;
  int rc = sf_pg_query(h->pg, QRY_SQL_CHANGES_PAGE, 4, params, on_page, s);
  if (rc != 0) {
    s->page_inflight = false;
    s->refs--;
    SF_WARN(h->log, MOD, "catch-up page not queued: %s", sf_strerror(rc));
    sub_close(s, NULL, 1011, "database unavailable");
    return;
  }
  h->inflight++;
  h->c.pages++;
}

/* Moves queued events to the socket while it has room; then, in catch-up,
 * asks for more once everything is nearly out. */
static void pump(qry_sub_t *s) {
  s->refs++; /* s must survive a close triggered by a write below */
  size_t high = s->hub->opts.max_buffer / 2;
  size_t low = s->hub->opts.max_buffer / 4;
  while (s->state != SUB_CLOSED && s->q_len && socket_pending(s) < high) {
    qry_event_t *e = q_pop(s);
    int rc = send_event(s, e);
    qry_event_unref(e);
    if (rc != 0)
      sub_close(s, NULL, 1011, "write failed");
  }
  if (s->state == SUB_CATCHUP && !s->page_inflight && s->q_len == 0 &&
      socket_pending(s) < low)
    advance(s);
  sub_unref(s);
}

/* Builds the change event of row r; NULL when malformed or out of memory
 * (logged). */
static qry_event_t *change_event(qry_changes_t *h, const PGresult *res,
                                 int r, int64_t *id) {
  char *o = NULL;
  size_t len = 0;
  int s_col = PQfnumber(res, "store_id"), p_col = PQfnumber(res, "product_id");
  qry_event_t *e = NULL;
  if (qry_row_text(res, r, QRY_SHAPE_CHANGE, &o, &len) == 0 && s_col >= 0 &&
      p_col >= 0 && qry_row_i64(res, r, "id", id) == 0)
    e = qry_event_new_text(QRY_EVENT_CHANGE, *id, PQgetvalue(res, r, s_col),
                           PQgetvalue(res, r, p_col), o, len);
  free(o);
  if (!e)
    SF_ERROR(h->log, MOD, "change row %d: malformed or out of memory", r);
  return e;
}

static void on_page(void *ud, int err, const PGresult *res,
                    const char *sqlstate, const char *errmsg) {
  qry_sub_t *s = ud;
  qry_changes_t *h = s->hub;
  h->inflight--;
  s->page_inflight = false;
  if (s->state == SUB_CLOSED)
    goto done;
  if (err) {
    SF_WARN(h->log, MOD, "catch-up page failed: %s (sqlstate %s): %s",
            sf_strerror(err), sqlstate ? sqlstate : "", errmsg ? errmsg : "");
    sub_close(s, NULL, 1011, "database unavailable");
    goto done;
  }
  int64_t bound, pruned;
  if (PQntuples(res) < 1 || qry_row_i64(res, 0, "bound", &bound) != 0 ||
      qry_row_i64(res, 0, "pruned_through", &pruned) != 0) {
    SF_ERROR(h->log, MOD, "catch-up page: unexpected result");
    sub_close(s, NULL, 1011, "internal error");
    goto done;
  }
  if (s->cursor < pruned) {
    /* Retention pruned rows this subscriber had not read yet. */
    qry_event_t *fin = control_event(QRY_EVENT_EXPIRED, s->last_sent);
    sub_close(s, fin, 1008, "cursor expired");
    qry_event_unref(fin);
    goto done;
  }
  int id_col = PQfnumber(res, "id");
  int n = 0;
  for (int r = 0; id_col >= 0 && r < PQntuples(res); r++) {
    if (PQgetisnull(res, r, id_col))
      continue;
    int64_t id;
    qry_event_t *e = change_event(h, res, r, &id);
    int rc = e ? q_push(s, e) : SF_ENOMEM;
    qry_event_unref(e);
    if (rc != 0) {
      sub_close(s, NULL, 1011, "out of memory");
      goto done;
    }
    s->cursor = id;
    n++;
  }
  s->fresh = n < h->opts.page_rows;
  if (s->fresh && bound > s->cursor)
    s->cursor = bound; /* the page saw everything up to bound */
  pump(s);
done:
  sub_unref(s);
  maybe_idle(h);
}

/* ---- the shared fetch ---- */

static void on_fetch(void *ud, int err, const PGresult *res,
                     const char *sqlstate, const char *errmsg);

static void hub_fetch(qry_changes_t *h) {
  if (h->fetching || h->closing || !h->last_known || h->c.live == 0)
    return;
  char after[24], limit[16];
  snprintf(after, sizeof(after), "%" PRId64, h->last_id);
  snprintf(limit, sizeof(limit), "%d", h->opts.page_rows);
  const char *params[2] = {after, limit};
  int rc = sf_pg_query(h->pg, QRY_SQL_CHANGES_NEXT, 2, params, on_fetch, h);
  if (rc != 0) {
    /* The safety fetch of the tick retries. */
    SF_WARN(h->log, MOD, "fetch not queued: %s", sf_strerror(rc));
    return;
  }
  h->fetching = true;
  h->dirty = false;
  h->inflight++;
  h->c.fetches++;
  h->last_fetch_ms = now_ms(h);
}

/* Cuts off every live subscriber (they resume with Last-Event-ID). */
static void drop_live(qry_changes_t *h, const char *why) {
  /* from the head each time: closing a listener may close its siblings */
  for (;;) {
    qry_sub_t *s = h->subs;
    while (s && s->state != SUB_LIVE)
      s = s->next;
    if (!s)
      return;
    sub_close(s, NULL, 1011, why);
  }
}

/* Queues e for live subscriber s, or cuts s off when its unsent bytes
 * would pass max_buffer. */
static void deliver(qry_changes_t *h, qry_sub_t *s, qry_event_t *e) {
  if (unsent(s) + ev_bytes(s, e) > h->opts.max_buffer) {
    h->c.overflows++;
    SF_INFO(h->log, MOD, "stream %s too slow (%zu bytes unsent): cut off",
            s->req ? sf_http_req_id(s->req) : "-", unsent(s));
    qry_event_t *fin = control_event(QRY_EVENT_OVERFLOW, s->last_sent);
    sub_close(s, fin, 1008, "overflow");
    qry_event_unref(fin);
    return;
  }
  if (q_push(s, e) != 0) {
    sub_close(s, NULL, 1011, "out of memory");
    return;
  }
  h->c.fanned_out++;
  pump(s);
}

static void on_fetch(void *ud, int err, const PGresult *res,
                     const char *sqlstate, const char *errmsg) {
  qry_changes_t *h = ud;
  h->inflight--;
  h->fetching = false;
  if (h->closing) {
    maybe_idle(h);
    return;
  }
  if (err) {
    SF_WARN(h->log, MOD, "fetch failed: %s (sqlstate %s): %s",
            sf_strerror(err), sqlstate ? sqlstate : "", errmsg ? errmsg : "");
    h->dirty = true; /* the tick retries */
    if (h->c.live == 0)
      h->last_known = false;
    return;
  }
  int n = PQntuples(res);
  for (int r = 0; r < n; r++) {
    int64_t id;
    qry_event_t *e = change_event(h, res, r, &id);
    if (!e) {
      drop_live(h, "internal error");
      break;
    }
    h->last_id = id;
    h->c.fetched++;
    qry_sub_t *s = h->subs;
    while (s) {
      /* s may be cut off below, and with a listener its consumer may end
       * siblings too (one LiveQuery connection, several listeners): hold
       * next, and start over when it was closed meanwhile (the cursors
       * skip the subscribers already served). */
      qry_sub_t *next = s->next;
      if (next)
        next->refs++;
      if (s->state == SUB_LIVE && id > s->cursor) {
        s->cursor = id;
        if (qry_filter_match(&s->filter, e))
          deliver(h, s, e);
      }
      if (next && next->state == SUB_CLOSED) {
        sub_unref(next);
        next = h->subs;
      } else if (next) {
        sub_unref(next);
      }
      s = next;
    }
    qry_event_unref(e);
  }
  if (h->c.live == 0) {
    h->last_known = false;
    return;
  }
  if (n >= h->opts.page_rows || h->dirty)
    hub_fetch(h);
}

void qry_changes_notify(qry_changes_t *h, const char *payload) {
  if (!h || h->closing)
    return;
  h->c.notifications++;
  if (!h->last_known)
    return; /* nobody live: the next one to go live fetches */
  int64_t max_id;
  if (payload && qry_after_parse(payload, &max_id) == 0 &&
      max_id <= h->last_id)
    return; /* already fetched */
  if (h->fetching)
    h->dirty = true;
  else
    hub_fetch(h);
}

/* ---- heartbeats and stalls ---- */

static void heartbeat(qry_sub_t *s) {
  s->refs++; /* a failed write closes s on the way */
  int rc = s->transport == T_SSE
               ? sf_http_stream_write(s->req, ": ping\n\n", 8)
               : qry_ws_send_ping(s->ws);
  if (rc != 0)
    sub_close(s, NULL, 1011, "write failed");
  else
    s->last_write_ms = now_ms(s->hub);
  sub_unref(s);
}

static void on_tick(uv_timer_t *t) {
  qry_changes_t *h = t->data;
  uint64_t now = now_ms(h);
  if (h->c.live > 0 && !h->fetching &&
      now - h->last_fetch_ms >= h->opts.poll_ms)
    hub_fetch(h);
  uint64_t stall_ms = STALL_BEATS * h->opts.heartbeat_ms;
  qry_sub_t *s = h->subs;
  while (s) {
    qry_sub_t *next = s->next;
    if (s->transport == T_SINK) { /* the consumer has its own */
      s = next;
      continue;
    }
    if (socket_pending(s) == 0)
      s->last_progress_ms = now;
    if (now - s->last_progress_ms >= stall_ms) {
      h->c.stalls++;
      qry_event_t *fin = control_event(QRY_EVENT_OVERFLOW, s->last_sent);
      sub_close(s, fin, 1008, "stalled");
      qry_event_unref(fin);
    } else if (now - s->last_write_ms >= h->opts.heartbeat_ms) {
      heartbeat(s);
    }
    s = next;
  }
}

static void start_tick(qry_changes_t *h) {
  if (!h->tick_init) {
    if (uv_timer_init(h->loop, &h->tick) != 0)
      return; /* no heartbeats; streams still work */
    h->tick.data = h;
    h->tick_init = true;
  }
  if (!uv_is_active((uv_handle_t *)&h->tick)) {
    uint64_t period = h->opts.heartbeat_ms < h->opts.poll_ms
                          ? h->opts.heartbeat_ms
                          : h->opts.poll_ms;
    uv_timer_start(&h->tick, on_tick, period, period);
  }
}

/* ---- starting a stream ---- */

static void on_peer_gone(sf_http_req_t *req, void *ud) {
  (void)req;
  sub_close(ud, NULL, 1001, "peer gone");
}

static void ws_on_data(sf_http_req_t *req, const char *data, size_t len,
                       void *ud) {
  (void)req;
  qry_sub_t *s = ud;
  if (s->state == SUB_CLOSED)
    return;
  s->refs++; /* wslay's context must outlive its callbacks */
  int rc = qry_ws_feed(s->ws, data, len);
  if (rc == QRY_WS_CLOSED)
    sub_close(s, NULL, 1000, "closed by peer"); /* reply already sent */
  else if (rc != QRY_WS_OPEN)
    sub_close(s, NULL, 1011, "websocket failure");
  sub_unref(s);
}

/* Parses a boolean column ("t"/"f") of row 0. */
static bool col_true(const PGresult *res, const char *name) {
  int c = PQfnumber(res, name);
  return c >= 0 && !PQgetisnull(res, 0, c) &&
         strcmp(PQgetvalue(res, 0, c), "t") == 0;
}

/* Queues the snapshot rows of res and the snapshot_end marker. */
static int queue_snapshot(qry_sub_t *s, const PGresult *res, int64_t max_id) {
  int s_col = PQfnumber(res, "store_id"), p_col = PQfnumber(res, "product_id");
  qry_rowmap_t map;
  if (s_col < 0 || p_col < 0 || qry_rowmap_init(&map, res, QRY_SHAPE_SNAPSHOT))
    return SF_EPARSE;
  for (int r = 0; r < PQntuples(res); r++) {
    if (PQgetisnull(res, r, s_col))
      continue;
    char *o = NULL;
    size_t len = 0;
    qry_event_t *e =
        qry_rowmap_row_text(&map, r, &o, &len) == 0
            ? qry_event_new_text(QRY_EVENT_SNAPSHOT, 0,
                                 PQgetvalue(res, r, s_col),
                                 PQgetvalue(res, r, p_col), o, len)
            : NULL;
    free(o);
    int rc = e ? q_push(s, e) : SF_ENOMEM;
    qry_event_unref(e);
    if (rc != 0)
      return rc;
  }
  qry_event_t *end = control_event(QRY_EVENT_SNAPSHOT_END, max_id);
  int rc = end ? q_push(s, end) : SF_ENOMEM;
  qry_event_unref(end);
  return rc;
}

static void render_start(qry_call_t *c, const PGresult *res) {
  stream_req_t *sr = c->ext;
  qry_changes_t *h = sr->hub;
  sf_http_req_t *req = c->req;
  int64_t max_id, pruned;
  if (PQntuples(res) < 1 || qry_row_i64(res, 0, "max_id", &max_id) != 0 ||
      qry_row_i64(res, 0, "pruned_through", &pruned) != 0) {
    qry_respond_internal(c, "changes start: unexpected result");
    return;
  }
  if (!col_true(res, "store_found")) {
    qry_respond_not_found(req, "store");
    return;
  }
  if (!col_true(res, "product_found")) {
    qry_respond_not_found(req, "product");
    return;
  }
  if (sr->has_after && sr->after < pruned) {
    char detail[160];
    snprintf(detail, sizeof(detail),
             "changes up to %" PRId64 " were pruned; resubscribe with "
             "snapshot=true",
             pruned);
    sf_http_respond_problem(req, 410, "cursor_expired", detail, NULL);
    return;
  }
  if (h->closing) {
    sf_http_respond_problem(req, 503, "unavailable", "service shutting down",
                            NULL);
    return;
  }
  qry_sub_t *s = calloc(1, sizeof(*s));
  if (!s) {
    qry_respond_internal(c, "out of memory");
    return;
  }
  s->hub = h;
  s->refs = 1; /* the stream's */
  const sf_principal_t *who = sf_authn_principal(req);
  snprintf(s->user_id, sizeof(s->user_id), "%s", who ? who->user_id : "");
  s->transport = sr->transport;
  s->filter = sr->filter;
  s->cursor = sr->has_after ? sr->after : max_id;
  s->fresh = s->cursor >= max_id;
  s->last_sent = s->cursor;
  s->state = SUB_CATCHUP;
  int rc = 0;
  if (s->transport == T_WS)
    rc = qry_ws_new(&s->ws, ws_write, s);
  if (rc == 0 && sr->snapshot && !sr->has_after)
    rc = queue_snapshot(s, res, max_id);
  if (rc != 0) {
    sub_unref(s);
    qry_respond_internal(c, rc == SF_ENOMEM ? "out of memory"
                                            : "snapshot: malformed rows");
    return;
  }
  if (s->transport == T_SSE) {
    if (sf_http_add_header(req, "Cache-Control", "no-store") == 0 &&
        sf_http_add_header(req, "X-Accel-Buffering", "no") == 0)
      rc = sf_http_stream_start(req, 200, "text/event-stream; charset=utf-8");
    else
      rc = SF_ENOMEM;
  } else {
    if (sf_http_add_header(req, "Sec-WebSocket-Accept", sr->accept_key) == 0)
      rc = sf_http_upgrade(req, "websocket", ws_on_data, s);
    else
      rc = SF_ENOMEM;
  }
  if (rc != 0) {
    sub_unref(s);
    sf_http_respond_problem(req, 503, "unavailable", "stream not started",
                            NULL); /* dropped when the peer left */
    return;
  }
  s->req = req;
  s->next = h->subs;
  if (h->subs)
    h->subs->prev = s;
  h->subs = s;
  if (s->transport == T_SSE)
    h->c.open_sse++;
  else
    h->c.open_ws++;
  h->c.opened++;
  s->last_write_ms = s->last_progress_ms = now_ms(h);
  sf_http_req_on_close(req, on_peer_gone, s);
  start_tick(h);
  pump(s);
}

/* ---- GET /v1/changes ---- */

bool qry_changes_ws_handshake(sf_http_req_t *req,
                              char accept_key[QRY_WS_ACCEPT_LEN + 1]) {
  const char *version = sf_http_req_header(req, "Sec-WebSocket-Version");
  if (!qry_header_has_token(sf_http_req_header(req, "Upgrade"),
                            "websocket") ||
      !qry_header_has_token(sf_http_req_header(req, "Connection"),
                            "upgrade")) {
    sf_http_respond_problem(req, 400, "bad_request",
                            "WebSocket upgrade without Upgrade: websocket "
                            "and Connection: Upgrade",
                            NULL);
    return false;
  }
  if (!version || strcmp(version, "13") != 0) {
    sf_http_add_header(req, "Sec-WebSocket-Version", "13");
    sf_http_respond_problem(req, 426, "upgrade_required",
                            "only WebSocket version 13 is supported", NULL);
    return false;
  }
  int krc = qry_ws_accept_key(sf_http_req_header(req, "Sec-WebSocket-Key"),
                              accept_key);
  if (krc == SF_ENOMEM) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return false;
  }
  if (krc != 0) {
    sf_http_respond_problem(req, 400, "bad_request",
                            "Sec-WebSocket-Key must be base64 of 16 bytes",
                            NULL);
    return false;
  }
  return true;
}

static void h_changes(sf_http_req_t *req, void *ud) {
  qry_changes_t *h = ud;
  qry_call_t *c = qry_call_begin(h->calls, req);
  if (!c)
    return;
  stream_req_t *sr = sf_http_req_alloc(req, sizeof(*sr));
  if (!sr) {
    qry_respond_internal(c, "out of memory");
    return;
  }
  memset(sr, 0, sizeof(*sr));
  sr->hub = h;
  const char *upgrade = sf_http_req_header(req, "Upgrade");
  if (upgrade && qry_header_has_token(upgrade, "websocket")) {
    sr->transport = T_WS;
    if (!qry_changes_ws_handshake(req, sr->accept_key))
      return;
  } else if (qry_accepts_media(sf_http_req_header(req, "Accept"),
                               "text/event-stream")) {
    sr->transport = T_SSE;
  } else {
    sf_http_respond_problem(req, 406, "not_acceptable",
                            "ask with Accept: text/event-stream or a "
                            "WebSocket upgrade",
                            NULL);
    return;
  }
  const char *store = sf_http_req_query(req, "store_id");
  const char *product = sf_http_req_query(req, "product_id");
  if (qry_filter_init(&sr->filter, store, NULL) != 0) {
    qry_respond_invalid(req, "store_id must be a UUID");
    return;
  }
  if (qry_filter_init(&sr->filter, store, product) != 0) {
    qry_respond_invalid(req, "product_id must be a UUID");
    return;
  }
  /* accounts: a user who does not see every store streams one of its own
   * stores (a filter over several stores is not there yet) */
  if (c->store_filter &&
      !sf_authn_require(req, SF_ACT_READ_STORE, store))
    return;
  /* EventSource resends the last id it saw as Last-Event-ID: it wins over
   * the ?after= of the original URL. */
  const char *after = sf_http_req_header(req, "Last-Event-ID");
  if (!after)
    after = sf_http_req_query(req, "after");
  if (after) {
    if (qry_after_parse(after, &sr->after) != 0) {
      qry_respond_invalid(req, "Last-Event-ID / after must be a change id "
                               "(a non-negative integer)");
      return;
    }
    sr->has_after = true;
  }
  if (qry_parse_bool(sf_http_req_query(req, "snapshot"), false,
                     &sr->snapshot) != 0) {
    qry_respond_invalid(req, "snapshot must be true or false");
    return;
  }
  c->ext = sr;
  qry_call_param(c, 0, sr->filter.has_store ? sr->filter.store_id : NULL);
  qry_call_param(c, 1,
                 sr->filter.has_product ? sr->filter.product_id : NULL);
  qry_call_param(c, 2, sr->snapshot && !sr->has_after ? "true" : "false");
  qry_call_run(c, QRY_SQL_CHANGES_START, 3, render_start);
}

/* ---- the hub ---- */

int qry_changes_new(qry_changes_t **out, uv_loop_t *loop, sf_pg_t *pg,
                    qry_calls_t *calls, const qry_changes_opts_t *opts,
                    sf_log_t *log) {
  if (!out || !loop || !pg || !calls || !opts || opts->max_buffer == 0 ||
      opts->heartbeat_ms == 0)
    return SF_EINVAL;
  qry_changes_t *h = calloc(1, sizeof(*h));
  if (!h)
    return SF_ENOMEM;
  h->loop = loop;
  h->pg = pg;
  h->calls = calls;
  h->log = log;
  h->opts = *opts;
  if (h->opts.poll_ms == 0)
    h->opts.poll_ms = DEFAULT_POLL_MS;
  if (h->opts.page_rows <= 0)
    h->opts.page_rows = DEFAULT_PAGE_ROWS;
  *out = h;
  return 0;
}

int qry_changes_register(qry_changes_t *h, sf_http_server_t *http) {
  return qry_route(h->calls, http, "/v1/changes", h_changes, h);
}

/* ---- listeners ---- */

int qry_changes_listen(qry_changes_t *h, const qry_filter_t *filter,
                       int64_t after, const qry_changes_sink_t *sink,
                       void *ud, qry_changes_listener_t **out) {
  if (!h || !filter || !sink || !out || after < 0)
    return SF_EINVAL;
  if (h->closing)
    return SF_ESTATE;
  qry_sub_t *s = calloc(1, sizeof(*s));
  if (!s)
    return SF_ENOMEM;
  s->hub = h;
  s->refs = 1; /* the consumer's */
  s->transport = T_SINK;
  s->sink_ud = ud; /* sink is set once the start cannot fail */
  s->filter = *filter;
  s->cursor = s->last_sent = after;
  s->state = SUB_CATCHUP; /* its first page tells how far behind it is */
  s->next = h->subs;
  if (h->subs)
    h->subs->prev = s;
  h->subs = s;
  h->c.open_listeners++; /* not in opened: that counts streams */
  s->last_write_ms = s->last_progress_ms = now_ms(h);
  start_tick(h);
  /* the first page is asked for at once; its events come from the loop */
  s->refs++;
  advance(s);
  if (s->state == SUB_CLOSED) { /* the page could not be queued */
    sub_unref(s);
    return SF_EIO;
  }
  s->refs--;
  s->sink = sink;
  *out = s;
  return 0;
}

void qry_changes_listener_kick(qry_changes_listener_t *l) {
  if (l && l->state != SUB_CLOSED)
    pump(l);
}

void qry_changes_unlisten(qry_changes_listener_t *l) {
  if (!l)
    return;
  l->sink = NULL; /* no end callback */
  if (l->state != SUB_CLOSED)
    sub_close(l, NULL, 1000, "unlistened");
}

static void on_tick_closed(uv_handle_t *t) {
  qry_changes_t *h = t->data;
  h->tick_closed = true;
  maybe_idle(h);
}

void qry_changes_shutdown(qry_changes_t *h, void (*idle)(void *ud),
                          void *ud) {
  if (!h || h->closing)
    return;
  h->closing = true;
  h->idle_cb = idle;
  h->idle_ud = ud;
  while (h->subs)
    sub_close(h->subs, NULL, 1001, "service shutting down");
  if (h->tick_init && !h->tick_closed)
    uv_close((uv_handle_t *)&h->tick, on_tick_closed);
  maybe_idle(h);
}

size_t qry_changes_pending(const qry_changes_t *h) {
  if (!h)
    return 0;
  return h->inflight + (h->tick_init && !h->tick_closed ? 1 : 0);
}

void qry_changes_stats(const qry_changes_t *h, qry_changes_counters_t *out) {
  *out = h->c;
}

void qry_changes_destroy(qry_changes_t *h) {
  if (!h)
    return;
  if (h->subs || qry_changes_pending(h) > 0)
    SF_ERROR(h->log, MOD, "destroyed with streams or queries pending");
  free(h);
}

void qry_changes_revoke_user(qry_changes_t *h, const char *user_id) {
  if (!h || !user_id || !*user_id)
    return;
  qry_sub_t *s = h->subs;
  while (s) {
    qry_sub_t *next = s->next; /* sub_close unlinks (and may free) s */
    if (strcmp(s->user_id, user_id) == 0) {
      SF_INFO(h->log, MOD, "ending a change stream of user %s: logged out "
                           "or its role changed",
              user_id);
      sub_close(s, NULL, 1008, "revoked");
    }
    s = next;
  }
}

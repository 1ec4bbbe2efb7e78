/* qry_livequery: Parse LiveQuery over the change hub. See qry_livequery.h.
 *
 * Lifetimes: a connection is refcounted (its stream, each write in flight,
 * a token look-up, each subscription start query); a subscription belongs
 * to its connection and is freed when removed, or, while its start query is
 * in flight, by that query's callback. Out of memory on a connection closes
 * it (1011): the SDK reconnects and resumes. */
#include "qry_livequery.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "qry_livequery_match.h"
#include "qry_parse.h"
#include "qry_sql.h"
#include "qry_ws.h"
#include "sf/err.h"

#define MOD "livequery"
#define STALL_BEATS 4     /* as the change streams */
#define MAX_MESSAGE 65536 /* largest client message */
#define INSTALLATION_MAX 128

/* The last known state of one Inventory row, per subscription. */
typedef struct row_state {
  char key[2 * SF_UUID_STR_LEN + 2]; /* "<store>_<product>" */
  qry_lq_row_t row;
  UT_hash_handle hh;
} row_state_t;

typedef struct lq_conn lq_conn_t;

typedef struct lq_sub {
  lq_conn_t *conn;
  struct lq_sub *next;
  int64_t request_id;
  qry_lq_query_t *q;
  qry_changes_listener_t *listener; /* NULL until started, or ended */
  int64_t last_id;                  /* every change id <= last_id handled */
  row_state_t *rows;
  bool starting; /* the start query is in flight */
  bool started;  /* it listened: its position means something */
  bool removed;  /* no longer in conn->subs: the start query frees it */
} lq_sub_t;

/* A resume point kept after a connection ended. */
typedef struct resume {
  struct resume *next; /* oldest first */
  char installation_id[INSTALLATION_MAX + 1];
  int64_t request_id;
  char *query; /* qry_lq_query_text */
  char user_id[SF_UUID_STR_LEN + 1];
  int64_t last_id;
  row_state_t *rows;
  uint64_t expires_ms;
} resume_t;

struct lq_conn {
  qry_livequery_t *lq;
  lq_conn_t *prev, *next; /* in lq->conns until closed */
  sf_http_req_t *req;     /* NULL once closed */
  qry_ws_t *ws;
  int refs;
  bool closed, connecting, connected;
  uint64_t client_id;
  char token[256];
  char installation_id[INSTALLATION_MAX + 1];
  sf_principal_t who; /* store_ids points to stores */
  char (*stores)[SF_UUID_STR_LEN + 1];
  lq_sub_t *subs;
  uint64_t last_write_ms, last_progress_ms;
};

struct qry_livequery {
  uv_loop_t *loop;
  sf_pg_t *pg;
  qry_changes_t *hub;
  sf_authn_t *authn;
  sf_log_t *log;
  qry_livequery_opts_t opts;
  lq_conn_t *conns;
  uint64_t next_client_id;
  resume_t *resumes, *resumes_tail;
  uv_timer_t tick;
  bool tick_init, tick_closed, closing;
  size_t inflight;
  void (*idle_cb)(void *ud);
  void *idle_ud;
  qry_livequery_counters_t c;
};

/* One frame write in flight. */
typedef struct wtok {
  lq_conn_t *conn;
  char data[];
} wtok_t;

static void conn_close(lq_conn_t *c, uint16_t code, const char *why);

/* ---- small helpers ---- */

static uint64_t now_ms(const qry_livequery_t *lq) { return uv_now(lq->loop); }

static void maybe_idle(qry_livequery_t *lq) {
  if (!lq->closing || !lq->idle_cb || qry_livequery_pending(lq) > 0)
    return;
  void (*cb)(void *) = lq->idle_cb;
  lq->idle_cb = NULL;
  cb(lq->idle_ud);
}

static void rows_free(row_state_t **rows) {
  row_state_t *r, *tmp;
  HASH_ITER(hh, *rows, r, tmp) {
    HASH_DEL(*rows, r);
    free(r);
  }
}

static void resume_free(resume_t *r) {
  rows_free(&r->rows);
  free(r->query);
  free(r);
}

static void sub_free(lq_sub_t *s) {
  qry_changes_unlisten(s->listener);
  rows_free(&s->rows);
  qry_lq_query_free(s->q);
  free(s);
}

static void conn_unref(lq_conn_t *c) {
  if (--c->refs > 0)
    return;
  qry_ws_destroy(c->ws);
  free(c->stores);
  free(c);
}

/* ---- writing ---- */

static void on_write_done(void *ud) {
  wtok_t *t = ud;
  lq_conn_t *c = t->conn;
  free(t);
  if (!c->closed) { /* the token's reference keeps c through the kicks */
    c->last_progress_ms = now_ms(c->lq);
    for (lq_sub_t *s = c->subs; s;) {
      lq_sub_t *next = s->next; /* a failed kick closes all of c */
      qry_changes_listener_kick(s->listener);
      if (c->closed)
        break;
      s = next;
    }
  }
  conn_unref(c);
}

/* qry_ws write function: every frame byte is copied into a token. */
static int ws_write(void *ud, const uint8_t *data, size_t len) {
  lq_conn_t *c = ud;
  if (!c->req)
    return SF_ECANCELED;
  wtok_t *t = malloc(sizeof(*t) + len);
  if (!t)
    return SF_ENOMEM;
  memcpy(t->data, data, len);
  t->conn = c;
  c->refs++;
  int rc = sf_http_stream_write_shared(c->req, t->data, len, on_write_done, t);
  if (rc != 0) {
    free(t);
    c->refs--; /* never the last: the caller holds one */
  }
  return rc;
}

/* Sends m (taken) as one text message. Returns 0 or an error (the
 * connection should then be closed). */
static int send_json(lq_conn_t *c, json_t *m) {
  if (!m)
    return SF_ENOMEM;
  char *text = json_dumps(m, JSON_COMPACT);
  json_decref(m);
  if (!text)
    return SF_ENOMEM;
  int rc = c->closed ? SF_ECANCELED : qry_ws_send_text(c->ws, text, strlen(text));
  free(text);
  if (rc == 0)
    c->last_write_ms = now_ms(c->lq);
  return rc;
}

static int send_error(lq_conn_t *c, int code, const char *error,
                      bool reconnect, int64_t request_id) {
  SF_DEBUG(c->lq->log, MOD, "client %" PRIu64 ": error %d: %s", c->client_id,
           code, error);
  return send_json(c, qry_lq_error_msg(code, error, reconnect, request_id));
}

/* ---- subscriptions: rows and events ---- */

static row_state_t *row_find(row_state_t *rows, const qry_lq_row_t *r) {
  char key[2 * SF_UUID_STR_LEN + 2];
  snprintf(key, sizeof(key), "%s_%s", r->store_id, r->product_id);
  row_state_t *e = NULL;
  HASH_FIND_STR(rows, key, e);
  return e;
}

/* Records r as the row's state. Returns 0 or SF_ENOMEM. */
static int row_put(row_state_t **rows, const qry_lq_row_t *r) {
  row_state_t *e = row_find(*rows, r);
  if (!e) {
    e = calloc(1, sizeof(*e));
    if (!e)
      return SF_ENOMEM;
    snprintf(e->key, sizeof(e->key), "%s_%s", r->store_id, r->product_id);
    HASH_ADD_STR(*rows, key, e);
  }
  e->row = *r;
  return 0;
}

static bool may_see(const lq_conn_t *c, const char *store_id) {
  return sf_auth_has_store(&c->who, store_id);
}

/* sink: one change for subscription s. The position and the row state
 * move on only once the event is handed to the socket, so that a resume
 * point never counts an event that was not sent. */
static int sink_event(void *ud, const qry_event_t *e) {
  lq_sub_t *s = ud;
  lq_conn_t *c = s->conn;
  qry_lq_row_t cur;
  if (qry_lq_row_from_change(e->json, e->json_len, &cur) != 0) {
    SF_ERROR(c->lq->log, MOD, "change %" PRId64 ": malformed event", e->id);
    return SF_EPARSE;
  }
  if (!may_see(c, cur.store_id)) {
    s->last_id = e->id;
    return 0;
  }
  row_state_t *prev_e = row_find(s->rows, &cur);
  qry_lq_row_t prev = prev_e ? prev_e->row : cur;
  qry_lq_op_t op = qry_lq_classify(s->q, prev_e ? &prev : NULL, &cur);
  if (op != QRY_LQ_NONE) {
    json_t *obj = qry_lq_object(s->q, &cur, !prev_e);
    json_t *orig = prev_e ? qry_lq_object(s->q, &prev, false) : NULL;
    int rc = send_json(c, qry_lq_event_msg(op, c->client_id, s->request_id,
                                           obj, orig));
    if (rc != 0)
      return rc;
  }
  s->last_id = e->id;
  return row_put(&s->rows, &cur);
}

static size_t sink_pending(void *ud) {
  lq_sub_t *s = ud;
  return s->conn->req ? sf_http_stream_pending(s->conn->req) : 0;
}

static void sink_end(void *ud, qry_changes_end_t why, int64_t last_sent) {
  lq_sub_t *s = ud;
  lq_conn_t *c = s->conn;
  (void)last_sent;
  s->listener = NULL;
  if (c->closed)
    return;
  switch (why) {
  case QRY_CHANGES_END_OVERFLOW:
    c->lq->c.cut_off++;
    SF_INFO(c->lq->log, MOD, "client %" PRIu64 " too slow: cut off",
            c->client_id);
    conn_close(c, 1008, "overflow");
    break;
  case QRY_CHANGES_END_SHUTDOWN:
    conn_close(c, 1001, "service shutting down");
    break;
  default:
    /* the subscription cannot go on: the SDK reconnects, resumes */
    conn_close(c, 1011, why == QRY_CHANGES_END_EXPIRED ? "resume point expired" : "change stream failed");
    break;
  }
}

static const qry_changes_sink_t sink = {sink_event, sink_pending, sink_end};

/* ---- resume points ---- */

static bool resume_matches(const resume_t *r, const lq_conn_t *c,
                           const lq_sub_t *s) {
  return r->request_id == s->request_id &&
         strcmp(r->installation_id, c->installation_id) == 0 &&
         strcmp(r->user_id, c->who.user_id) == 0 &&
         strcmp(r->query, qry_lq_query_text(s->q)) == 0;
}

/* Unlinks and returns the live resume point for s, or NULL; drops expired
 * ones on the way. */
static resume_t *resume_take(qry_livequery_t *lq, const lq_conn_t *c,
                             const lq_sub_t *s) {
  uint64_t now = now_ms(lq);
  resume_t **pp = &lq->resumes, *prev = NULL;
  while (*pp) {
    resume_t *r = *pp;
    bool expired = r->expires_ms <= now;
    if (expired || (c->installation_id[0] && resume_matches(r, c, s))) {
      *pp = r->next;
      if (lq->resumes_tail == r)
        lq->resumes_tail = prev;
      lq->c.resume_entries--;
      if (!expired)
        return r;
      resume_free(r);
      continue;
    }
    prev = r;
    pp = &r->next;
  }
  return NULL;
}

/* Keeps s's position and rows (moved out of s) for a reconnect. */
static void resume_keep(qry_livequery_t *lq, lq_conn_t *c, lq_sub_t *s) {
  if (!c->installation_id[0] || lq->opts.resume_ms == 0 || !s->started ||
      lq->opts.resume_max == 0)
    return;
  resume_t *old = resume_take(lq, c, s); /* one point per key */
  if (old)
    resume_free(old);
  while (lq->c.resume_entries >= lq->opts.resume_max && lq->resumes) {
    resume_t *r = lq->resumes; /* the oldest goes */
    lq->resumes = r->next;
    if (!lq->resumes)
      lq->resumes_tail = NULL;
    lq->c.resume_entries--;
    resume_free(r);
  }
  resume_t *r = calloc(1, sizeof(*r));
  if (!r || !(r->query = strdup(qry_lq_query_text(s->q)))) {
    free(r);
    SF_WARN(lq->log, MOD, "resume point not kept: out of memory");
    return;
  }
  snprintf(r->installation_id, sizeof(r->installation_id), "%s",
           c->installation_id);
  snprintf(r->user_id, sizeof(r->user_id), "%s", c->who.user_id);
  r->request_id = s->request_id;
  r->last_id = s->last_id;
  r->rows = s->rows;
  s->rows = NULL;
  r->expires_ms = now_ms(lq) + lq->opts.resume_ms;
  if (lq->resumes_tail)
    lq->resumes_tail->next = r;
  else
    lq->resumes = r;
  lq->resumes_tail = r;
  lq->c.resume_entries++;
}

/* ---- subscribing ---- */

/* Removes s from its connection; frees it unless its start query still
 * runs. */
static void sub_remove(lq_conn_t *c, lq_sub_t *s) {
  for (lq_sub_t **pp = &c->subs; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  c->lq->c.subscriptions--;
  qry_changes_unlisten(s->listener);
  s->listener = NULL;
  s->removed = true;
  if (!s->starting)
    sub_free(s);
}

static lq_sub_t *sub_find(lq_conn_t *c, int64_t request_id) {
  for (lq_sub_t *s = c->subs; s; s = s->next)
    if (s->request_id == request_id)
      return s;
  return NULL;
}

/* Reads the snapshot rows of a QRY_SQL_CHANGES_START result into s. */
static int load_snapshot(lq_sub_t *s, const PGresult *res) {
  int sc = PQfnumber(res, "store_id"), pc = PQfnumber(res, "product_id");
  int oc = PQfnumber(res, "on_hand"), rc_ = PQfnumber(res, "reserved");
  int vc = PQfnumber(res, "version");
  if (sc < 0 || pc < 0 || oc < 0 || rc_ < 0 || vc < 0)
    return SF_EPARSE;
  for (int r = 0; r < PQntuples(res); r++) {
    if (PQgetisnull(res, r, sc) || !may_see(s->conn, PQgetvalue(res, r, sc)))
      continue;
    qry_lq_row_t row;
    memset(&row, 0, sizeof(row));
    snprintf(row.store_id, sizeof(row.store_id), "%s", PQgetvalue(res, r, sc));
    snprintf(row.product_id, sizeof(row.product_id), "%s",
             PQgetvalue(res, r, pc));
    row.on_hand = strtoll(PQgetvalue(res, r, oc), NULL, 10);
    row.reserved = strtoll(PQgetvalue(res, r, rc_), NULL, 10);
    row.version = strtoll(PQgetvalue(res, r, vc), NULL, 10);
    if (row_put(&s->rows, &row) != 0)
      return SF_ENOMEM;
  }
  return 0;
}

static int col_i64(const PGresult *res, const char *name, int64_t *out) {
  int col = PQfnumber(res, name);
  if (col < 0 || PQntuples(res) < 1 || PQgetisnull(res, 0, col))
    return SF_EPARSE;
  *out = strtoll(PQgetvalue(res, 0, col), NULL, 10);
  return 0;
}

static void on_start(void *ud, int err, const PGresult *res,
                     const char *sqlstate, const char *errmsg) {
  lq_sub_t *s = ud;
  lq_conn_t *c = s->conn;
  qry_livequery_t *lq = c->lq;
  lq->inflight--;
  s->starting = false;
  if (s->removed || c->closed) {
    if (s->removed)
      sub_free(s);
    goto done;
  }
  int64_t max_id = 0, pruned = 0;
  int rc = err;
  if (err)
    SF_WARN(lq->log, MOD, "subscription start failed: %s (sqlstate %s): %s",
            sf_strerror(err), sqlstate ? sqlstate : "", errmsg ? errmsg : "");
  else if ((rc = col_i64(res, "max_id", &max_id)) != 0 ||
           (rc = col_i64(res, "pruned_through", &pruned)) != 0)
    SF_ERROR(lq->log, MOD, "subscription start: unexpected result");
  resume_t *r = rc ? NULL : resume_take(lq, c, s);
  int64_t after = max_id;
  if (r && r->last_id >= pruned) {
    after = r->last_id; /* gap-free: state and position of the old one */
    s->rows = r->rows;
    r->rows = NULL;
    lq->c.resumed++;
    SF_DEBUG(lq->log, MOD, "client %" PRIu64 " request %" PRId64 " resumes after change %" PRId64, c->client_id, s->request_id,
             after);
  } else if (!rc) {
    rc = load_snapshot(s, res);
  }
  if (r)
    resume_free(r);
  qry_filter_t f;
  if (!rc)
    rc = qry_filter_init(&f, qry_lq_query_store(s->q), NULL);
  if (!rc) {
    s->last_id = after;
    rc = qry_changes_listen(lq->hub, &f, after, &sink, s, &s->listener);
    s->started = rc == 0;
  }
  if (rc) {
    send_error(c, QRY_PARSE_CONNECTION_FAILED,
               "the change stream is unavailable, try again", true,
               s->request_id);
    sub_remove(c, s);
    goto done;
  }
  json_t *m = json_pack("{s:s,s:I,s:I}", "op", "subscribed", "clientId",
                        (json_int_t)c->client_id, "requestId",
                        (json_int_t)s->request_id);
  if (send_json(c, m) != 0)
    conn_close(c, 1011, "write failed");
done:
  conn_unref(c);
  maybe_idle(lq);
}

/* subscribe / update: (re)places the subscription request_id with q. */
static void subscribe(lq_conn_t *c, int64_t request_id, qry_lq_query_t *q) {
  qry_livequery_t *lq = c->lq;
  lq_sub_t *old = sub_find(c, request_id);
  if (old)
    sub_remove(c, old);
  lq_sub_t *s = calloc(1, sizeof(*s));
  if (!s) {
    qry_lq_query_free(q);
    conn_close(c, 1011, "out of memory");
    return;
  }
  s->conn = c;
  s->request_id = request_id;
  s->q = q;
  s->next = c->subs;
  c->subs = s;
  lq->c.subscriptions++;
  const char *params[3] = {qry_lq_query_store(q), NULL, "true"};
  int rc = sf_pg_query(lq->pg, QRY_SQL_CHANGES_START, 3, params, on_start, s);
  if (rc != 0) {
    SF_WARN(lq->log, MOD, "subscription start not queued: %s",
            sf_strerror(rc));
    send_error(c, QRY_PARSE_CONNECTION_FAILED,
               "the database is unavailable, try again", true, request_id);
    sub_remove(c, s);
    return;
  }
  s->starting = true;
  c->refs++;
  lq->inflight++;
}

/* ---- connecting ---- */

static void on_token(void *ud, sf_authn_outcome_t result,
                     const sf_principal_t *p) {
  lq_conn_t *c = ud;
  qry_livequery_t *lq = c->lq;
  lq->inflight--;
  c->connecting = false;
  if (c->closed)
    goto done;
  if (result == SF_AUTHN_UNAVAILABLE || result == SF_AUTHN_INTERNAL) {
    send_error(c, QRY_PARSE_CONNECTION_FAILED,
               "the account database is unavailable, try again", true, -1);
    goto done;
  }
  if (result != SF_AUTHN_OK) {
    send_error(c, QRY_PARSE_INVALID_SESSION_TOKEN, "Invalid session token",
               false, -1);
    goto done;
  }
  c->who = *p;
  c->who.store_ids = NULL;
  free(c->stores);
  c->stores = NULL;
  if (p->n_stores) {
    c->stores = malloc(p->n_stores * sizeof(*c->stores));
    if (!c->stores) {
      conn_close(c, 1011, "out of memory");
      goto done;
    }
    memcpy(c->stores, p->store_ids, p->n_stores * sizeof(*c->stores));
    c->who.store_ids = (const char(*)[SF_UUID_STR_LEN + 1]) c->stores;
  }
  c->connected = true;
  json_t *m = json_pack("{s:s,s:I}", "op", "connected", "clientId",
                        (json_int_t)c->client_id);
  if (send_json(c, m) != 0)
    conn_close(c, 1011, "write failed");
done:
  conn_unref(c);
  maybe_idle(lq);
}

static void on_connect(lq_conn_t *c, const qry_lq_msg_t *m) {
  qry_livequery_t *lq = c->lq;
  if (!m->application_id || strcmp(m->application_id, lq->opts.app_id) != 0) {
    send_error(c, QRY_LQ_ERR_BAD_KEYS, "Key in request is not valid", false,
               -1);
    return;
  }
  if (m->has_master_key) {
    send_error(c, QRY_PARSE_OPERATION_FORBIDDEN,
               "the master key is not accepted: sign in as an admin", false,
               -1);
    return;
  }
  if (c->connecting || c->connected) {
    send_error(c, QRY_LQ_ERR_BAD_REQUEST, "already connected", false, -1);
    return;
  }
  if (!m->session_token || !*m->session_token ||
      strlen(m->session_token) >= sizeof(c->token) || !lq->authn) {
    send_error(c, QRY_PARSE_INVALID_SESSION_TOKEN,
               "a session token is required", false, -1);
    return;
  }
  snprintf(c->token, sizeof(c->token), "%s", m->session_token);
  snprintf(c->installation_id, sizeof(c->installation_id), "%s",
           m->installation_id && strlen(m->installation_id) <= INSTALLATION_MAX
               ? m->installation_id
               : "");
  c->connecting = true;
  c->refs++;
  lq->inflight++;
  int rc = sf_authn_lookup_token(lq->authn, c->token, on_token, c);
  if (rc != 0) {
    c->connecting = false;
    c->refs--;
    lq->inflight--;
    send_error(c, QRY_PARSE_CONNECTION_FAILED,
               "the account database is unavailable, try again", true, -1);
  }
}

/* One text message of the client. Returns 0, or an error to fail the
 * connection (out of memory). */
static int on_text(void *ud, const char *data, size_t len) {
  lq_conn_t *c = ud;
  if (c->closed)
    return 0;
  qry_lq_msg_t m;
  int code = 0;
  int64_t rid = -1;
  char err[160];
  int rc = qry_lq_msg_parse(data, len, &m, &code, err, sizeof(err), &rid);
  if (rc == SF_EINVAL)
    return send_error(c, code, err, false, rid) == SF_ENOMEM ? SF_ENOMEM : 0;
  if (rc != 0)
    return rc;
  if (m.kind == QRY_LQ_MSG_CONNECT) {
    on_connect(c, &m);
  } else if (!c->connected) {
    send_error(c, QRY_LQ_ERR_NOT_FOUND,
               "Can not find this client, make sure you connect to server "
               "before subscribing",
               false, m.request_id);
  } else if (m.kind == QRY_LQ_MSG_UNSUBSCRIBE) {
    lq_sub_t *s = sub_find(c, m.request_id);
    if (!s) {
      send_error(c, QRY_LQ_ERR_NOT_FOUND,
                 "Cannot find subscription with this requestId", false,
                 m.request_id);
    } else {
      sub_remove(c, s);
      send_json(c, json_pack("{s:s,s:I,s:I}", "op", "unsubscribed",
                             "clientId", (json_int_t)c->client_id,
                             "requestId", (json_int_t)m.request_id));
    }
  } else if (m.session_token && strcmp(m.session_token, c->token) != 0) {
    send_error(c, QRY_PARSE_INVALID_SESSION_TOKEN,
               "a subscription uses the session token of its connection",
               false, m.request_id);
  } else if (m.kind == QRY_LQ_MSG_UPDATE && !sub_find(c, m.request_id)) {
    send_error(c, QRY_LQ_ERR_NOT_FOUND,
               "Cannot find subscription with this requestId", false,
               m.request_id);
  } else {
    qry_lq_query_t *q = NULL;
    rc = qry_lq_query_parse(m.query, &q, &code, err, sizeof(err));
    if (rc == SF_EINVAL)
      send_error(c, code, err, false, m.request_id);
    else if (rc == 0)
      subscribe(c, m.request_id, q);
  }
  qry_lq_msg_clear(&m);
  return rc == SF_ENOMEM ? rc : 0;
}

/* ---- the connection ---- */

static void conn_close(lq_conn_t *c, uint16_t code, const char *why) {
  if (c->closed)
    return;
  qry_livequery_t *lq = c->lq;
  c->closed = true;
  if (c->prev)
    c->prev->next = c->next;
  else if (lq->conns == c)
    lq->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  lq->c.open--;
  while (c->subs) {
    lq_sub_t *s = c->subs;
    if (s->started)
      resume_keep(lq, c, s);
    sub_remove(c, s);
  }
  sf_http_req_t *req = c->req;
  SF_DEBUG(lq->log, MOD, "client %" PRIu64 " closed: %s", c->client_id, why);
  if (req && !sf_http_req_canceled(req))
    qry_ws_send_close(c->ws, code, why);
  c->req = NULL;
  if (req)
    sf_http_stream_end(req);
  if (!lq->conns && lq->tick_init && !lq->tick_closed)
    uv_timer_stop(&lq->tick);
  conn_unref(c); /* the stream's */
}

static void on_peer_gone(sf_http_req_t *req, void *ud) {
  (void)req;
  conn_close(ud, 1001, "peer gone");
}

static void ws_on_data(sf_http_req_t *req, const char *data, size_t len,
                       void *ud) {
  (void)req;
  lq_conn_t *c = ud;
  if (c->closed)
    return;
  c->refs++;
  int rc = qry_ws_feed(c->ws, data, len);
  if (rc == QRY_WS_CLOSED)
    conn_close(c, 1000, "closed by peer");
  else if (rc != QRY_WS_OPEN)
    conn_close(c, 1011, "websocket failure");
  conn_unref(c);
}

static void on_tick(uv_timer_t *t) {
  qry_livequery_t *lq = t->data;
  uint64_t now = now_ms(lq);
  uint64_t stall_ms = STALL_BEATS * lq->opts.heartbeat_ms;
  lq_conn_t *c = lq->conns;
  while (c) {
    lq_conn_t *next = c->next;
    if (sf_http_stream_pending(c->req) == 0)
      c->last_progress_ms = now;
    if (now - c->last_progress_ms >= stall_ms) {
      lq->c.cut_off++;
      conn_close(c, 1008, "stalled");
    } else if (now - c->last_write_ms >= lq->opts.heartbeat_ms) {
      c->refs++;
      if (qry_ws_send_ping(c->ws) != 0)
        conn_close(c, 1011, "write failed");
      else
        c->last_write_ms = now;
      conn_unref(c);
    }
    c = next;
  }
}

static void start_tick(qry_livequery_t *lq) {
  if (!lq->tick_init) {
    if (uv_timer_init(lq->loop, &lq->tick) != 0) {
      SF_WARN(lq->log, MOD, "no heartbeat timer: connections get no pings");
      return;
    }
    lq->tick.data = lq;
    lq->tick_init = true;
  }
  if (!uv_is_active((uv_handle_t *)&lq->tick))
    uv_timer_start(&lq->tick, on_tick, lq->opts.heartbeat_ms,
                   lq->opts.heartbeat_ms);
}

/* GET /parse: the WebSocket upgrade. */
static void h_parse(sf_http_req_t *req, void *ud) {
  qry_livequery_t *lq = ud;
  if (lq->closing) {
    sf_http_respond_problem(req, 503, "unavailable", "service shutting down",
                            NULL);
    return;
  }
  char accept_key[QRY_WS_ACCEPT_LEN + 1];
  if (!qry_changes_ws_handshake(req, accept_key))
    return;
  lq_conn_t *c = calloc(1, sizeof(*c));
  if (!c || qry_ws_new(&c->ws, ws_write, c) != 0) {
    free(c);
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  qry_ws_on_text(c->ws, on_text, MAX_MESSAGE);
  c->lq = lq;
  c->refs = 1; /* the stream's */
  c->client_id = ++lq->next_client_id;
  int rc = sf_http_add_header(req, "Sec-WebSocket-Accept", accept_key);
  if (rc == 0)
    rc = sf_http_upgrade(req, "websocket", ws_on_data, c);
  if (rc != 0) {
    conn_unref(c);
    sf_http_respond_problem(req, 503, "unavailable", "stream not started",
                            NULL);
    return;
  }
  c->req = req;
  c->next = lq->conns;
  if (lq->conns)
    lq->conns->prev = c;
  lq->conns = c;
  lq->c.open++;
  c->last_write_ms = c->last_progress_ms = now_ms(lq);
  sf_http_req_on_close(req, on_peer_gone, c);
  start_tick(lq);
}

/* ---- the server ---- */

int qry_livequery_new(qry_livequery_t **out, uv_loop_t *loop, sf_pg_t *pg,
                      qry_changes_t *hub, sf_authn_t *authn,
                      const qry_livequery_opts_t *opts, sf_log_t *log) {
  if (!out || !loop || !pg || !hub || !opts || !opts->app_id ||
      opts->heartbeat_ms == 0)
    return SF_EINVAL;
  qry_livequery_t *lq = calloc(1, sizeof(*lq));
  if (!lq)
    return SF_ENOMEM;
  lq->loop = loop;
  lq->pg = pg;
  lq->hub = hub;
  lq->authn = authn;
  lq->log = log;
  lq->opts = *opts;
  *out = lq;
  return 0;
}

int qry_livequery_register(qry_livequery_t *lq, sf_http_server_t *http) {
  return sf_http_route(http, "GET", "/parse", h_parse, lq);
}

void qry_livequery_revoke_user(qry_livequery_t *lq, const char *user_id) {
  if (!lq)
    return;
  lq_conn_t *c = lq->conns;
  while (c) {
    lq_conn_t *next = c->next;
    if (c->connected && (!user_id || strcmp(c->who.user_id, user_id) == 0)) {
      SF_INFO(lq->log, MOD, "ending live queries of user %s: logged out or "
                            "its role changed",
              c->who.user_id);
      c->installation_id[0] = '\0'; /* nothing to resume for a revoked one */
      conn_close(c, 1008, "revoked");
    }
    c = next;
  }
}

static void on_tick_closed(uv_handle_t *t) {
  qry_livequery_t *lq = t->data;
  lq->tick_closed = true;
  maybe_idle(lq);
}

void qry_livequery_shutdown(qry_livequery_t *lq, void (*idle)(void *ud),
                            void *ud) {
  if (!lq || lq->closing)
    return;
  lq->closing = true;
  lq->idle_cb = idle;
  lq->idle_ud = ud;
  while (lq->conns)
    conn_close(lq->conns, 1001, "service shutting down");
  if (lq->tick_init && !lq->tick_closed)
    uv_close((uv_handle_t *)&lq->tick, on_tick_closed);
  maybe_idle(lq);
}

size_t qry_livequery_pending(const qry_livequery_t *lq) {
  if (!lq)
    return 0;
  return lq->inflight + (lq->tick_init && !lq->tick_closed ? 1 : 0);
}

void qry_livequery_stats(const qry_livequery_t *lq,
                         qry_livequery_counters_t *out) {
  *out = lq->c;
}

void qry_livequery_destroy(qry_livequery_t *lq) {
  if (!lq)
    return;
  if (lq->conns || qry_livequery_pending(lq) > 0)
    SF_ERROR(lq->log, MOD, "destroyed with connections or queries pending");
  while (lq->resumes) {
    resume_t *r = lq->resumes;
    lq->resumes = r->next;
    resume_free(r);
  }
  free(lq);
}

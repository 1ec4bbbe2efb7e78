/* cmd_app: lifecycle, routes and the write pipeline of the command
 * service. See cmd_app.h. */
#include "cmd_app.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_batch.h"
#include "cmd_bus.h"
#include "cmd_catalog.h"
#include "cmd_expiry.h"
#include "cmd_lanes.h"
#include "cmd_rebuild.h"
#include "cmd_reply.h"
#include "cmd_stock.h"
#include "cmd_users.h"
#include "sf/authn.h"
#include "sf/err.h"
#include "sf/json.h"
#include "sf/metrics.h"
#include "sf/progress.h"
#include "sf/uuid.h"

struct cmd_app {
  uv_loop_t *loop;
  const cmd_settings_t *cfg;
  sf_log_t *log;
  sf_http_server_t *http;
  cmd_lanes_t *lanes;
  cmd_bus_t *bus;       /* NULL when the bus intake is off */
  cmd_expiry_t *expiry; /* NULL when orders never expire (order-ttl-s 0) */
  sf_event_codec_t *codec;
  sf_uuidgen_t ids;
  uv_timer_t idem_timer;
  cmd_state_t *state;  /* NULL until the first rebuild is done */
  uint64_t generation; /* of state */
  bool resyncing;
  bool fatal;
  char fatal_reason[256];
  uv_timer_t fatal_timer; /* stops the app after a fence, off the lanes'
                             own callback */
  bool stopping;
  double rebuild_seconds;
  uint64_t rebuild_events;
  cmd_rebuild_progress_t rebuild_progress; /* of the writer's rebuilds */
  uint64_t pending;                        /* commands waiting for their commit */
  /* counters for /metrics */
  uint64_t accepted, rejected, failed, replayed;
  void (*stop_done)(void *);
  void *stop_ud;
  /* accounts: users and sessions in PostgreSQL (cmd_users.c, sf/authn.h) */
  sf_pg_t *pg;
  sf_authn_t *authn;
  cmd_users_t *users;
};

struct cmd_req {
  sf_http_req_t *req; /* NULL for a command from the bus */
  /* bus commands: where the answer goes, who acts, the id of the answer */
  cmd_answer_cb answer;
  void *answer_ud;
  char actor[SF_ID_LEN];
  char request_id[SF_ID_LEN + 8];
  char key_buf[300];
  const char *idem_key; /* the Idempotency-Key header, or NULL */
  char hash[2 * crypto_hash_sha256_BYTES + 1];
};

/* One message of a batch: where its answer goes. */
typedef struct batch_item {
  size_t index;
  json_t *body; /* without position */
  char *key;    /* the item's idempotency key, or NULL */
  char hash[2 * crypto_hash_sha256_BYTES + 1];
} batch_item_t;

struct cmd_batch {
  cmd_req_t *c;
  json_t *results;
  cmd_unit_t *unit;
  cmd_msg_t **tail;
  cmd_msg_t *extra, **extra_tail; /* crossing events, after the items' */
  batch_item_t *items;            /* one per message, in message order */
  size_t n_items, cap_items;
};

/* What a queued command needs when its transaction ends. */
typedef struct pending {
  cmd_app_t *app;
  cmd_req_t *c;
  json_t *body;       /* the answer, without position yet */
  int status;         /* of the answer on success */
  size_t n_answer;    /* messages whose positions the answer gives */
  cmd_batch_t *batch; /* set for a batch: then body is unused */
} pending_t;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t idem_retention_us(const cmd_app_t *a) {
  return (int64_t)a->cfg->idem_retention_s * 1000000;
}

sf_http_req_t *cmd_req_http(cmd_req_t *c) { return c->req; }
const char *cmd_req_idem_key(const cmd_req_t *c) { return c->idem_key; }
const cmd_state_t *cmd_app_state(const cmd_app_t *a) { return a->state; }
void cmd_app_new_id(cmd_app_t *a, char out[SF_ID_LEN]) {
  sf_uuid_v7_str(&a->ids, out);
}

/* ---- answers ---- */

json_t *cmd_problem_json(int status, const char *code, const char *detail,
                         const char *request_id) {
  char type[160];
  snprintf(type, sizeof(type), "https://stockflow.dev/problems/%s", code);
  json_t *p = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title",
                        sf_http_status_text(status), "status", status,
                        "detail", detail ? detail : sf_http_status_text(status),
                        "code", code);
  if (p && request_id)
    json_object_set_new(p, "request_id", json_string(request_id));
  return p;
}

/* Delivers an answer to where the command came from: the HTTP request,
 * or the bus origin's callback (then the request context is freed). */
static void answer_raw(cmd_req_t *c, int status, const char *content_type,
                       const char *text) {
  if (c->req) {
    sf_http_respond(c->req, status, content_type, text, strlen(text));
    return;
  }
  c->answer(c->answer_ud, status, text);
  free(c);
}

static const char *request_id(const cmd_req_t *c) {
  return c->req ? sf_http_req_id(c->req) : c->request_id;
}

/* An answer that is never recorded (nothing was written: 500, 503). */
static void answer_unrecorded(cmd_req_t *c, int status, const char *code,
                              const char *detail) {
  if (c->req) {
    if (status == 503)
      sf_http_add_header(c->req, "Retry-After", "1");
    sf_http_respond_problem(c->req, status, code, detail, NULL);
    return;
  }
  json_t *p = cmd_problem_json(status, code, detail, c->request_id);
  char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
  json_decref(p);
  answer_raw(c, status, "application/problem+json", text ? text : "{}");
  free(text);
}

/* Sends a finished answer and, under an Idempotency-Key, records it. */
static void send_recorded(cmd_app_t *a, cmd_req_t *c, int status,
                          const char *content_type, const char *text) {
  if (c->idem_key && a->state &&
      cmd_state_idem_finish(a->state, c->idem_key, c->hash, status, text,
                            now_us() + idem_retention_us(a)) != 0)
    SF_WARN(a->log, "command", "could not record the answer of an "
                               "idempotency key (out of memory)");
  answer_raw(c, status, content_type, text);
}

void cmd_app_problem(cmd_app_t *a, cmd_req_t *c, int status, const char *code,
                     const char *detail, json_t *extra) {
  if (status >= 400 && status < 500)
    a->rejected++;
  json_t *p = cmd_problem_json(status, code, detail, request_id(c));
  if (p && extra)
    json_object_update_missing(p, extra);
  json_decref(extra);
  char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
  json_decref(p);
  if (!text) {
    answer_unrecorded(c, 500, "internal", "out of memory");
    return;
  }
  send_recorded(a, c, status, "application/problem+json", text);
  free(text);
}

void cmd_app_invalid(cmd_app_t *a, cmd_req_t *c, const char *detail) {
  cmd_app_problem(a, c, 422, "validation_failed", detail, NULL);
}

void cmd_app_refuse(cmd_app_t *a, cmd_req_t *c, cmd_verdict_t v,
                    const char *detail, json_t *extra) {
  cmd_app_problem(a, c, cmd_verdict_status(v), cmd_verdict_code(v), detail,
                  extra);
}

/* 503 answers are never recorded: nothing was written, a retry may work. */
static void unavailable(sf_http_req_t *req, const char *detail) {
  sf_http_add_header(req, "Retry-After", "1");
  sf_http_respond_problem(req, 503, "unavailable", detail, NULL);
}

/* ---- the write pipeline ---- */

static bool valid_idem_key(const char *k) {
  size_t n = strlen(k);
  if (n < 1 || n > 255)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7e)
      return false;
  return true;
}

/* SHA-256 over method, path and body: what "the same request" means. */
static void request_hash(sf_http_req_t *req, char *out, size_t cap) {
  crypto_hash_sha256_state st;
  unsigned char digest[crypto_hash_sha256_BYTES];
  size_t len;
  const char *body = sf_http_req_body(req, &len);
  const char *method = sf_http_req_method(req);
  const char *path = sf_http_req_path(req);
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, (const unsigned char *)method, strlen(method));
  crypto_hash_sha256_update(&st, (const unsigned char *)"\n", 1);
  crypto_hash_sha256_update(&st, (const unsigned char *)path, strlen(path));
  crypto_hash_sha256_update(&st, (const unsigned char *)"\n", 1);
  crypto_hash_sha256_update(&st, (const unsigned char *)body, len);
  /* accounts: the same key sent by another user is another request (422
   * idempotency_key_reused), never a replay of someone else's answer */
  const sf_principal_t *who = sf_authn_principal(req);
  if (who) {
    crypto_hash_sha256_update(&st, (const unsigned char *)"\n", 1);
    crypto_hash_sha256_update(&st, (const unsigned char *)who->user_id,
                              strlen(who->user_id));
  }
  crypto_hash_sha256_final(&st, digest);
  sodium_bin2hex(out, cap, digest, sizeof(digest));
}

cmd_req_t *cmd_app_begin_write(cmd_app_t *a, sf_http_req_t *req) {
  if (a->fatal) {
    unavailable(req, a->fatal_reason);
    return NULL;
  }
  if (!a->state || a->resyncing) {
    unavailable(req, "the command service is rebuilding its state from the "
                     "event log; nothing was written");
    return NULL;
  }
  cmd_req_t *c = sf_http_req_alloc(req, sizeof(*c));
  if (!c) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return NULL;
  }
  memset(c, 0, sizeof(*c));
  c->req = req;
  const char *key = sf_http_req_header(req, "Idempotency-Key");
  if (!key)
    return c;
  if (!valid_idem_key(key)) {
    a->rejected++;
    sf_http_respond_problem(req, 400, "bad_idempotency_key",
                            "Idempotency-Key must be 1 to 255 printable "
                            "characters",
                            NULL);
    return NULL;
  }
  request_hash(req, c->hash, sizeof(c->hash));
  cmd_idem_view_t v;
  if (cmd_state_idem_get(a->state, key, &v)) {
    if (strcmp(v.request_hash, c->hash) != 0) {
      a->rejected++;
      sf_http_respond_problem(req, 422, "idempotency_key_reused",
                              "this Idempotency-Key was used with a different "
                              "request",
                              NULL);
    } else if (v.pending) {
      sf_http_add_header(req, "Retry-After", "1");
      sf_http_respond_problem(req, 409, "idempotency_key_in_flight",
                              "the first request with this Idempotency-Key is "
                              "still being committed; retry shortly",
                              NULL);
    } else {
      a->replayed++;
      sf_http_add_header(req, "Idempotent-Replayed", "true");
      sf_http_respond(req, v.status,
                      v.status >= 400 ? "application/problem+json"
                                      : "application/json",
                      v.body, strlen(v.body));
    }
    return NULL;
  }
  if (cmd_state_idem_begin(a->state, key, c->hash,
                           now_us() + idem_retention_us(a)) != 0) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return NULL;
  }
  c->idem_key = key;
  return c;
}

cmd_req_t *cmd_app_begin_bus(cmd_app_t *a, const char *key, const char *hash,
                             const char *actor, cmd_answer_cb answer,
                             void *ud) {
  cmd_req_t *c = calloc(1, sizeof(*c));
  if (!c) {
    answer(ud, 500, "{\"code\":\"internal\",\"detail\":\"out of memory\"}");
    return NULL;
  }
  c->answer = answer;
  c->answer_ud = ud;
  snprintf(c->actor, sizeof(c->actor), "%s",
           actor && sf_uuid_valid(actor) ? actor : "");
  snprintf(c->request_id, sizeof(c->request_id), "bus-%.36s", key);
  if (a->fatal) {
    answer_unrecorded(c, 503, "unavailable", a->fatal_reason);
    return NULL;
  }
  if (!a->state || a->resyncing) {
    answer_unrecorded(c, 503, "unavailable",
                      "the command service is rebuilding its state from the "
                      "event log; nothing was written");
    return NULL;
  }
  snprintf(c->key_buf, sizeof(c->key_buf), "%s", key);
  snprintf(c->hash, sizeof(c->hash), "%s", hash);
  cmd_idem_view_t v;
  if (cmd_state_idem_get(a->state, c->key_buf, &v)) {
    if (strcmp(v.request_hash, c->hash) != 0) {
      a->rejected++;
      json_t *p = cmd_problem_json(
          422, "idempotency_key_reused",
          "this command id was used for a different command", c->request_id);
      char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
      json_decref(p);
      answer_raw(c, 422, "application/problem+json", text ? text : "{}");
      free(text);
    } else if (v.pending) {
      answer_unrecorded(c, 409, "idempotency_key_in_flight",
                        "the first delivery of this command is still being "
                        "committed");
    } else {
      a->replayed++;
      answer_raw(c, v.status, "application/json", v.body);
    }
    return NULL;
  }
  if (cmd_state_idem_begin(a->state, c->key_buf, c->hash,
                           now_us() + idem_retention_us(a)) != 0) {
    answer_unrecorded(c, 500, "internal", "out of memory");
    return NULL;
  }
  c->idem_key = c->key_buf;
  return c;
}

cmd_req_t *cmd_app_begin_system(cmd_app_t *a, cmd_answer_cb answer,
                                void *ud) {
  if (a->fatal || !a->state || a->resyncing)
    return NULL;
  cmd_req_t *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->answer = answer;
  c->answer_ud = ud;
  snprintf(c->request_id, sizeof(c->request_id), "system");
  return c;
}

json_t *cmd_app_begin_json(cmd_app_t *a, sf_http_req_t *req, cmd_req_t **c) {
  *c = cmd_app_begin_write(a, req);
  return *c ? cmd_app_parse_body(a, *c) : NULL;
}

json_t *cmd_app_parse_body(cmd_app_t *a, cmd_req_t *c) {
  if (!sf_http_req_is_json(c->req)) {
    cmd_app_problem(a, c, 415, "unsupported_media_type",
                    "Content-Type must be application/json", NULL);
    return NULL;
  }
  size_t len;
  const char *body = sf_http_req_body(c->req, &len);
  json_t *obj = NULL;
  char err[256];
  if (sf_json_parse_object(body, len, &obj, err, sizeof(err)) != 0) {
    cmd_app_problem(a, c, 400, "malformed_json", err, NULL);
    return NULL;
  }
  return obj;
}

void cmd_app_envelope(cmd_app_t *a, cmd_req_t *c, sf_event_t *e,
                      const char *command_id) {
  sf_event_init(e);
  sf_uuid_v7_str(&a->ids, e->event_id);
  if (command_id)
    snprintf(e->command_id, sizeof(e->command_id), "%s", command_id);
  else
    sf_uuid_v7_str(&a->ids, e->command_id);
  e->occurred_at_us = now_us();
  /* accounts: the acting user's id, never anything else of the account */
  const sf_principal_t *who = c->req ? sf_authn_principal(c->req) : NULL;
  snprintf(e->actor, sizeof(e->actor), "%s",
           who ? who->user_id : (c->req ? "" : c->actor));
  e->idempotency_key = c->idem_key;
  e->request_hash = c->idem_key ? c->hash : NULL;
}

/* ---- authorization (accounts) ---- */

int cmd_app_route(cmd_app_t *a, sf_http_server_t *http, const char *method,
                  const char *pattern, sf_auth_action_t action,
                  const char *store_param, sf_http_handler_cb cb) {
  return sf_authn_route(a->authn, http, method, pattern, action, store_param,
                        cb, a);
}

bool cmd_req_may(const cmd_req_t *c, sf_auth_action_t action,
                 const char *store_id) {
  if (!c->req)
    return true; /* the bus: who may publish is Kafka's ACLs' business */
  return sf_auth_allows(sf_authn_principal(c->req), action, store_id);
}

bool cmd_app_allowed(cmd_app_t *a, cmd_req_t *c, sf_auth_action_t action,
                     const char *store_id) {
  if (cmd_req_may(c, action, store_id))
    return true;
  const sf_principal_t *p = sf_authn_principal(c->req);
  char detail[160];
  snprintf(detail, sizeof(detail), "role %s may not %s for store %.36s",
           p ? sf_role_name(p->role) : "(none)", sf_auth_action_name(action),
           store_id ? store_id : "(none)");
  cmd_app_problem(a, c, 403, "forbidden", detail, NULL);
  return false;
}

sf_auth_action_t cmd_movement_action(sf_movement_t m) {
  return m == SF_MOVE_COUNT || m == SF_MOVE_ADJUSTMENT
             ? SF_ACT_STOCK_COUNT_ADJUST
             : SF_ACT_STOCK_WRITE;
}

static void format_time(int64_t us, char *out, size_t cap) {
  sf_json_format_time(us, out, cap);
}

/* Builds the Kafka message of e. Returns NULL on failure (logged). */
static cmd_msg_t *make_msg(cmd_app_t *a, const sf_event_t *e, const char *topic,
                           const char *key) {
  cmd_msg_t *m = calloc(1, sizeof(*m));
  if (!m)
    return NULL;
  int rc = sf_event_encode(a->codec, e, &m->value, &m->value_len);
  if (rc) {
    SF_ERROR(a->log, "command", "encoding %s event %s: %s",
             sf_event_type_name(e->type), e->event_id, sf_err_name(rc));
    free(m);
    return NULL;
  }
  m->topic = topic;
  snprintf(m->key, sizeof(m->key), "%s", key);
  snprintf(m->ce_id, sizeof(m->ce_id), "%s", e->event_id);
  snprintf(m->ce_type, sizeof(m->ce_type), "stockflow.%s",
           sf_event_type_name(e->type));
  format_time(e->occurred_at_us, m->ce_time, sizeof(m->ce_time));
  if (e->store_id[0] && e->product_id[0])
    snprintf(m->ce_subject, sizeof(m->ce_subject), "stores/%s/products/%s",
             e->store_id, e->product_id);
  else if (e->store_id[0])
    snprintf(m->ce_subject, sizeof(m->ce_subject), "stores/%s", e->store_id);
  else if (e->product_id[0])
    snprintf(m->ce_subject, sizeof(m->ce_subject), "products/%s",
             e->product_id);
  return m;
}

/* rules: the low-stock crossings that the folded event e causes
 * (cmd_state_crossings), each with a fresh event id, encoded, appended at
 * *tail and folded. Returns 0, or an error (logged; the state may then hold
 * folds whose messages never commit: the caller rebuilds or rolls back). */
static int add_crossings(cmd_app_t *a, const sf_event_t *e, cmd_msg_t ***tail,
                         size_t *n_msgs) {
  size_t cap = e->type >= SF_EV_ORDER_PLACED && e->type <= SF_EV_ORDER_CANCELLED
                   ? e->order.n_lines
                   : 1;
  sf_event_t *xs = calloc(cap ? cap : 1, sizeof(*xs));
  if (!xs)
    return SF_ENOMEM;
  size_t nx = cmd_state_crossings(a->state, e, xs, cap);
  int rc = 0;
  for (size_t i = 0; i < nx && !rc; i++) {
    sf_uuid_v7_str(&a->ids, xs[i].event_id);
    cmd_msg_t *m = make_msg(a, &xs[i], a->cfg->topic_stock, xs[i].store_id);
    cmd_apply_result_t res;
    if (!m) {
      rc = SF_EINVAL;
      break;
    }
    **tail = m;
    *tail = &m->next;
    (*n_msgs)++;
    rc = cmd_state_apply(a->state, &xs[i], &res);
    if (rc)
      SF_ERROR(a->log, "command", "folding crossing event %s failed: %s",
               xs[i].event_id, sf_err_name(rc));
  }
  free(xs);
  return rc;
}

void cmd_app_commit(cmd_app_t *a, cmd_req_t *c, const cmd_outgoing_t *evs,
                    size_t n) {
  cmd_unit_t *u = calloc(1, sizeof(*u));
  pending_t *p = u ? calloc(1, sizeof(*p)) : NULL;
  json_t *body = NULL;
  if (!p)
    goto fail;
  cmd_msg_t **tail = &u->msgs;
  for (size_t i = 0; i < n; i++) {
    cmd_msg_t *m = make_msg(a, evs[i].e,
                            evs[i].catalog ? a->cfg->topic_catalog
                                           : a->cfg->topic_stock,
                            evs[i].key);
    if (!m)
      goto fail;
    *tail = m;
    tail = &m->next;
    u->n_msgs++;
  }
  for (size_t i = 0; i < n; i++) {
    cmd_apply_result_t res;
    int rc = cmd_state_apply(a->state, evs[i].e, &res);
    if (rc) {
      /* The decision and the fold disagree: a bug, not the client's fault.
       * Earlier events of this unit may be folded but the unit never
       * commits, so the state no longer matches the log: writes pause and
       * the writer rebuilds it before its next batch. */
      SF_ERROR(a->log, "command", "folding event %s failed: %s; rebuilding "
                                  "the state from the log",
               evs[i].e->event_id, sf_err_name(rc));
      a->resyncing = true;
      cmd_lanes_resync(a->lanes, "an accepted event could not be folded");
      goto fail;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (add_crossings(a, evs[i].e, &tail, &u->n_msgs) != 0) {
      a->resyncing = true; /* the unit's folds never commit: as above */
      cmd_lanes_resync(a->lanes, "a crossing event could not be added");
      goto fail;
    }
  }
  const sf_event_t *list[2];
  for (size_t i = 0; i < n && i < 2; i++)
    list[i] = evs[i].e;
  body = n <= 2 ? cmd_reply_build(a->state, list, n, &p->status) : NULL;
  if (!body)
    goto fail;
  p->app = a;
  p->c = c;
  p->body = body;
  p->n_answer = n;
  u->generation = a->generation;
  u->ud = p;
  a->pending++;
  cmd_lanes_submit(a->lanes, u);
  return;

fail:
  free(p);
  cmd_unit_free(u);
  json_decref(body);
  a->failed++;
  if (c->idem_key)
    cmd_state_idem_drop(a->state, c->idem_key);
  answer_unrecorded(c, 500, "internal",
                    "the command could not be encoded or applied");
}

static void batch_free(cmd_batch_t *b) {
  if (!b)
    return;
  while (b->extra) { /* crossings that never joined the unit */
    cmd_msg_t *next = b->extra->next;
    free(b->extra->value);
    free(b->extra);
    b->extra = next;
  }
  for (size_t i = 0; i < b->n_items; i++) {
    json_decref(b->items[i].body);
    free(b->items[i].key);
  }
  free(b->items);
  json_decref(b->results);
  cmd_unit_free(b->unit);
  free(b);
}

void cmd_app_batch_discard(cmd_batch_t *b) { batch_free(b); }

cmd_batch_t *cmd_app_batch_new(cmd_app_t *a, cmd_req_t *c, json_t *results) {
  cmd_batch_t *b = calloc(1, sizeof(*b));
  if (b)
    b->unit = calloc(1, sizeof(*b->unit));
  if (!b || !b->unit) {
    free(b);
    json_decref(results);
    cmd_app_problem(a, c, 500, "internal", "out of memory", NULL);
    return NULL;
  }
  b->c = c;
  b->results = results;
  b->tail = &b->unit->msgs;
  b->extra_tail = &b->extra;
  return b;
}

int cmd_app_batch_add(cmd_app_t *a, cmd_batch_t *b, const sf_event_t *e,
                      size_t index, json_t *body, const char *item_key,
                      const char *item_hash) {
  if (b->n_items == b->cap_items) {
    size_t cap = b->cap_items ? b->cap_items * 2 : 64;
    batch_item_t *items = realloc(b->items, cap * sizeof(*items));
    if (!items) {
      json_decref(body);
      return SF_ENOMEM;
    }
    b->items = items;
    b->cap_items = cap;
  }
  cmd_msg_t *m = make_msg(a, e, a->cfg->topic_stock, e->store_id);
  if (!m) {
    json_decref(body);
    return SF_EINVAL;
  }
  batch_item_t *it = &b->items[b->n_items];
  memset(it, 0, sizeof(*it));
  it->index = index;
  it->body = body;
  if (item_key) {
    it->key = strdup(item_key);
    snprintf(it->hash, sizeof(it->hash), "%s", item_hash ? item_hash : "");
  }
  b->n_items++;
  *b->tail = m;
  b->tail = &m->next;
  b->unit->n_msgs++;
  return add_crossings(a, e, &b->extra_tail, &b->unit->n_msgs);
}

static void batch_answer(cmd_app_t *a, cmd_batch_t *b) {
  json_t *answer = json_pack("{s:O}", "results", b->results);
  char *text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
  json_decref(answer);
  if (text)
    send_recorded(a, b->c, 200, "application/json", text);
  else
    answer_unrecorded(b->c, 500, "internal", "out of memory");
  free(text);
}

void cmd_app_batch_commit(cmd_app_t *a, cmd_batch_t *b) {
  if (b->unit->n_msgs == 0) {
    batch_answer(a, b);
    batch_free(b);
    return;
  }
  pending_t *p = calloc(1, sizeof(*p));
  if (!p) {
    cmd_app_problem(a, b->c, 500, "internal", "out of memory", NULL);
    batch_free(b);
    return;
  }
  p->app = a;
  p->c = b->c;
  p->batch = b;
  cmd_unit_t *u = b->unit;
  *b->tail = b->extra; /* the crossings go after every item's message */
  b->extra = NULL;
  u->generation = a->generation;
  u->ud = p;
  a->pending++;
  cmd_lanes_submit(a->lanes, u);
}

/* The batch's transaction ended: fill in positions, remember item keys,
 * answer. The unit is freed by the caller, not by batch_free. */
static void batch_done(cmd_app_t *a, cmd_batch_t *b, cmd_unit_t *u) {
  b->unit = NULL;
  if (u->err) {
    a->failed++;
    if (b->c->idem_key && a->state)
      cmd_state_idem_drop(a->state, b->c->idem_key);
    answer_unrecorded(b->c, 503, "unavailable",
                      "the event bus did not commit the batch; none of "
                      "it was applied");
    batch_free(b);
    return;
  }
  size_t i = 0;
  for (cmd_msg_t *m = u->msgs; m && i < b->n_items; m = m->next, i++) {
    batch_item_t *it = &b->items[i];
    char pos[64];
    const char *plist[1] = {pos};
    cmd_reply_position(pos, sizeof(pos), false, m->partition, m->offset);
    char *text = cmd_reply_finish(it->body, plist, 1);
    if (text && it->key && a->state)
      cmd_state_idem_finish(a->state, it->key, it->hash, 201, text,
                            now_us() + idem_retention_us(a));
    free(text);
    json_t *slot = json_array_get(b->results, it->index);
    if (slot)
      json_object_set(slot, "body", it->body);
    a->accepted++;
  }
  batch_answer(a, b);
  batch_free(b);
}

static void unit_done_cb(void *ud, cmd_unit_t *u) {
  cmd_app_t *a = ud;
  pending_t *p = u->ud;
  cmd_req_t *c = p->c;
  a->pending--;
  if (p->batch) {
    batch_done(a, p->batch, u);
    free(p);
    cmd_unit_free(u);
    return;
  }
  if (u->err) {
    a->failed++;
    if (c->idem_key && a->state)
      cmd_state_idem_drop(a->state, c->idem_key);
    answer_unrecorded(c, 503, "unavailable",
                      u->err == SF_ECANCELED
                          ? "the service is shutting down; the command was not "
                            "committed"
                          : "the event bus did not commit the command; it was not "
                            "applied (if the broker committed it before failing, "
                            "the event log has it and the state is rebuilt from "
                            "the log: retry with the same Idempotency-Key)");
  } else {
    a->accepted++;
    char positions[8][64];
    const char *plist[8];
    size_t n = 0;
    for (cmd_msg_t *m = u->msgs; m && n < 8 && n < p->n_answer;
         m = m->next, n++) {
      cmd_reply_position(positions[n], sizeof(positions[n]),
                         strcmp(m->topic, a->cfg->topic_catalog) == 0,
                         m->partition, m->offset);
      plist[n] = positions[n];
    }
    char *text = cmd_reply_finish(p->body, plist, n);
    if (text) {
      send_recorded(a, c, p->status, "application/json", text);
      free(text);
    } else {
      answer_unrecorded(c, 500, "internal", "out of memory");
    }
  }
  json_decref(p->body);
  free(p);
  cmd_unit_free(u);
}

static void state_cb(void *ud, cmd_state_t *state, uint64_t generation,
                     double seconds, uint64_t events) {
  cmd_app_t *a = ud;
  cmd_state_destroy(a->state);
  a->state = state;
  a->generation = generation;
  a->resyncing = false;
  a->rebuild_seconds = seconds;
  a->rebuild_events = events;
  SF_INFO(a->log, "command", "ready: %zu products, %zu stores, %zu stock rows "
                             "(rebuilt from %llu events in %.3f s)",
          cmd_state_n_products(state),
          cmd_state_n_stores(state), cmd_state_n_stock(state),
          (unsigned long long)events, seconds);
}

static void resync_cb(void *ud, const char *reason) {
  cmd_app_t *a = ud;
  a->resyncing = true;
  SF_WARN(a->log, "command", "writes paused while the state is rebuilt: %s",
          reason);
}

static void fatal_timer_cb(uv_timer_t *t) {
  cmd_app_t *a = t->data;
  cmd_app_stop(a, NULL, NULL);
}

static void fatal_cb(void *ud, const char *reason) {
  cmd_app_t *a = ud;
  if (a->fatal)
    return;
  a->fatal = true;
  snprintf(a->fatal_reason, sizeof(a->fatal_reason),
           "this command service instance stopped writing: %s", reason);
  SF_ERROR(a->log, "command", "%s; exiting so that a supervisor restarts "
                              "it",
           a->fatal_reason);
  /* not from inside the lanes' callback: they are destroyed by the stop */
  uv_timer_start(&a->fatal_timer, fatal_timer_cb, 0, 0);
}

bool cmd_app_failed(const cmd_app_t *a) { return a->fatal; }

/* ---- operations ---- */

static void problem_plain(sf_http_req_t *req, int status, const char *code,
                          const char *detail) {
  sf_http_respond_problem(req, status, code, detail, NULL);
}

static void h_healthz(sf_http_req_t *req, void *ud) {
  (void)ud;
  sf_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* 503 while the state is rebuilt; once the replay runs, the detail and a
 * "progress" member say how far it got. */
static void rebuilding(cmd_app_t *a, sf_http_req_t *req, const char *what) {
  cmd_rebuild_snapshot_t s;
  cmd_rebuild_progress_read(&a->rebuild_progress, &s);
  if (!s.running) {
    problem_plain(req, 503, "unavailable", what);
    return;
  }
  sf_progress_t p = {.done = s.done, .total = s.total, .rate = s.rate};
  char line[160], detail[320];
  sf_progress_format(&p, "offsets", line, sizeof line);
  snprintf(detail, sizeof detail, "%s: %s", what, line);
  json_t *extra = json_pack(
      "{s:{s:I, s:I, s:f, s:o, s:f}}", "progress", "done", (json_int_t)s.done,
      "total", (json_int_t)s.total, "rate", s.rate, "eta_s",
      s.eta_s >= 0 ? json_real(s.eta_s) : json_null(), "elapsed_s",
      s.elapsed_s);
  sf_http_respond_problem(req, 503, "unavailable", detail, extra);
}

static void h_readyz(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  if (a->fatal)
    problem_plain(req, 503, "unavailable", a->fatal_reason);
  else if (!a->state)
    rebuilding(a, req,
               "connecting to Kafka and rebuilding the state from the log");
  else if (a->resyncing)
    rebuilding(a, req, "rebuilding the state after a failed commit");
  else if (!cmd_users_ready(a->users)) /* accounts: no admin, or no PG */
    problem_plain(req, 503, "unavailable",
                  cmd_users_not_ready_reason(a->users));
  else
    sf_http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

static void h_metrics(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  char *http = sf_http_server_metrics(a->http, "stockflow_command");
  cmd_writer_stats_t ws, lane_ws[CMD_MAX_LANES];
  cmd_lanes_stats(a->lanes, &ws, lane_ws);
  size_t n_lanes = cmd_lanes_count(a->lanes);
  sf_metrics_t m;
  sf_metrics_init(&m, "stockflow_command");
  sf_metrics_family(&m, "commands_total", SF_METRIC_COUNTER,
                    "Commands answered, by result.");
  sf_metrics_u64(&m, "commands_total",
                 &(sf_metric_label_t){"result", "accepted"}, 1, a->accepted);
  sf_metrics_u64(&m, "commands_total",
                 &(sf_metric_label_t){"result", "rejected"}, 1, a->rejected);
  sf_metrics_u64(&m, "commands_total",
                 &(sf_metric_label_t){"result", "failed"}, 1, a->failed);
  sf_metrics_gauge(&m, "pending", "Commands waiting for their commit.",
                   (int64_t)a->pending);
  sf_metrics_counter(&m, "commit_batches_total", "Kafka transactions committed.",
                     ws.batches);
  sf_metrics_counter(&m, "commit_failed_total", "Kafka transactions that failed.",
                     ws.failed_batches);
  sf_metrics_family(&m, "commit_batch_commands", SF_METRIC_SUMMARY,
                    "Commands per committed transaction.");
  sf_metrics_u64(&m, "commit_batch_commands_sum", NULL, 0, ws.batch_units);
  sf_metrics_u64(&m, "commit_batch_commands_count", NULL, 0, ws.batches);
  sf_metrics_counter(&m, "events_produced_total",
                     "Events in committed transactions.", ws.batch_msgs);
  sf_metrics_family(&m, "commit_seconds", SF_METRIC_SUMMARY,
                    "Time of a transaction from its first message to its "
                    "commit.");
  sf_metrics_f64(&m, "commit_seconds_sum", NULL, 0, ws.commit_seconds_sum);
  sf_metrics_u64(&m, "commit_seconds_count", NULL, 0, ws.batches);
  sf_metrics_family(&m, "rebuild_seconds", SF_METRIC_GAUGE,
                    "Time of the last rebuild of the state from the log.");
  sf_metrics_f64(&m, "rebuild_seconds", NULL, 0, a->rebuild_seconds);
  sf_metrics_gauge(&m, "rebuild_events", "Events read by the last rebuild.",
                   (int64_t)a->rebuild_events);
  sf_metrics_family(&m, "state_rows", SF_METRIC_GAUGE,
                    "Rows of the in-memory state, by kind.");
  sf_metrics_u64(&m, "state_rows", &(sf_metric_label_t){"kind", "products"}, 1,
                 a->state ? cmd_state_n_products(a->state) : 0);
  sf_metrics_u64(&m, "state_rows", &(sf_metric_label_t){"kind", "stores"}, 1,
                 a->state ? cmd_state_n_stores(a->state) : 0);
  sf_metrics_u64(&m, "state_rows", &(sf_metric_label_t){"kind", "stock"}, 1,
                 a->state ? cmd_state_n_stock(a->state) : 0);
  sf_metrics_counter(&m, "idempotent_replays_total",
                     "Requests answered from an earlier command's result.",
                     a->replayed);
  sf_metrics_gauge(&m, "idempotency_keys", "Idempotency keys remembered.",
                   a->state ? (int64_t)cmd_state_n_idem(a->state) : 0);
  sf_metrics_gauge(&m, "ready", "1 when the service takes writes.",
                   a->state && !a->resyncing && !a->fatal);
  sf_metrics_gauge(&m, "writer_lanes", "Writer lanes committing in parallel.",
                   (int64_t)n_lanes);
  sf_metrics_counter(&m, "writer_recoveries_total",
                     "Producers replaced after a broken transaction.",
                     ws.recoveries);
  sf_metrics_gauge(&m, "lane_waiting",
                   "Units waiting behind a barrier (cross-lane or catalog).",
                   (int64_t)cmd_lanes_waiting(a->lanes));
  sf_metrics_family(&m, "lane_commit_batches_total", SF_METRIC_COUNTER,
                    "Kafka transactions committed, by lane.");
  for (size_t k = 0; k < n_lanes; k++) {
    char lane[24];
    snprintf(lane, sizeof(lane), "%zu", k);
    sf_metrics_u64(&m, "lane_commit_batches_total",
                   &(sf_metric_label_t){"lane", lane}, 1, lane_ws[k].batches);
  }
  sf_metrics_family(&m, "lane_commit_batch_commands", SF_METRIC_SUMMARY,
                    "Commands per committed transaction, by lane.");
  for (size_t k = 0; k < n_lanes; k++) {
    char lane[24];
    snprintf(lane, sizeof(lane), "%zu", k);
    sf_metrics_u64(&m, "lane_commit_batch_commands_sum",
                   &(sf_metric_label_t){"lane", lane}, 1,
                   lane_ws[k].batch_units);
    sf_metrics_u64(&m, "lane_commit_batch_commands_count",
                   &(sf_metric_label_t){"lane", lane}, 1, lane_ws[k].batches);
  }
  if (a->bus) {
    cmd_bus_stats_t bs;
    cmd_bus_stats(a->bus, &bs);
    sf_metrics_counter(&m, "bus_commands_total",
                       "Commands read from the bus intake.", bs.received);
    sf_metrics_counter(&m, "bus_malformed_total",
                       "Bus commands that did not decode.", bs.malformed);
    sf_metrics_counter(&m, "bus_results_total",
                       "Bus command results acknowledged by the broker.",
                       bs.results);
  }
  cmd_rebuild_snapshot_t rs;
  cmd_rebuild_progress_read(&a->rebuild_progress, &rs);
  sf_metrics_gauge(&m, "rebuild_running",
                   "1 while the state is being rebuilt from the log.",
                   rs.running);
  sf_metrics_gauge(&m, "rebuild_done_offsets",
                   "Log offsets the running (or last) rebuild has read.",
                   (int64_t)rs.done);
  sf_metrics_gauge(&m, "rebuild_total_offsets",
                   "Log offsets the running (or last) rebuild has to read.",
                   (int64_t)rs.total);
  sf_metrics_raw(&m, http ? http : "");
  size_t len = 0;
  char *buf = http ? sf_metrics_take(&m, &len) : NULL;
  free(http);
  if (!buf) {
    sf_metrics_release(&m);
    problem_plain(req, 500, "internal", "out of memory");
    return;
  }
  sf_http_respond(req, 200, SF_METRICS_CONTENT_TYPE, buf, len);
  free(buf);
}

static void idem_timer_cb(uv_timer_t *t) {
  cmd_app_t *a = t->data;
  if (!a->state)
    return;
  size_t n = cmd_state_idem_expire(a->state, now_us());
  if (n)
    SF_DEBUG(a->log, "command", "%zu idempotency keys expired", n);
}

int cmd_app_new(cmd_app_t **out, uv_loop_t *loop, const cmd_settings_t *cfg,
                sf_log_t *log) {
  cmd_app_t *a = calloc(1, sizeof(*a));
  if (!a)
    return SF_ENOMEM;
  a->loop = loop;
  a->cfg = cfg;
  a->log = log;
  sf_uuidgen_init(&a->ids);
  cmd_rebuild_progress_init(&a->rebuild_progress);
  int rc = sf_event_codec_new(&a->codec);
  if (rc) {
    SF_ERROR(log, "command", "loading the event schema: %s", sf_err_name(rc));
    goto fail_codec;
  }
  sf_http_limits_t limits;
  sf_http_limits_default(&limits);
  limits.max_body = (size_t)cfg->max_body;
  limits.header_timeout_ms = (uint64_t)cfg->header_timeout_ms;
  limits.idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms;
  rc = sf_http_server_new(&a->http, loop, &limits, log);
  if (rc)
    goto fail_http;
  /* accounts: a PostgreSQL pool for users and sessions, the gate, and the
   * account endpoints; the admin password only from the environment */
  sf_pg_opts_t po = {.dsn = cfg->pg_dsn, .pool_size = (int)cfg->pg_pool};
  rc = sf_pg_new(&a->pg, loop, &po, log);
  if (rc)
    goto fail_pg;
  rc = sf_authn_new(&a->authn, loop, a->pg, NULL, log);
  if (rc)
    goto fail_authn;
  cmd_users_opts_t uo = {.admin_username = cfg->admin_username,
                         .admin_password = getenv("STOCKFLOW_ADMIN_PASSWORD"),
                         .session_ttl_s = cfg->session_ttl_s,
                         .trusted_proxies = cfg->trusted_proxies};
  rc = cmd_users_new(&a->users, loop, a->pg, a->authn, &uo, log);
  if (rc)
    goto fail_users;
  struct {
    const char *method, *path;
    sf_http_handler_cb cb;
  } routes[] = {
      {"GET", "/healthz", h_healthz},
      {"GET", "/readyz", h_readyz},
      {"GET", "/metrics", h_metrics},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    rc = sf_http_route(a->http, routes[i].method, routes[i].path, routes[i].cb,
                       a);
    if (rc)
      goto fail_route;
  }
  rc = cmd_users_register(a->http, a->users);
  if (!rc)
    rc = cmd_catalog_routes(a, a->http);
  if (!rc)
    rc = cmd_stock_routes(a, a->http);
  if (!rc)
    rc = cmd_batch_routes(a, a->http, (size_t)cfg->batch_max_body);
  if (rc)
    goto fail_route;
  uv_timer_init(loop, &a->idem_timer);
  a->idem_timer.data = a;
  uv_timer_init(loop, &a->fatal_timer);
  a->fatal_timer.data = a;
  *out = a;
  return 0;

fail_route:
  cmd_users_destroy(a->users); /* never bootstrapped: no handles yet */
fail_users:
  sf_authn_destroy(a->authn); /* no look-up was ever sent */
fail_authn:
  sf_pg_close(a->pg, NULL, NULL); /* its handles close if the loop runs */
fail_pg:
  sf_http_server_destroy(a->http);
fail_http:
  sf_event_codec_destroy(a->codec);
fail_codec:
  free(a);
  return rc;
}

size_t cmd_app_lane_count(const cmd_settings_t *cfg) {
  if (cfg->writer_lanes > 0)
    return (size_t)cfg->writer_lanes;
  unsigned n = uv_available_parallelism(); /* one per core */
  return n < 1 ? 1 : n > CMD_MAX_LANES ? CMD_MAX_LANES
                                       : n;
}

int cmd_app_start(cmd_app_t *a) {
  char host[256];
  int port;
  if (sf_config_split_hostport(a->cfg->listen, host, sizeof(host), &port)) {
    SF_ERROR(a->log, "command", "bad listen address \"%s\"", a->cfg->listen);
    return SF_ECONFIG;
  }
  int rc = sf_http_listen(a->http, host, port);
  if (rc)
    return rc;
  SF_INFO(a->log, "command", "listening on %s:%d", host, sf_http_bound_port(a->http));
  cmd_lanes_opts_t lo = {
      .brokers = a->cfg->kafka_brokers,
      .transactional_id = a->cfg->transactional_id,
      .topic_catalog = a->cfg->topic_catalog,
      .topic_stock = a->cfg->topic_stock,
      .lanes = cmd_app_lane_count(a->cfg),
      .max_batch = (size_t)a->cfg->max_batch,
      .linger_us = a->cfg->linger_us,
      .txn_timeout_ms = (int)a->cfg->txn_timeout_ms,
      .idem_retention_us = idem_retention_us(a),
      .rebuild_progress = &a->rebuild_progress,
  };
  uv_timer_start(&a->idem_timer, idem_timer_cb, 60000, 60000);
  rc = cmd_users_bootstrap(a->users); /* accounts: the first admin */
  if (rc)
    return rc;
  cmd_lanes_cbs_t cbs = {unit_done_cb, state_cb, resync_cb, fatal_cb, a};
  rc = cmd_lanes_new(&a->lanes, a->loop, &lo, &cbs, a->log);
  if (!rc && a->cfg->order_ttl_s > 0) /* rules: reservations expire */
    rc = cmd_expiry_new(&a->expiry, a->loop, a, a->cfg->order_ttl_s, 500,
                        a->log);
  if (rc || !a->cfg->intake)
    return rc;
  cmd_bus_opts_t bo = {.brokers = a->cfg->kafka_brokers,
                       .topic_commands = a->cfg->topic_commands,
                       .topic_results = a->cfg->topic_results,
                       .group_id = a->cfg->intake_group,
                       .max_inflight = 1000};
  return cmd_bus_new(&a->bus, a->loop, a, &bo, a->log);
}

static void pg_closed_cb(void *ud) {
  cmd_app_t *a = ud;
  a->pg = NULL;
  if (a->stop_done)
    a->stop_done(a->stop_ud);
}

static void http_closed_cb(void *ud) {
  cmd_app_t *a = ud;
  /* accounts: every request is answered; now the pool can go */
  sf_pg_close(a->pg, pg_closed_cb, a);
}

void cmd_app_stop(cmd_app_t *a, void (*done)(void *), void *ud) {
  if (a->stopping) { /* a signal after the app began to stop by itself */
    if (!a->stop_done) {
      a->stop_done = done;
      a->stop_ud = ud;
    }
    return;
  }
  a->stopping = true;
  a->stop_done = done;
  a->stop_ud = ud;
  /* No new bus commands; then the writer: its pending commands get their
   * answers (503 or 201) before the server closes the connections and the
   * bus publishes the last results. */
  cmd_bus_stop_intake(a->bus);
  cmd_expiry_close(a->expiry);
  a->expiry = NULL;
  cmd_lanes_destroy(a->lanes);
  a->lanes = NULL;
  cmd_bus_destroy(a->bus);
  a->bus = NULL;
  uv_close((uv_handle_t *)&a->idem_timer, NULL);
  uv_close((uv_handle_t *)&a->fatal_timer, NULL);
  cmd_users_shutdown(a->users); /* accounts: new account requests 503 */
  sf_http_server_close(a->http, http_closed_cb, a);
}

void cmd_app_destroy(cmd_app_t *a) {
  if (!a)
    return;
  sf_http_server_destroy(a->http);
  sf_authn_destroy(a->authn); /* accounts: after the pool closed */
  cmd_users_destroy(a->users);
  sf_event_codec_destroy(a->codec);
  cmd_state_destroy(a->state);
  free(a);
}

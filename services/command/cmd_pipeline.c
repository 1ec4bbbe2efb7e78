/* cmd_pipeline: the write pipeline of the command service: the
 * Idempotency-Key gate, answers, authorization checks, folding and
 * submitting units, and the answers once they commit. See cmd_pipeline.h. */
#include "cmd_pipeline.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_lanes.h"
#include "cmd_reply.h"
#include "sf/err.h"
#include "sf/json.h"
#include "sf/uuid.h"

struct cmd_pipeline {
  const cmd_settings_t *cfg;
  sf_log_t *log;
  sf_authn_t *authn; /* for routes; NULL in the unit tests */
  cmd_pipeline_sink_t sink;
  cmd_schema_t *schema;    /* the wire format; NULL: codec below */
  sf_event_codec_t *codec; /* NULL when schema is set */
  sf_uuidgen_t ids;
  cmd_state_t *state;  /* NULL until the first rebuild is done */
  uint64_t generation; /* of state */
  bool resyncing;
  bool fatal;
  char fatal_reason[256];
  cmd_pipeline_stats_t stats;
  /* instances: this one's share; the request being decided again after a
   * park (never parked twice) */
  cmd_instances_t ins;
  sf_http_req_t *rerun;
};

/* A request waiting for the other instances' events (catch_up). */
typedef struct parked {
  cmd_pipeline_t *pl;
  sf_http_req_t *req; /* NULL for a bus command: then bus_again, bus_ud */
  sf_http_handler_cb again;
  const cmd_catch_up_cbs_t *bus;
  void *bus_ud;
} parked_t;

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
  const cmd_catch_up_cbs_t *catch_up; /* bus: may be parked once */
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
  cmd_pipeline_t *pl;
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

static int64_t idem_retention_us(const cmd_pipeline_t *pl) {
  return (int64_t)pl->cfg->idem_retention_s * 1000000;
}

sf_http_req_t *cmd_req_http(cmd_req_t *c) { return c->req; }
const char *cmd_req_idem_key(const cmd_req_t *c) { return c->idem_key; }
const cmd_state_t *cmd_pipeline_state(const cmd_pipeline_t *pl) { return pl->state; }
void cmd_pipeline_new_id(cmd_pipeline_t *pl, char out[SF_ID_LEN]) {
  sf_uuid_v7_str(&pl->ids, out);
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
static void send_recorded(cmd_pipeline_t *pl, cmd_req_t *c, int status,
                          const char *content_type, const char *text) {
  if (c->idem_key && pl->state &&
      cmd_state_idem_finish(pl->state, c->idem_key, c->hash, status, text,
                            now_us() + idem_retention_us(pl)) != 0)
    SF_WARN(pl->log, "command", "could not record the answer of an "
                                "idempotency key (out of memory)");
  answer_raw(c, status, content_type, text);
}

void cmd_pipeline_problem(cmd_pipeline_t *pl, cmd_req_t *c, int status, const char *code,
                          const char *detail, json_t *extra) {
  if (status >= 400 && status < 500)
    pl->stats.rejected++;
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
  send_recorded(pl, c, status, "application/problem+json", text);
  free(text);
}

void cmd_pipeline_invalid(cmd_pipeline_t *pl, cmd_req_t *c, const char *detail) {
  cmd_pipeline_problem(pl, c, 422, "validation_failed", detail, NULL);
}

void cmd_pipeline_refuse(cmd_pipeline_t *pl, cmd_req_t *c, cmd_verdict_t v,
                         const char *detail, json_t *extra) {
  cmd_pipeline_problem(pl, c, cmd_verdict_status(v), cmd_verdict_code(v), detail,
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

cmd_req_t *cmd_pipeline_begin_write(cmd_pipeline_t *pl, sf_http_req_t *req) {
  if (pl->fatal) {
    unavailable(req, pl->fatal_reason);
    return NULL;
  }
  if (!pl->state || pl->resyncing) {
    unavailable(req, "the command service is rebuilding its state from the "
                     "event log; nothing was written");
    return NULL;
  }
  if (pl->schema && !cmd_schema_ready(pl->schema)) {
    unavailable(req, cmd_schema_not_ready_reason(pl->schema));
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
    pl->stats.rejected++;
    sf_http_respond_problem(req, 400, "bad_idempotency_key",
                            "Idempotency-Key must be 1 to 255 printable "
                            "characters",
                            NULL);
    return NULL;
  }
  request_hash(req, c->hash, sizeof(c->hash));
  cmd_idem_view_t v;
  if (cmd_state_idem_get(pl->state, key, &v)) {
    if (strcmp(v.request_hash, c->hash) != 0) {
      pl->stats.rejected++;
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
      pl->stats.replayed++;
      sf_http_add_header(req, "Idempotent-Replayed", "true");
      sf_http_respond(req, v.status,
                      v.status >= 400 ? "application/problem+json"
                                      : "application/json",
                      v.body, strlen(v.body));
    }
    return NULL;
  }
  if (cmd_state_idem_begin(pl->state, key, c->hash,
                           now_us() + idem_retention_us(pl)) != 0) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return NULL;
  }
  c->idem_key = key;
  return c;
}

cmd_req_t *cmd_pipeline_begin_bus(cmd_pipeline_t *pl, const char *key, const char *hash,
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
  if (pl->fatal) {
    answer_unrecorded(c, 503, "unavailable", pl->fatal_reason);
    return NULL;
  }
  if (!pl->state || pl->resyncing) {
    answer_unrecorded(c, 503, "unavailable",
                      "the command service is rebuilding its state from the "
                      "event log; nothing was written");
    return NULL;
  }
  if (pl->schema && !cmd_schema_ready(pl->schema)) {
    answer_unrecorded(c, 503, "unavailable",
                      cmd_schema_not_ready_reason(pl->schema));
    return NULL;
  }
  snprintf(c->key_buf, sizeof(c->key_buf), "%s", key);
  snprintf(c->hash, sizeof(c->hash), "%s", hash);
  cmd_idem_view_t v;
  if (cmd_state_idem_get(pl->state, c->key_buf, &v)) {
    if (strcmp(v.request_hash, c->hash) != 0) {
      pl->stats.rejected++;
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
      pl->stats.replayed++;
      answer_raw(c, v.status, "application/json", v.body);
    }
    return NULL;
  }
  if (cmd_state_idem_begin(pl->state, c->key_buf, c->hash,
                           now_us() + idem_retention_us(pl)) != 0) {
    answer_unrecorded(c, 500, "internal", "out of memory");
    return NULL;
  }
  c->idem_key = c->key_buf;
  return c;
}

cmd_req_t *cmd_pipeline_begin_system(cmd_pipeline_t *pl, cmd_answer_cb answer,
                                     void *ud) {
  if (!cmd_pipeline_writable(pl))
    return NULL;
  cmd_req_t *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->answer = answer;
  c->answer_ud = ud;
  snprintf(c->request_id, sizeof(c->request_id), "system");
  return c;
}

json_t *cmd_pipeline_begin_json(cmd_pipeline_t *pl, sf_http_req_t *req, cmd_req_t **c) {
  *c = cmd_pipeline_begin_write(pl, req);
  return *c ? cmd_pipeline_parse_body(pl, *c) : NULL;
}

json_t *cmd_pipeline_parse_body(cmd_pipeline_t *pl, cmd_req_t *c) {
  if (!sf_http_req_is_json(c->req)) {
    cmd_pipeline_problem(pl, c, 415, "unsupported_media_type",
                         "Content-Type must be application/json", NULL);
    return NULL;
  }
  size_t len;
  const char *body = sf_http_req_body(c->req, &len);
  json_t *obj = NULL;
  char err[256];
  if (sf_json_parse_object(body, len, &obj, err, sizeof(err)) != 0) {
    cmd_pipeline_problem(pl, c, 400, "malformed_json", err, NULL);
    return NULL;
  }
  return obj;
}

void cmd_pipeline_envelope(cmd_pipeline_t *pl, cmd_req_t *c, sf_event_t *e,
                           const char *command_id) {
  sf_event_init(e);
  sf_uuid_v7_str(&pl->ids, e->event_id);
  if (command_id)
    snprintf(e->command_id, sizeof(e->command_id), "%s", command_id);
  else
    sf_uuid_v7_str(&pl->ids, e->command_id);
  e->occurred_at_us = now_us();
  /* accounts: the acting user's id, never anything else of the account */
  const sf_principal_t *who = c->req ? sf_authn_principal(c->req) : NULL;
  snprintf(e->actor, sizeof(e->actor), "%s",
           who ? who->user_id : (c->req ? "" : c->actor));
  e->idempotency_key = c->idem_key;
  e->request_hash = c->idem_key ? c->hash : NULL;
}

/* ---- instances ---- */

static int32_t store_partition(const cmd_pipeline_t *pl, const char *store_id) {
  int32_t n = pl->state ? cmd_state_stock_partitions(pl->state) : 0;
  return n > 0 && store_id ? cmd_lanes_partition(store_id, n) : -1;
}

const cmd_instances_t *cmd_pipeline_instances(const cmd_pipeline_t *pl) {
  return &pl->ins;
}

int32_t cmd_pipeline_stock_partitions(const cmd_pipeline_t *pl) {
  int32_t n = pl->state ? cmd_state_stock_partitions(pl->state) : 0;
  return n > 0 ? n : 0;
}

bool cmd_pipeline_store_is_local(const cmd_pipeline_t *pl,
                                 const char *store_id) {
  int32_t p = store_partition(pl, store_id);
  return p < 0 || cmd_instances_owns_partition(&pl->ins, p);
}

unsigned cmd_pipeline_store_owner(const cmd_pipeline_t *pl,
                                  const char *store_id) {
  int32_t p = store_partition(pl, store_id);
  return p < 0 ? pl->ins.index
               : cmd_instances_owner_of_partition(p, pl->ins.count);
}

/* The answer to a request another instance decides: 307 with Location
 * (HTTP), else 421; never recorded under an Idempotency-Key. */
static void answer_elsewhere(cmd_pipeline_t *pl, cmd_req_t *c,
                             sf_http_req_t *req, const cmd_route_t *r,
                             const char *what) {
  int status = req ? cmd_route_status(r->kind) : 421;
  char detail[1024];
  snprintf(detail, sizeof(detail),
           "%.80s is decided by command instance %u of %u, not by this one "
           "(%u)%s%s",
           what, r->owner, pl->ins.count, pl->ins.index,
           status == 307 ? "; repeat the request at " : "",
           status == 307 ? r->location : "");
  json_t *extra = json_pack("{s:i, s:i}", "owner_instance", (int)r->owner,
                            "instance", (int)pl->ins.index);
  if (extra && status == 307)
    json_object_set_new(extra, "location", json_string(r->location));
  if (status == 307)
    pl->stats.redirected++;
  else
    pl->stats.misdirected++;
  if (req) {
    if (status == 307)
      sf_http_add_header(req, "Location", r->location);
    sf_http_respond_problem(req, status, "wrong_instance", detail, extra);
    return;
  }
  json_t *p = cmd_problem_json(421, "wrong_instance", detail, c->request_id);
  if (p && extra)
    json_object_update_missing(p, extra);
  json_decref(extra);
  char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
  json_decref(p);
  answer_raw(c, 421, "application/problem+json", text ? text : "{}");
  free(text);
}

bool cmd_pipeline_route_store(cmd_pipeline_t *pl, cmd_req_t *c,
                              const char *store_id) {
  int32_t p = store_partition(pl, store_id);
  if (p < 0 || cmd_instances_owns_partition(&pl->ins, p))
    return true;
  cmd_route_t r;
  cmd_instances_route(&pl->ins, p, c->req ? sf_http_req_path(c->req) : NULL,
                      &r);
  if (c->idem_key && pl->state)
    cmd_state_idem_drop(pl->state, c->idem_key);
  char what[80];
  snprintf(what, sizeof(what), "store %.36s", store_id);
  answer_elsewhere(pl, c, c->req, &r, what);
  return false;
}

bool cmd_pipeline_route_catalog(cmd_pipeline_t *pl, sf_http_req_t *req) {
  if (cmd_instances_owns_catalog(&pl->ins))
    return true;
  cmd_route_t r;
  cmd_instances_route(&pl->ins, -1, sf_http_req_path(req), &r);
  answer_elsewhere(pl, NULL, req, &r, "the catalog");
  return false;
}

void cmd_pipeline_cross_instance(cmd_pipeline_t *pl, cmd_req_t *c,
                                 const char *from, const char *to) {
  unsigned fo = cmd_pipeline_store_owner(pl, from),
           to_owner = cmd_pipeline_store_owner(pl, to);
  char detail[256];
  snprintf(detail, sizeof(detail),
           "from_store_id is owned by command instance %u and to_store_id by "
           "instance %u: a transfer is one Kafka transaction of one "
           "instance, so it cannot span two (move the stock with a sale-side "
           "adjustment and a receipt instead)",
           fo, to_owner);
  cmd_pipeline_problem(pl, c, 409, "cross_instance_transfer", detail,
                       json_pack("{s:i, s:i}", "from_owner_instance", (int)fo,
                                 "to_owner_instance", (int)to_owner));
}

static void parked_done_cb(void *ud, bool caught_up) {
  parked_t *p = ud;
  cmd_pipeline_t *pl = p->pl;
  sf_http_req_t *req = p->req;
  sf_http_handler_cb again = p->again;
  const cmd_catch_up_cbs_t *bus = p->bus;
  void *bus_ud = p->bus_ud;
  free(p);
  (void)caught_up; /* either way the request is decided again */
  if (!req) {      /* a bus command: its origin starts it anew */
    bus->again(bus_ud);
    return;
  }
  if (pl->fatal) {
    unavailable(req, pl->fatal_reason);
    return;
  }
  pl->rerun = req; /* decided again once, never parked twice */
  again(req, pl);
  pl->rerun = NULL;
}

bool cmd_pipeline_catch_up(cmd_pipeline_t *pl, cmd_req_t *c, bool catalog,
                           sf_http_handler_cb again) {
  if (!pl->sink.park || pl->fatal ||
      (c->req ? c->req == pl->rerun : !c->catch_up) ||
      (catalog && cmd_instances_owns_catalog(&pl->ins)))
    return false;
  parked_t *p = calloc(1, sizeof(*p));
  if (!p)
    return false;
  p->pl = pl;
  p->req = c->req;
  p->again = again;
  p->bus = c->catch_up;
  p->bus_ud = c->answer_ud;
  if (!pl->sink.park(pl->sink.ud, parked_done_cb, p)) {
    free(p);
    return false;
  }
  if (c->idem_key && pl->state)
    cmd_state_idem_drop(pl->state, c->idem_key);
  if (!c->req) { /* the bus command starts anew: this context is done */
    c->catch_up->parked(c->answer_ud);
    free(c);
  }
  return true;
}

void cmd_req_allow_catch_up(cmd_req_t *c, const cmd_catch_up_cbs_t *cbs) {
  c->catch_up = cbs;
}

/* ---- authorization (accounts) ---- */

int cmd_pipeline_route(cmd_pipeline_t *pl, sf_http_server_t *http, const char *method,
                       const char *pattern, sf_auth_action_t action,
                       const char *store_param, sf_http_handler_cb cb) {
  return sf_authn_route(pl->authn, http, method, pattern, action, store_param,
                        cb, pl);
}

bool cmd_req_may(const cmd_req_t *c, sf_auth_action_t action,
                 const char *store_id) {
  if (!c->req)
    return true; /* the bus: who may publish is Kafka's ACLs' business */
  return sf_auth_allows(sf_authn_principal(c->req), action, store_id);
}

bool cmd_pipeline_allowed(cmd_pipeline_t *pl, cmd_req_t *c, sf_auth_action_t action,
                          const char *store_id) {
  if (cmd_req_may(c, action, store_id))
    return true;
  const sf_principal_t *p = sf_authn_principal(c->req);
  char detail[160];
  snprintf(detail, sizeof(detail), "role %s may not %s for store %.36s",
           p ? sf_role_name(p->role) : "(none)", sf_auth_action_name(action),
           store_id ? store_id : "(none)");
  cmd_pipeline_problem(pl, c, 403, "forbidden", detail, NULL);
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

/* The streams e moves (cmd_msg_t.streams): its store x product, or for an
 * order event the order and each line's store x product; none for catalog
 * events. Returns 0 or SF_ENOMEM. */
static int add_streams(cmd_msg_t *m, const sf_event_t *e) {
  bool order = e->type >= SF_EV_ORDER_PLACED && e->type <= SF_EV_ORDER_CANCELLED;
  size_t n = order ? 1 + e->order.n_lines
                   : (e->store_id[0] && e->product_id[0] ? 1 : 0);
  if (n == 0)
    return 0;
  m->streams = malloc(n * sizeof(*m->streams));
  if (!m->streams)
    return SF_ENOMEM;
  if (order) {
    m->streams[m->n_streams++] = cmd_stream_hash("order", e->order.order_id);
    for (size_t i = 0; i < e->order.n_lines; i++)
      m->streams[m->n_streams++] =
          cmd_stream_hash(e->store_id, e->order.lines[i].product_id);
  } else {
    m->streams[m->n_streams++] = cmd_stream_hash(e->store_id, e->product_id);
  }
  return 0;
}

/* Builds the Kafka message of e. Returns NULL on failure (logged). */
static cmd_msg_t *make_msg(cmd_pipeline_t *pl, const sf_event_t *e, const char *topic,
                           const char *key) {
  cmd_msg_t *m = calloc(1, sizeof(*m));
  if (!m)
    return NULL;
  int rc = pl->schema ? cmd_schema_encode(pl->schema, e, topic, &m->value,
                                          &m->value_len)
                      : sf_event_encode(pl->codec, e, &m->value, &m->value_len);
  if (rc) {
    SF_ERROR(pl->log, "command", "encoding %s event %s: %s",
             sf_event_type_name(e->type), e->event_id, sf_err_name(rc));
    free(m);
    return NULL;
  }
  m->topic = topic;
  snprintf(m->key, sizeof(m->key), "%s", key);
  if (add_streams(m, e) != 0) {
    cmd_msg_free(m);
    return NULL;
  }
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
static int add_crossings(cmd_pipeline_t *pl, const sf_event_t *e, cmd_msg_t ***tail,
                         size_t *n_msgs) {
  size_t cap = e->type >= SF_EV_ORDER_PLACED && e->type <= SF_EV_ORDER_CANCELLED
                   ? e->order.n_lines
                   : 1;
  sf_event_t *xs = calloc(cap ? cap : 1, sizeof(*xs));
  if (!xs)
    return SF_ENOMEM;
  size_t nx = cmd_state_crossings(pl->state, e, xs, cap);
  int rc = 0;
  for (size_t i = 0; i < nx && !rc; i++) {
    sf_uuid_v7_str(&pl->ids, xs[i].event_id);
    cmd_msg_t *m = make_msg(pl, &xs[i], pl->cfg->topic_stock, xs[i].store_id);
    cmd_apply_result_t res;
    if (!m) {
      rc = SF_EINVAL;
      break;
    }
    **tail = m;
    *tail = &m->next;
    (*n_msgs)++;
    rc = cmd_state_apply(pl->state, &xs[i], &res);
    if (rc)
      SF_ERROR(pl->log, "command", "folding crossing event %s failed: %s",
               xs[i].event_id, sf_err_name(rc));
  }
  free(xs);
  return rc;
}

void cmd_pipeline_commit(cmd_pipeline_t *pl, cmd_req_t *c, const cmd_outgoing_t *evs,
                         size_t n) {
  cmd_unit_t *u = calloc(1, sizeof(*u));
  pending_t *p = u ? calloc(1, sizeof(*p)) : NULL;
  json_t *body = NULL;
  if (!p)
    goto fail;
  cmd_msg_t **tail = &u->msgs;
  for (size_t i = 0; i < n; i++) {
    cmd_msg_t *m = make_msg(pl, evs[i].e,
                            evs[i].catalog ? pl->cfg->topic_catalog
                                           : pl->cfg->topic_stock,
                            evs[i].key);
    if (!m)
      goto fail;
    *tail = m;
    tail = &m->next;
    u->n_msgs++;
  }
  for (size_t i = 0; i < n; i++) {
    cmd_apply_result_t res;
    int rc = cmd_state_apply(pl->state, evs[i].e, &res);
    if (rc) {
      /* The decision and the fold disagree: a bug, not the client's fault.
       * Earlier events of this unit may be folded but the unit never
       * commits, so the state no longer matches the log: writes pause and
       * the writer rebuilds it before its next batch. */
      SF_ERROR(pl->log, "command", "folding event %s failed: %s; rebuilding "
                                   "the state from the log",
               evs[i].e->event_id, sf_err_name(rc));
      pl->resyncing = true;
      pl->sink.resync(pl->sink.ud, "an accepted event could not be folded");
      goto fail;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (add_crossings(pl, evs[i].e, &tail, &u->n_msgs) != 0) {
      pl->resyncing = true; /* the unit's folds never commit: as above */
      pl->sink.resync(pl->sink.ud, "a crossing event could not be added");
      goto fail;
    }
  }
  const sf_event_t *list[2];
  for (size_t i = 0; i < n && i < 2; i++)
    list[i] = evs[i].e;
  body = n <= 2 ? cmd_reply_build(pl->state, list, n, &p->status) : NULL;
  if (!body)
    goto fail;
  p->pl = pl;
  p->c = c;
  p->body = body;
  p->n_answer = n;
  u->generation = pl->generation;
  u->ud = p;
  pl->stats.pending++;
  pl->sink.submit(pl->sink.ud, u);
  return;

fail:
  free(p);
  cmd_unit_free(u);
  json_decref(body);
  pl->stats.failed++;
  if (c->idem_key)
    cmd_state_idem_drop(pl->state, c->idem_key);
  answer_unrecorded(c, 500, "internal",
                    "the command could not be encoded or applied");
}

static void batch_free(cmd_batch_t *b) {
  if (!b)
    return;
  while (b->extra) { /* crossings that never joined the unit */
    cmd_msg_t *next = b->extra->next;
    cmd_msg_free(b->extra);
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

void cmd_pipeline_batch_discard(cmd_batch_t *b) { batch_free(b); }

cmd_batch_t *cmd_pipeline_batch_new(cmd_pipeline_t *pl, cmd_req_t *c, json_t *results) {
  cmd_batch_t *b = calloc(1, sizeof(*b));
  if (b)
    b->unit = calloc(1, sizeof(*b->unit));
  if (!b || !b->unit) {
    free(b);
    json_decref(results);
    cmd_pipeline_problem(pl, c, 500, "internal", "out of memory", NULL);
    return NULL;
  }
  b->c = c;
  b->results = results;
  b->tail = &b->unit->msgs;
  b->extra_tail = &b->extra;
  return b;
}

int cmd_pipeline_batch_add(cmd_pipeline_t *pl, cmd_batch_t *b, const sf_event_t *e,
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
  cmd_msg_t *m = make_msg(pl, e, pl->cfg->topic_stock, e->store_id);
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
  return add_crossings(pl, e, &b->extra_tail, &b->unit->n_msgs);
}

static void batch_answer(cmd_pipeline_t *pl, cmd_batch_t *b) {
  json_t *answer = json_pack("{s:O}", "results", b->results);
  char *text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
  json_decref(answer);
  if (text)
    send_recorded(pl, b->c, 200, "application/json", text);
  else
    answer_unrecorded(b->c, 500, "internal", "out of memory");
  free(text);
}

void cmd_pipeline_batch_commit(cmd_pipeline_t *pl, cmd_batch_t *b) {
  if (b->unit->n_msgs == 0) {
    batch_answer(pl, b);
    batch_free(b);
    return;
  }
  pending_t *p = calloc(1, sizeof(*p));
  if (!p) {
    cmd_pipeline_problem(pl, b->c, 500, "internal", "out of memory", NULL);
    batch_free(b);
    return;
  }
  p->pl = pl;
  p->c = b->c;
  p->batch = b;
  cmd_unit_t *u = b->unit;
  *b->tail = b->extra; /* the crossings go after every item's message */
  b->extra = NULL;
  u->generation = pl->generation;
  u->ud = p;
  pl->stats.pending++;
  pl->sink.submit(pl->sink.ud, u);
}

/* The batch's transaction ended: fill in positions, remember item keys,
 * answer. The unit is freed by the caller, not by batch_free. */
static void batch_done(cmd_pipeline_t *pl, cmd_batch_t *b, cmd_unit_t *u) {
  b->unit = NULL;
  if (u->err) {
    pl->stats.failed++;
    if (b->c->idem_key && pl->state)
      cmd_state_idem_drop(pl->state, b->c->idem_key);
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
    if (text && it->key && pl->state)
      cmd_state_idem_finish(pl->state, it->key, it->hash, 201, text,
                            now_us() + idem_retention_us(pl));
    free(text);
    json_t *slot = json_array_get(b->results, it->index);
    if (slot)
      json_object_set(slot, "body", it->body);
    pl->stats.accepted++;
  }
  batch_answer(pl, b);
  batch_free(b);
}

void cmd_pipeline_unit_done(cmd_pipeline_t *pl, cmd_unit_t *u) {
  pending_t *p = u->ud;
  cmd_req_t *c = p->c;
  pl->stats.pending--;
  if (p->batch) {
    batch_done(pl, p->batch, u);
    free(p);
    cmd_unit_free(u);
    return;
  }
  if (u->err) {
    pl->stats.failed++;
    if (c->idem_key && pl->state)
      cmd_state_idem_drop(pl->state, c->idem_key);
    answer_unrecorded(c, 503, "unavailable",
                      u->err == SF_ECANCELED
                          ? "the service is shutting down; the command was not "
                            "committed"
                          : "the event bus did not commit the command; it was not "
                            "applied (if the broker committed it before failing, "
                            "the event log has it and the state is rebuilt from "
                            "the log: retry with the same Idempotency-Key)");
  } else {
    pl->stats.accepted++;
    char positions[8][64];
    const char *plist[8];
    size_t n = 0;
    for (cmd_msg_t *m = u->msgs; m && n < 8 && n < p->n_answer;
         m = m->next, n++) {
      cmd_reply_position(positions[n], sizeof(positions[n]),
                         strcmp(m->topic, pl->cfg->topic_catalog) == 0,
                         m->partition, m->offset);
      plist[n] = positions[n];
    }
    char *text = cmd_reply_finish(p->body, plist, n);
    if (text) {
      send_recorded(pl, c, p->status, "application/json", text);
      free(text);
    } else {
      answer_unrecorded(c, 500, "internal", "out of memory");
    }
  }
  json_decref(p->body);
  free(p);
  cmd_unit_free(u);
}

/* ---- lifecycle, fed by the owner ---- */

int cmd_pipeline_new(cmd_pipeline_t **out, const cmd_settings_t *cfg,
                     sf_authn_t *authn, cmd_schema_t *schema,
                     const cmd_pipeline_sink_t *sink, sf_log_t *log) {
  cmd_pipeline_t *pl = calloc(1, sizeof(*pl));
  if (!pl)
    return SF_ENOMEM;
  pl->cfg = cfg;
  pl->log = log;
  pl->authn = authn;
  pl->sink = *sink;
  pl->ins = (cmd_instances_t){0, 1, ""}; /* the only instance */
  sf_uuidgen_init(&pl->ids);
  pl->schema = schema;
  int rc = schema ? 0 : sf_event_codec_new(&pl->codec);
  if (rc) {
    SF_ERROR(log, "command", "loading the event schema: %s", sf_err_name(rc));
    free(pl);
    return rc;
  }
  *out = pl;
  return 0;
}

void cmd_pipeline_destroy(cmd_pipeline_t *pl) {
  if (!pl)
    return;
  sf_event_codec_destroy(pl->codec);
  cmd_state_destroy(pl->state);
  free(pl);
}

void cmd_pipeline_set_state(cmd_pipeline_t *pl, cmd_state_t *state,
                            uint64_t generation) {
  cmd_state_destroy(pl->state);
  pl->state = state;
  pl->generation = generation;
  pl->resyncing = false;
}

void cmd_pipeline_set_instances(cmd_pipeline_t *pl,
                                const cmd_instances_t *ins) {
  pl->ins = *ins;
}

void cmd_pipeline_pause(cmd_pipeline_t *pl) { pl->resyncing = true; }

void cmd_pipeline_stop(cmd_pipeline_t *pl, const char *reason) {
  if (pl->fatal)
    return;
  pl->fatal = true;
  snprintf(pl->fatal_reason, sizeof(pl->fatal_reason), "%s", reason);
}

size_t cmd_pipeline_expire_keys(cmd_pipeline_t *pl) {
  return pl->state ? cmd_state_idem_expire(pl->state, now_us()) : 0;
}

bool cmd_pipeline_writable(const cmd_pipeline_t *pl) {
  return pl->state && !pl->resyncing && !pl->fatal &&
         (!pl->schema || cmd_schema_ready(pl->schema));
}
bool cmd_pipeline_has_state(const cmd_pipeline_t *pl) {
  return pl->state != NULL;
}
bool cmd_pipeline_resyncing(const cmd_pipeline_t *pl) {
  return pl->resyncing;
}
const char *cmd_pipeline_stopped(const cmd_pipeline_t *pl) {
  return pl->fatal ? pl->fatal_reason : NULL;
}
void cmd_pipeline_stats(const cmd_pipeline_t *pl, cmd_pipeline_stats_t *out) {
  *out = pl->stats;
}

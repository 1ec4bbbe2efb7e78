/* cmd_app: routes and handlers of the command service. See cmd_app.h. */
#include "cmd_app.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_state.h"
#include "cmd_writer.h"
#include "sf/err.h"
#include "sf/event.h"
#include "sf/http.h"
#include "sf/json.h"
#include "sf/uuid.h"

#define MAX_TEXT 500  /* reason, reference, location */
#define MAX_NAME 200
#define MAX_SKU 64

struct cmd_app {
  uv_loop_t *loop;
  const cmd_settings_t *cfg;
  sf_log_t *log;
  sf_http_server_t *http;
  cmd_writer_t *writer;
  sf_event_codec_t *codec;
  sf_uuidgen_t ids;
  cmd_state_t *state;   /* NULL until the first rebuild is done */
  uint64_t generation;  /* of state */
  bool resyncing;
  bool fatal;
  char fatal_reason[256];
  double rebuild_seconds;
  uint64_t rebuild_events;
  uint64_t pending;     /* commands waiting for their commit */
  /* counters for /metrics */
  uint64_t accepted, rejected, failed;
  void (*stop_done)(void *);
  void *stop_ud;
};

/* What a pending command needs when its transaction ends. */
typedef struct pending {
  cmd_app_t *app;
  sf_http_req_t *req;
  json_t *body; /* the answer, without position yet */
  int status;   /* of the answer on success */
} pending_t;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- answers ---- */

static void problem(sf_http_req_t *req, int status, const char *code,
                    const char *detail) {
  sf_http_respond_problem(req, status, code, detail, NULL);
}

static void count_rejected(cmd_app_t *a) { a->rejected++; }

/* Common gate of every write: 503 while the state is not there. */
static bool writable(cmd_app_t *a, sf_http_req_t *req) {
  if (a->fatal) {
    problem(req, 503, "unavailable", a->fatal_reason);
    return false;
  }
  if (!a->state || a->resyncing) {
    sf_http_add_header(req, "Retry-After", "1");
    problem(req, 503, "unavailable",
            "the command service is rebuilding its state from the event log; "
            "nothing was written");
    return false;
  }
  return true;
}

/* Parses the JSON object body; answers 415/400 itself on failure. */
static json_t *parse_body(cmd_app_t *a, sf_http_req_t *req) {
  if (!sf_http_req_is_json(req)) {
    count_rejected(a);
    problem(req, 415, "unsupported_media_type",
            "Content-Type must be application/json");
    return NULL;
  }
  size_t len;
  const char *body = sf_http_req_body(req, &len);
  json_t *obj = NULL;
  char err[256];
  if (sf_json_parse_object(body, len, &obj, err, sizeof(err)) != 0) {
    count_rejected(a);
    problem(req, 400, "malformed_json", err);
    return NULL;
  }
  return obj;
}

static void invalid(cmd_app_t *a, sf_http_req_t *req, const char *detail) {
  count_rejected(a);
  problem(req, 422, "validation_failed", detail);
}

static void refuse(cmd_app_t *a, sf_http_req_t *req, cmd_verdict_t v,
                   const char *detail) {
  count_rejected(a);
  problem(req, cmd_verdict_status(v), cmd_verdict_code(v), detail);
}

/* ---- the hand-off to the writer ---- */

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

/* One event of a command, with where it goes. */
typedef struct outgoing {
  sf_event_t *e;
  const char *topic;
  const char *key;
} outgoing_t;

/* Builds the answer after the events are folded into the state. */
typedef json_t *(*body_fn)(cmd_app_t *a, void *ctx);

/* Encodes the events of one command, folds them into the state (in order)
 * and queues them as one unit: they commit together or not at all. The
 * answer is body (ownership taken) or, when body is NULL, build(ctx) called
 * after the fold; it is sent with status when the transaction ends, with
 * "position" added (a comma-separated list when there are several). */
static void commit_events(cmd_app_t *a, sf_http_req_t *req, outgoing_t *evs,
                          size_t n, int status, json_t *body, body_fn build,
                          void *ctx) {
  cmd_unit_t *u = calloc(1, sizeof(*u));
  pending_t *p = u ? calloc(1, sizeof(*p)) : NULL;
  if (!p)
    goto fail;
  cmd_msg_t **tail = &u->msgs;
  for (size_t i = 0; i < n; i++) {
    cmd_msg_t *m = make_msg(a, evs[i].e, evs[i].topic, evs[i].key);
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
       * Earlier events of this unit may be folded already: rebuild. */
      SF_ERROR(a->log, "command", "folding event %s failed: %s",
               evs[i].e->event_id, sf_err_name(rc));
      goto fail;
    }
  }
  if (!body)
    body = build(a, ctx);
  if (!body)
    goto fail;
  p->app = a;
  p->req = req;
  p->body = body;
  p->status = status;
  u->generation = a->generation;
  u->ud = p;
  a->pending++;
  cmd_writer_submit(a->writer, u);
  return;

fail:
  free(p);
  cmd_unit_free(u);
  json_decref(body);
  a->failed++;
  problem(req, 500, "internal", "the command could not be encoded or applied");
}

static void commit_event(cmd_app_t *a, sf_http_req_t *req, sf_event_t *e,
                         const char *topic, const char *key, int status,
                         json_t *body) {
  outgoing_t o = {e, topic, key};
  commit_events(a, req, &o, 1, status, body, NULL, NULL);
}

static const char *position_kind(const cmd_app_t *a, const char *topic) {
  return strcmp(topic, a->cfg->topic_catalog) == 0 ? "catalog" : "stock";
}

static void unit_done_cb(void *ud, cmd_unit_t *u) {
  cmd_app_t *a = ud;
  pending_t *p = u->ud;
  a->pending--;
  if (u->err) {
    a->failed++;
    json_decref(p->body);
    sf_http_add_header(p->req, "Retry-After", "1");
    problem(p->req, 503, "unavailable",
            u->err == SF_ECANCELED
                ? "the service is shutting down; the command was not committed"
                : "the event bus did not commit the command; it was not "
                  "applied (if the broker committed it before failing, "
                  "the event log has it and the state is rebuilt from the "
                  "log)");
  } else {
    a->accepted++;
    char pos[256];
    size_t len = 0;
    pos[0] = '\0';
    for (cmd_msg_t *m = u->msgs; m && len < sizeof(pos); m = m->next)
      len += (size_t)snprintf(pos + len, sizeof(pos) - len,
                              "%s%s-%" PRId32 "-%" PRId64, len ? "," : "",
                              position_kind(a, m->topic), m->partition,
                              m->offset);
    json_object_set_new(p->body, "position", json_string(pos));
    sf_http_respond_json(p->req, p->status, p->body);
  }
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
          "(rebuilt from %llu events in %.3f s)", cmd_state_n_products(state),
          cmd_state_n_stores(state), cmd_state_n_stock(state),
          (unsigned long long)events, seconds);
}

static void resync_cb(void *ud, const char *reason) {
  cmd_app_t *a = ud;
  a->resyncing = true;
  SF_WARN(a->log, "command", "writes paused while the state is rebuilt: %s",
          reason);
}

static void fatal_cb(void *ud, const char *reason) {
  cmd_app_t *a = ud;
  a->fatal = true;
  snprintf(a->fatal_reason, sizeof(a->fatal_reason),
           "this command service instance stopped writing: %s", reason);
  SF_ERROR(a->log, "command", "%s", a->fatal_reason);
}

/* ---- handlers ---- */

static void h_healthz(sf_http_req_t *req, void *ud) {
  (void)ud;
  sf_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_readyz(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  if (a->fatal)
    problem(req, 503, "unavailable", a->fatal_reason);
  else if (!a->state)
    problem(req, 503, "unavailable",
            "connecting to Kafka and rebuilding the state from the log");
  else if (a->resyncing)
    problem(req, 503, "unavailable", "rebuilding the state after a failed commit");
  else
    sf_http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

static void h_metrics(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  char *http = sf_http_server_metrics(a->http, "stockflow_command");
  cmd_writer_stats_t ws;
  cmd_writer_stats(a->writer, &ws);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) {
    free(http);
    problem(req, 500, "internal", "out of memory");
    return;
  }
  fprintf(f,
          "# TYPE stockflow_command_commands_total counter\n"
          "stockflow_command_commands_total{result=\"accepted\"} %" PRIu64 "\n"
          "stockflow_command_commands_total{result=\"rejected\"} %" PRIu64 "\n"
          "stockflow_command_commands_total{result=\"failed\"} %" PRIu64 "\n"
          "# TYPE stockflow_command_pending gauge\n"
          "stockflow_command_pending %" PRIu64 "\n"
          "# TYPE stockflow_command_commit_batches_total counter\n"
          "stockflow_command_commit_batches_total %" PRIu64 "\n"
          "# TYPE stockflow_command_commit_failed_total counter\n"
          "stockflow_command_commit_failed_total %" PRIu64 "\n"
          "# TYPE stockflow_command_commit_batch_commands counter\n"
          "stockflow_command_commit_batch_commands_sum %" PRIu64 "\n"
          "stockflow_command_commit_batch_commands_count %" PRIu64 "\n"
          "# TYPE stockflow_command_events_produced_total counter\n"
          "stockflow_command_events_produced_total %" PRIu64 "\n"
          "# TYPE stockflow_command_commit_seconds summary\n"
          "stockflow_command_commit_seconds_sum %.6f\n"
          "stockflow_command_commit_seconds_count %" PRIu64 "\n"
          "# TYPE stockflow_command_rebuild_seconds gauge\n"
          "stockflow_command_rebuild_seconds %.6f\n"
          "# TYPE stockflow_command_rebuild_events gauge\n"
          "stockflow_command_rebuild_events %" PRIu64 "\n"
          "# TYPE stockflow_command_state_rows gauge\n"
          "stockflow_command_state_rows{kind=\"products\"} %zu\n"
          "stockflow_command_state_rows{kind=\"stores\"} %zu\n"
          "stockflow_command_state_rows{kind=\"stock\"} %zu\n"
          "# TYPE stockflow_command_ready gauge\n"
          "stockflow_command_ready %d\n",
          a->accepted, a->rejected, a->failed, a->pending, ws.batches,
          ws.failed_batches, ws.batch_units, ws.batches, ws.batch_msgs,
          ws.commit_seconds_sum, ws.batches, a->rebuild_seconds,
          a->rebuild_events, a->state ? cmd_state_n_products(a->state) : 0,
          a->state ? cmd_state_n_stores(a->state) : 0,
          a->state ? cmd_state_n_stock(a->state) : 0,
          a->state && !a->resyncing && !a->fatal);
  if (http)
    fputs(http, f);
  fclose(f);
  free(http);
  sf_http_respond(req, 200, "text/plain; version=0.0.4", buf, len);
  free(buf);
}

/* Fills envelope fields common to every event of a command. */
static void envelope(cmd_app_t *a, sf_event_t *e, const char *event_id) {
  snprintf(e->event_id, sizeof(e->event_id), "%s", event_id);
  sf_uuid_v7_str(&a->ids, e->command_id);
  e->occurred_at_us = now_us();
}

static const char *const product_keys[] = {"sku", "name", "category", "price",
                                           "reorder_level", NULL};

static bool valid_sku(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= 0x20 || *p == 0x7f)
      return false;
  return true;
}

static void h_create_product(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  if (!writable(a, req))
    return;
  json_t *obj = parse_body(a, req);
  if (!obj)
    return;
  char err[256];
  const char *sku = NULL, *name = NULL, *category = NULL, *price = NULL;
  int64_t reorder = 0;
  bool has_reorder = false;
  if (sf_json_only_keys(obj, product_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "sku", true, MAX_SKU, &sku, err, sizeof(err)) ||
      sf_json_get_string(obj, "name", true, MAX_NAME, &name, err, sizeof(err)) ||
      sf_json_get_string(obj, "category", false, MAX_NAME, &category, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "price", true, 32, &price, err, sizeof(err)) ||
      sf_json_get_int(obj, "reorder_level", false, 0, CMD_MAX_QUANTITY, &reorder,
                      &has_reorder, err, sizeof(err))) {
    invalid(a, req, err);
    goto out;
  }
  if (!valid_sku(sku)) {
    invalid(a, req, "sku: must not contain spaces or control characters");
    goto out;
  }
  if (sf_json_check_decimal(price) != 0) {
    invalid(a, req, "price: must be a decimal string such as \"19.99\" "
                    "(up to 4 fraction digits, not negative)");
    goto out;
  }
  char id[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, id);
  sf_event_t e;
  sf_event_init(&e);
  envelope(a, &e, id);
  cmd_verdict_t v = cmd_decide_product_create(a->state, id, sku, name, category,
                                              price, reorder, &e);
  if (v != CMD_OK) {
    char detail[160];
    snprintf(detail, sizeof(detail), "a product with sku \"%s\" exists", sku);
    refuse(a, req, v, detail);
    goto out;
  }
  char when[40];
  format_time(e.occurred_at_us, when, sizeof(when));
  json_t *body = json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:b, s:I, s:s}",
                           "id", id, "sku", sku, "name", name, "category",
                           category ? json_string(category) : json_null(),
                           "price", price, "reorder_level", (json_int_t)reorder,
                           "discontinued", 0, "version", (json_int_t)1,
                           "created_at", when);
  commit_event(a, req, &e, a->cfg->topic_catalog, id, 201, body);
out:
  json_decref(obj);
}

static const char *const store_keys[] = {"name", "location", "manager_id",
                                         NULL};

static void h_create_store(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  if (!writable(a, req))
    return;
  json_t *obj = parse_body(a, req);
  if (!obj)
    return;
  char err[256];
  const char *name = NULL, *location = NULL, *manager = NULL;
  if (sf_json_only_keys(obj, store_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "name", true, MAX_NAME, &name, err, sizeof(err)) ||
      sf_json_get_string(obj, "location", true, MAX_TEXT, &location, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "manager_id", false, SF_UUID_STR_LEN, &manager,
                         err, sizeof(err))) {
    invalid(a, req, err);
    goto out;
  }
  if (manager && !sf_uuid_valid(manager)) {
    invalid(a, req, "manager_id: must be a user id (UUID)");
    goto out;
  }
  char id[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, id);
  sf_event_t e;
  sf_event_init(&e);
  envelope(a, &e, id);
  cmd_decide_store_open(a->state, id, name, location, manager, &e);
  char when[40];
  format_time(e.occurred_at_us, when, sizeof(when));
  json_t *body = json_pack("{s:s, s:s, s:s, s:o, s:b, s:I, s:s}", "id", id,
                           "name", name, "location", location, "manager_id",
                           manager ? json_string(manager) : json_null(),
                           "closed", 0, "version", (json_int_t)1, "created_at",
                           when);
  commit_event(a, req, &e, a->cfg->topic_catalog, id, 201, body);
out:
  json_decref(obj);
}

/* Parses If-Match: "<version>" (quotes optional; W/ not accepted).
 * Returns -1 when absent, -2 when malformed, else the version. */
static int64_t parse_if_match(const char *h) {
  if (!h)
    return -1;
  while (*h == ' ')
    h++;
  bool quoted = *h == '"';
  if (quoted)
    h++;
  if (*h < '0' || *h > '9')
    return -2;
  int64_t v = 0;
  while (*h >= '0' && *h <= '9') {
    if (v > (INT64_MAX - 9) / 10)
      return -2;
    v = v * 10 + (*h - '0');
    h++;
  }
  if (quoted) {
    if (*h != '"')
      return -2;
    h++;
  }
  while (*h == ' ')
    h++;
  return *h ? -2 : v;
}

static const char *const movement_keys[] = {"product_id", "type", "quantity",
                                            "reason", "reference", NULL};

static void h_stock_transaction(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  const char *store_id = sf_http_req_param(req, "store_id");
  if (!writable(a, req))
    return;
  json_t *obj = parse_body(a, req);
  if (!obj)
    return;
  char err[256];
  const char *product_id = NULL, *type = NULL, *reason = NULL,
             *reference = NULL;
  int64_t quantity = 0;
  bool has_q = false;
  sf_movement_t movement;
  if (sf_json_only_keys(obj, movement_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "product_id", true, 64, &product_id, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "type", true, 32, &type, err, sizeof(err)) ||
      sf_json_get_int(obj, "quantity", true, -CMD_MAX_QUANTITY,
                      CMD_MAX_QUANTITY, &quantity, &has_q, err, sizeof(err)) ||
      sf_json_get_string(obj, "reason", false, MAX_TEXT, &reason, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "reference", false, MAX_TEXT, &reference, err,
                         sizeof(err))) {
    invalid(a, req, err);
    goto out;
  }
  if (sf_movement_parse(type, &movement) != 0) {
    invalid(a, req,
            "type: must be one of receipt, sale, return, adjustment, count");
    goto out;
  }
  if (!sf_uuid_valid(product_id)) {
    invalid(a, req, "product_id: must be a product id (UUID)");
    goto out;
  }
  const char *rule = cmd_check_movement(movement, quantity, reason);
  if (rule) {
    invalid(a, req, rule);
    goto out;
  }
  int64_t if_match = parse_if_match(sf_http_req_header(req, "If-Match"));
  if (if_match == -2) {
    invalid(a, req, "If-Match: must be a version in quotes, e.g. \"3\"");
    goto out;
  }
  if (!sf_uuid_valid(store_id)) {
    refuse(a, req, CMD_NOT_FOUND_STORE, "no such store");
    goto out;
  }
  char txn_id[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, txn_id);
  sf_event_t e;
  sf_event_init(&e);
  envelope(a, &e, txn_id);
  cmd_movement_cmd_t c = {store_id, product_id, movement, quantity,
                          reason,   reference,  if_match};
  cmd_verdict_t v = cmd_decide_movement(a->state, &c, &e);
  if (v != CMD_OK) {
    char detail[256];
    cmd_stock_row_t row;
    cmd_state_stock(a->state, store_id, product_id, &row);
    switch (v) {
    case CMD_NOT_FOUND_STORE:
      snprintf(detail, sizeof(detail), "no such store: %s", store_id);
      break;
    case CMD_NOT_FOUND_PRODUCT:
      snprintf(detail, sizeof(detail), "no such product: %s", product_id);
      break;
    case CMD_INSUFFICIENT_STOCK:
      snprintf(detail, sizeof(detail),
               "%s of %" PRId64 " would take available stock below zero "
               "(on_hand %" PRId64 ", reserved %" PRId64 ")",
               type, quantity, row.on_hand, row.reserved);
      break;
    case CMD_COUNT_BELOW_RESERVED:
      snprintf(detail, sizeof(detail),
               "count of %" PRId64 " is below the %" PRId64 " units reserved",
               quantity, row.reserved);
      break;
    case CMD_VERSION_CONFLICT:
      snprintf(detail, sizeof(detail),
               "If-Match %" PRId64 " does not match the current version %" PRId64,
               if_match, row.version);
      break;
    case CMD_STORE_CLOSED:
      snprintf(detail, sizeof(detail), "store %s is closed", store_id);
      break;
    case CMD_PRODUCT_DISCONTINUED:
      snprintf(detail, sizeof(detail),
               "product %s is discontinued and takes no receipts", product_id);
      break;
    default:
      snprintf(detail, sizeof(detail), "on hand would exceed the limit");
    }
    if (v == CMD_VERSION_CONFLICT) {
      char etag[32];
      snprintf(etag, sizeof(etag), "\"%" PRId64 "\"", row.version);
      sf_http_add_header(req, "ETag", etag);
    }
    refuse(a, req, v, detail);
    goto out;
  }
  char when[40];
  format_time(e.occurred_at_us, when, sizeof(when));
  json_t *body = json_pack(
      "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:s}",
      "transaction_id", txn_id, "store_id", e.store_id, "product_id",
      e.product_id, "type", type, "quantity", (json_int_t)quantity, "delta",
      (json_int_t)e.stock.delta, "on_hand", (json_int_t)e.stock.on_hand,
      "reserved", (json_int_t)e.stock.reserved, "available",
      (json_int_t)(e.stock.on_hand - e.stock.reserved), "version",
      (json_int_t)e.stream_version, "reason",
      reason ? json_string(reason) : json_null(), "reference",
      reference ? json_string(reference) : json_null(), "created_at", when);
  commit_event(a, req, &e, a->cfg->topic_stock, e.store_id, 201, body);
out:
  json_decref(obj);
}

/* ---- catalog changes ---- */

static json_t *product_json(cmd_app_t *a, void *ctx) {
  const char *id = ctx;
  cmd_product_view_t v;
  if (!cmd_state_product(a->state, id, &v))
    return NULL;
  return json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:b, s:I}", "id", id, "sku",
                   v.sku, "name", v.name, "category",
                   v.category ? json_string(v.category) : json_null(), "price",
                   v.price, "reorder_level", (json_int_t)v.reorder_level,
                   "discontinued", v.discontinued, "version",
                   (json_int_t)v.version);
}

static json_t *store_json(cmd_app_t *a, void *ctx) {
  const char *id = ctx;
  cmd_store_view_t v;
  if (!cmd_state_store(a->state, id, &v))
    return NULL;
  return json_pack("{s:s, s:s, s:s, s:o, s:b, s:I}", "id", id, "name", v.name,
                   "location", v.location, "manager_id",
                   v.manager_id ? json_string(v.manager_id) : json_null(),
                   "closed", v.closed, "version", (json_int_t)v.version);
}

static void catalog_verdict(cmd_app_t *a, sf_http_req_t *req, cmd_verdict_t v,
                            const char *what, const char *id) {
  char detail[160];
  switch (v) {
  case CMD_NOT_FOUND_PRODUCT:
  case CMD_NOT_FOUND_STORE:
    snprintf(detail, sizeof(detail), "no such %s: %s", what, id);
    break;
  case CMD_INVALID_STATE:
    snprintf(detail, sizeof(detail), "%s %s is already %s", what, id,
             strcmp(what, "store") == 0 ? "closed" : "discontinued");
    break;
  case CMD_PRODUCT_DISCONTINUED:
    snprintf(detail, sizeof(detail), "product %s is discontinued", id);
    break;
  case CMD_STORE_CLOSED:
    snprintf(detail, sizeof(detail), "store %s is closed", id);
    break;
  default:
    snprintf(detail, sizeof(detail), "%s %s: refused", what, id);
  }
  refuse(a, req, v, detail);
}

static const char *const product_patch_keys[] = {"name", "category", "price",
                                                 "reorder_level", NULL};

static void h_update_product(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  const char *id = sf_http_req_param(req, "id");
  if (!writable(a, req))
    return;
  json_t *obj = parse_body(a, req);
  if (!obj)
    return;
  char err[256];
  const char *name = NULL, *category = NULL, *price = NULL;
  int64_t reorder = 0;
  bool has_reorder = false;
  if (sf_json_only_keys(obj, product_patch_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "name", false, MAX_NAME, &name, err, sizeof(err)) ||
      sf_json_get_string(obj, "category", false, MAX_NAME, &category, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "price", false, 32, &price, err, sizeof(err)) ||
      sf_json_get_int(obj, "reorder_level", false, 0, CMD_MAX_QUANTITY, &reorder,
                      &has_reorder, err, sizeof(err))) {
    invalid(a, req, err);
    goto out;
  }
  if (name && !*name) {
    invalid(a, req, "name: must not be empty");
    goto out;
  }
  if (price && sf_json_check_decimal(price) != 0) {
    invalid(a, req, "price: must be a decimal string such as \"19.99\"");
    goto out;
  }
  if (!name && !category && !price && !has_reorder) {
    invalid(a, req, "body: give at least one of name, category, price, "
                    "reorder_level");
    goto out;
  }
  if (!sf_uuid_valid(id)) {
    catalog_verdict(a, req, CMD_NOT_FOUND_PRODUCT, "product", id);
    goto out;
  }
  sf_event_t e;
  sf_event_init(&e);
  char eid[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, eid);
  envelope(a, &e, eid);
  cmd_verdict_t v = cmd_decide_product_update(a->state, id, name, category,
                                              price, has_reorder, reorder, &e);
  if (v != CMD_OK) {
    catalog_verdict(a, req, v, "product", id);
    goto out;
  }
  outgoing_t o = {&e, a->cfg->topic_catalog, id};
  commit_events(a, req, &o, 1, 200, NULL, product_json, (void *)id);
out:
  json_decref(obj);
}

static void h_discontinue_product(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  const char *id = sf_http_req_param(req, "id");
  if (!writable(a, req))
    return;
  if (!sf_uuid_valid(id)) {
    catalog_verdict(a, req, CMD_NOT_FOUND_PRODUCT, "product", id);
    return;
  }
  sf_event_t e;
  sf_event_init(&e);
  char eid[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, eid);
  envelope(a, &e, eid);
  cmd_verdict_t v = cmd_decide_product_discontinue(a->state, id, &e);
  if (v != CMD_OK) {
    catalog_verdict(a, req, v, "product", id);
    return;
  }
  outgoing_t o = {&e, a->cfg->topic_catalog, id};
  commit_events(a, req, &o, 1, 200, NULL, product_json, (void *)id);
}

static void h_update_store(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  const char *id = sf_http_req_param(req, "id");
  if (!writable(a, req))
    return;
  json_t *obj = parse_body(a, req);
  if (!obj)
    return;
  char err[256];
  const char *name = NULL, *location = NULL, *manager = NULL;
  if (sf_json_only_keys(obj, store_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "name", false, MAX_NAME, &name, err, sizeof(err)) ||
      sf_json_get_string(obj, "location", false, MAX_TEXT, &location, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "manager_id", false, SF_UUID_STR_LEN, &manager,
                         err, sizeof(err))) {
    invalid(a, req, err);
    goto out;
  }
  if ((name && !*name) || (location && !*location)) {
    invalid(a, req, "name, location: must not be empty");
    goto out;
  }
  if (manager && !sf_uuid_valid(manager)) {
    invalid(a, req, "manager_id: must be a user id (UUID)");
    goto out;
  }
  if (!name && !location && !manager) {
    invalid(a, req, "body: give at least one of name, location, manager_id");
    goto out;
  }
  if (!sf_uuid_valid(id)) {
    catalog_verdict(a, req, CMD_NOT_FOUND_STORE, "store", id);
    goto out;
  }
  sf_event_t e;
  sf_event_init(&e);
  char eid[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, eid);
  envelope(a, &e, eid);
  cmd_verdict_t v =
      cmd_decide_store_update(a->state, id, name, location, manager, &e);
  if (v != CMD_OK) {
    catalog_verdict(a, req, v, "store", id);
    goto out;
  }
  outgoing_t o = {&e, a->cfg->topic_catalog, id};
  commit_events(a, req, &o, 1, 200, NULL, store_json, (void *)id);
out:
  json_decref(obj);
}

static void h_close_store(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  const char *id = sf_http_req_param(req, "id");
  if (!writable(a, req))
    return;
  if (!sf_uuid_valid(id)) {
    catalog_verdict(a, req, CMD_NOT_FOUND_STORE, "store", id);
    return;
  }
  sf_event_t e;
  sf_event_init(&e);
  char eid[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, eid);
  envelope(a, &e, eid);
  cmd_verdict_t v = cmd_decide_store_close(a->state, id, &e);
  if (v != CMD_OK) {
    catalog_verdict(a, req, v, "store", id);
    return;
  }
  outgoing_t o = {&e, a->cfg->topic_catalog, id};
  commit_events(a, req, &o, 1, 200, NULL, store_json, (void *)id);
}

/* ---- transfers ---- */

static const char *const transfer_keys[] = {"from_store_id", "to_store_id",
                                            "product_id", "quantity",
                                            "reference", NULL};

static void h_transfer(sf_http_req_t *req, void *ud) {
  cmd_app_t *a = ud;
  if (!writable(a, req))
    return;
  json_t *obj = parse_body(a, req);
  if (!obj)
    return;
  char err[256];
  const char *from = NULL, *to = NULL, *product = NULL, *reference = NULL;
  int64_t quantity = 0;
  bool has_q = false;
  if (sf_json_only_keys(obj, transfer_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "from_store_id", true, 64, &from, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "to_store_id", true, 64, &to, err, sizeof(err)) ||
      sf_json_get_string(obj, "product_id", true, 64, &product, err,
                         sizeof(err)) ||
      sf_json_get_int(obj, "quantity", true, 1, CMD_MAX_QUANTITY, &quantity,
                      &has_q, err, sizeof(err)) ||
      sf_json_get_string(obj, "reference", false, MAX_TEXT, &reference, err,
                         sizeof(err))) {
    invalid(a, req, err);
    goto out;
  }
  if (!sf_uuid_valid(from) || !sf_uuid_valid(to) || !sf_uuid_valid(product)) {
    invalid(a, req, "from_store_id, to_store_id, product_id: must be UUIDs");
    goto out;
  }
  char transfer_id[SF_ID_LEN], out_id[SF_ID_LEN], in_id[SF_ID_LEN];
  sf_uuid_v7_str(&a->ids, transfer_id);
  sf_uuid_v7_str(&a->ids, out_id);
  sf_uuid_v7_str(&a->ids, in_id);
  sf_event_t eo, ei;
  sf_event_init(&eo);
  sf_event_init(&ei);
  envelope(a, &eo, out_id);
  envelope(a, &ei, in_id);
  /* one command: both legs share the command id and the time */
  memcpy(ei.command_id, eo.command_id, sizeof(ei.command_id));
  ei.occurred_at_us = eo.occurred_at_us;
  cmd_verdict_t v = cmd_decide_transfer(a->state, from, to, product, quantity,
                                        reference, transfer_id, &eo, &ei);
  if (v != CMD_OK) {
    char detail[256];
    cmd_stock_row_t row;
    cmd_state_stock(a->state, from, product, &row);
    switch (v) {
    case CMD_NOT_FOUND_STORE:
      snprintf(detail, sizeof(detail), "no such store");
      break;
    case CMD_NOT_FOUND_PRODUCT:
      snprintf(detail, sizeof(detail), "no such product: %s", product);
      break;
    case CMD_SAME_STORE:
      snprintf(detail, sizeof(detail),
               "from_store_id and to_store_id must differ");
      break;
    case CMD_STORE_CLOSED:
      snprintf(detail, sizeof(detail), "a closed store takes no transfers");
      break;
    case CMD_INSUFFICIENT_STOCK:
      snprintf(detail, sizeof(detail),
               "transfer of %" PRId64 " would take available stock of the "
               "source below zero (on_hand %" PRId64 ", reserved %" PRId64 ")",
               quantity, row.on_hand, row.reserved);
      break;
    default:
      snprintf(detail, sizeof(detail), "on hand would exceed the limit");
    }
    refuse(a, req, v, detail);
    goto out;
  }
  char when[40];
  format_time(eo.occurred_at_us, when, sizeof(when));
  json_t *body = json_pack(
      "{s:s, s:s, s:s, s:s, s:I, s:o, s:s,"
      " s:{s:s, s:I, s:I, s:I, s:I},"
      " s:{s:s, s:I, s:I, s:I, s:I}}",
      "transfer_id", transfer_id, "from_store_id", from, "to_store_id", to,
      "product_id", product, "quantity", (json_int_t)quantity, "reference",
      reference ? json_string(reference) : json_null(), "created_at", when,
      "from", "transaction_id", out_id, "on_hand", (json_int_t)eo.stock.on_hand,
      "reserved", (json_int_t)eo.stock.reserved, "available",
      (json_int_t)(eo.stock.on_hand - eo.stock.reserved), "version",
      (json_int_t)eo.stream_version, "to", "transaction_id", in_id, "on_hand",
      (json_int_t)ei.stock.on_hand, "reserved", (json_int_t)ei.stock.reserved,
      "available", (json_int_t)(ei.stock.on_hand - ei.stock.reserved),
      "version", (json_int_t)ei.stream_version);
  outgoing_t legs[2] = {{&eo, a->cfg->topic_stock, from},
                        {&ei, a->cfg->topic_stock, to}};
  commit_events(a, req, legs, 2, 201, body, NULL, NULL);
out:
  json_decref(obj);
}

/* ---- lifecycle ---- */

int cmd_app_new(cmd_app_t **out, uv_loop_t *loop, const cmd_settings_t *cfg,
                sf_log_t *log) {
  cmd_app_t *a = calloc(1, sizeof(*a));
  if (!a)
    return SF_ENOMEM;
  a->loop = loop;
  a->cfg = cfg;
  a->log = log;
  sf_uuidgen_init(&a->ids);
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
  struct {
    const char *method, *path;
    sf_http_handler_cb cb;
  } routes[] = {
      {"GET", "/healthz", h_healthz},
      {"GET", "/readyz", h_readyz},
      {"GET", "/metrics", h_metrics},
      {"POST", "/v1/products", h_create_product},
      {"POST", "/v1/stores", h_create_store},
      {"POST", "/v1/stores/{store_id}/transactions", h_stock_transaction},
      {"PATCH", "/v1/products/{id}", h_update_product},
      {"DELETE", "/v1/products/{id}", h_discontinue_product},
      {"PATCH", "/v1/stores/{id}", h_update_store},
      {"DELETE", "/v1/stores/{id}", h_close_store},
      {"POST", "/v1/transfers", h_transfer},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    rc = sf_http_route(a->http, routes[i].method, routes[i].path, routes[i].cb,
                       a);
    if (rc)
      goto fail_route;
  }
  *out = a;
  return 0;

fail_route:
  sf_http_server_destroy(a->http);
fail_http:
  sf_event_codec_destroy(a->codec);
fail_codec:
  free(a);
  return rc;
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
  cmd_writer_opts_t wo = {
      .brokers = a->cfg->kafka_brokers,
      .transactional_id = a->cfg->transactional_id,
      .topic_catalog = a->cfg->topic_catalog,
      .topic_stock = a->cfg->topic_stock,
      .max_batch = (size_t)a->cfg->max_batch,
      .linger_us = a->cfg->linger_us,
      .txn_timeout_ms = (int)a->cfg->txn_timeout_ms,
  };
  cmd_writer_cbs_t cbs = {unit_done_cb, state_cb, fatal_cb, resync_cb, a};
  return cmd_writer_new(&a->writer, a->loop, &wo, &cbs, a->log);
}

static void http_closed_cb(void *ud) {
  cmd_app_t *a = ud;
  if (a->stop_done)
    a->stop_done(a->stop_ud);
}

void cmd_app_stop(cmd_app_t *a, void (*done)(void *), void *ud) {
  a->stop_done = done;
  a->stop_ud = ud;
  /* The writer first: its pending commands get their answers (503 or 201)
   * before the server closes the connections. */
  cmd_writer_destroy(a->writer);
  a->writer = NULL;
  sf_http_server_close(a->http, http_closed_cb, a);
}

void cmd_app_destroy(cmd_app_t *a) {
  if (!a)
    return;
  sf_http_server_destroy(a->http);
  sf_event_codec_destroy(a->codec);
  cmd_state_destroy(a->state);
  free(a);
}

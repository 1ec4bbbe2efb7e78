/* cmd_stock: handlers of movements, transfers and orders. See cmd_stock.h. */
#include "cmd_stock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/json.h"
#include "sf/uuid.h"

#define MAX_TEXT 500

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

static void h_movement(sf_http_req_t *req, void *ud);
static void h_transfer(sf_http_req_t *req, void *ud);
static void h_place_order(sf_http_req_t *req, void *ud);
static void h_fulfil(sf_http_req_t *req, void *ud);
static void h_cancel(sf_http_req_t *req, void *ud);

static const char *const movement_keys[] = {"product_id", "type", "quantity",
                                            "reason", "reference", NULL};
static const char *const item_keys[] = {"store_id", "product_id", "type",
                                        "quantity", "reason", "reference",
                                        NULL};

int cmd_movement_fields(json_t *obj, bool with_store, cmd_movement_fields_t *f,
                        char *err, size_t cap) {
  *f = (cmd_movement_fields_t){0};
  bool has_q = false;
  if (sf_json_only_keys(obj, with_store ? item_keys : movement_keys, err,
                        cap) ||
      (with_store && sf_json_get_string(obj, "store_id", true, 64,
                                        &f->store_id, err, cap)) ||
      sf_json_get_string(obj, "product_id", true, 64, &f->product_id, err,
                         cap) ||
      sf_json_get_string(obj, "type", true, 32, &f->type, err, cap) ||
      sf_json_get_int(obj, "quantity", true, -CMD_MAX_QUANTITY,
                      CMD_MAX_QUANTITY, &f->quantity, &has_q, err, cap) ||
      sf_json_get_string(obj, "reason", false, MAX_TEXT, &f->reason, err,
                         cap) ||
      sf_json_get_string(obj, "reference", false, MAX_TEXT, &f->reference,
                         err, cap))
    return -1;
  if (sf_movement_parse(f->type, &f->movement) != 0) {
    snprintf(err, cap,
             "type: must be one of receipt, sale, return, adjustment, count");
    return -1;
  }
  return 0;
}

void cmd_stock_movement(cmd_pipeline_t *pl, cmd_req_t *c, const char *store_id,
                        const char *product_id, sf_movement_t movement,
                        int64_t quantity, const char *reason,
                        const char *reference, int64_t if_match) {
  const char *type = sf_movement_name(movement);
  if (!type) {
    cmd_pipeline_invalid(
        pl, c, "type: must be one of receipt, sale, return, adjustment, count");
    return;
  }
  /* accounts: counts and adjustments need more than the gate's check */
  if (!cmd_pipeline_allowed(pl, c, cmd_movement_action(movement), store_id))
    return;
  /* instances: another instance's store is answered 307 / 421 */
  if (!cmd_pipeline_route_store(pl, c, store_id))
    return;
  if (!sf_uuid_valid(product_id)) {
    cmd_pipeline_invalid(pl, c, "product_id: must be a product id (UUID)");
    return;
  }
  const char *rule = cmd_check_movement(movement, quantity, reason);
  if (rule) {
    cmd_pipeline_invalid(pl, c, rule);
    return;
  }
  if (!sf_uuid_valid(store_id)) {
    cmd_pipeline_refuse(pl, c, CMD_NOT_FOUND_STORE, "no such store", NULL);
    return;
  }
  const cmd_state_t *st = cmd_pipeline_state(pl);
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  cmd_movement_cmd_t mc = {store_id, product_id, movement, quantity,
                           reason, reference, if_match};
  cmd_verdict_t v = cmd_decide_movement(st, &mc, &e);
  if ((v == CMD_NOT_FOUND_STORE || v == CMD_NOT_FOUND_PRODUCT) &&
      cmd_pipeline_catch_up(pl, c, true, h_movement))
    return; /* decided again once this instance has read the catalog */
  if (v != CMD_OK) {
    char detail[256];
    cmd_stock_row_t row;
    cmd_state_stock(st, store_id, product_id, &row);
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
    case CMD_VERSION_CONFLICT: {
      snprintf(detail, sizeof(detail),
               "If-Match %" PRId64 " does not match the current version %" PRId64,
               if_match, row.version);
      char etag[32];
      snprintf(etag, sizeof(etag), "\"%" PRId64 "\"", row.version);
      if (cmd_req_http(c))
        sf_http_add_header(cmd_req_http(c), "ETag", etag);
      break;
    }
    case CMD_STORE_CLOSED:
      snprintf(detail, sizeof(detail), "store %s is closed", store_id);
      break;
    case CMD_PRODUCT_DISCONTINUED:
      snprintf(detail, sizeof(detail),
               "product %s is discontinued and takes no receipts", product_id);
      break;
    default: {
      cmd_product_view_t pv;
      if (!cmd_state_product(st, product_id, &pv) ||
          !cmd_policy_explain(&pv.policy, v, quantity, detail,
                              sizeof(detail)))
        snprintf(detail, sizeof(detail), "on hand would exceed the limit");
    }
    }
    cmd_pipeline_refuse(pl, c, v, detail, NULL);
    return;
  }
  cmd_outgoing_t o = {&e, false, e.store_id};
  cmd_pipeline_commit(pl, c, &o, 1);
}

static void h_movement(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  const char *store_id = sf_http_req_param(req, "store_id");
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
  if (!obj)
    return;
  char err[256];
  cmd_movement_fields_t f;
  if (cmd_movement_fields(obj, false, &f, err, sizeof(err)) != 0) {
    cmd_pipeline_invalid(pl, c, err);
    goto out;
  }
  /* validated here, before the state is consulted (422 before 404/409) */
  int64_t if_match = parse_if_match(sf_http_req_header(req, "If-Match"));
  if (if_match == -2 && cmd_req_may(c, cmd_movement_action(f.movement),
                                    store_id)) {
    cmd_pipeline_invalid(pl, c, "If-Match: must be a version in quotes, e.g. \"3\"");
    goto out;
  }
  cmd_stock_movement(pl, c, store_id, f.product_id, f.movement, f.quantity,
                     f.reason, f.reference, if_match < 0 ? -1 : if_match);
out:
  json_decref(obj);
}

static const char *const transfer_keys[] = {"from_store_id", "to_store_id",
                                            "product_id", "quantity",
                                            "reference", NULL};

static void h_transfer(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
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
    cmd_pipeline_invalid(pl, c, err);
    goto out;
  }
  if (!sf_uuid_valid(from) || !sf_uuid_valid(to) || !sf_uuid_valid(product)) {
    cmd_pipeline_invalid(pl, c,
                         "from_store_id, to_store_id, product_id: must be UUIDs");
    goto out;
  }
  /* accounts: a transfer needs the right on both stores */
  if (!cmd_pipeline_allowed(pl, c, SF_ACT_TRANSFER, from) ||
      !cmd_pipeline_allowed(pl, c, SF_ACT_TRANSFER, to))
    goto out;
  /* instances: both stores must be one instance's: redirected there when
   * it is another one, refused when they belong to two */
  if (cmd_pipeline_store_owner(pl, from) != cmd_pipeline_store_owner(pl, to)) {
    cmd_pipeline_cross_instance(pl, c, from, to);
    goto out;
  }
  if (!cmd_pipeline_route_store(pl, c, from))
    goto out;
  const cmd_state_t *st = cmd_pipeline_state(pl);
  char transfer_id[SF_ID_LEN];
  cmd_pipeline_new_id(pl, transfer_id);
  sf_event_t eo, ei;
  cmd_pipeline_envelope(pl, c, &eo, NULL);
  /* one command: both legs share the command id and the time */
  cmd_pipeline_envelope(pl, c, &ei, eo.command_id);
  ei.occurred_at_us = eo.occurred_at_us;
  cmd_verdict_t v = cmd_decide_transfer(st, from, to, product, quantity,
                                        reference, transfer_id, &eo, &ei);
  if ((v == CMD_NOT_FOUND_STORE || v == CMD_NOT_FOUND_PRODUCT) &&
      cmd_pipeline_catch_up(pl, c, true, h_transfer))
    goto out;
  if (v != CMD_OK) {
    char detail[256];
    cmd_stock_row_t row;
    cmd_state_stock(st, from, product, &row);
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
    cmd_pipeline_refuse(pl, c, v, detail, NULL);
    goto out;
  }
  cmd_outgoing_t legs[2] = {{&eo, false, from}, {&ei, false, to}};
  cmd_pipeline_commit(pl, c, legs, 2);
out:
  json_decref(obj);
}

static const char *const order_keys[] = {"lines", "reference", NULL};
static const char *const line_keys[] = {"product_id", "quantity", NULL};

static void h_place_order(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  const char *store_id = sf_http_req_param(req, "store_id");
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
  if (!obj)
    return;
  sf_order_line_t *in = NULL, *out_lines = NULL;
  bool *shorts = NULL;
  char err[256];
  const char *reference = NULL;
  if (sf_json_only_keys(obj, order_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "reference", false, MAX_TEXT, &reference, err,
                         sizeof(err))) {
    cmd_pipeline_invalid(pl, c, err);
    goto out;
  }
  json_t *lines = json_object_get(obj, "lines");
  size_t n = json_is_array(lines) ? json_array_size(lines) : 0;
  if (n < 1 || n > CMD_MAX_LINES) {
    cmd_pipeline_invalid(pl, c, "lines: must be an array of 1 to 1000 lines");
    goto out;
  }
  in = calloc(n, sizeof(*in));
  out_lines = calloc(n, sizeof(*out_lines));
  shorts = calloc(n, sizeof(*shorts));
  if (!in || !out_lines || !shorts) {
    cmd_pipeline_problem(pl, c, 500, "internal", "out of memory", NULL);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *l = json_array_get(lines, i);
    const char *pid = NULL;
    int64_t q = 0;
    bool has_q = false;
    char lerr[200];
    if (!json_is_object(l) ||
        sf_json_only_keys(l, line_keys, lerr, sizeof(lerr)) ||
        sf_json_get_string(l, "product_id", true, 64, &pid, lerr,
                           sizeof(lerr)) ||
        sf_json_get_int(l, "quantity", true, 1, CMD_MAX_QUANTITY, &q, &has_q,
                        lerr, sizeof(lerr)) ||
        !sf_uuid_valid(pid)) {
      snprintf(err, sizeof(err), "lines[%zu]: %s", i,
               json_is_object(l) ? (pid && !sf_uuid_valid(pid)
                                        ? "product_id: must be a UUID"
                                        : lerr)
                                 : "must be an object {product_id, quantity}");
      cmd_pipeline_invalid(pl, c, err);
      goto out;
    }
    snprintf(in[i].product_id, sizeof(in[i].product_id), "%s", pid);
    in[i].quantity = q;
  }
  if (!sf_uuid_valid(store_id)) {
    cmd_pipeline_refuse(pl, c, CMD_NOT_FOUND_STORE, "no such store", NULL);
    goto out;
  }
  if (!cmd_pipeline_route_store(pl, c, store_id)) /* instances */
    goto out;
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  const char *order_id = e.event_id;
  const cmd_state_t *st = cmd_pipeline_state(pl);
  cmd_verdict_t v = cmd_decide_order_place(st, store_id, order_id, in, n,
                                           reference, out_lines, shorts, &e);
  if ((v == CMD_NOT_FOUND_STORE || v == CMD_NOT_FOUND_PRODUCT) &&
      cmd_pipeline_catch_up(pl, c, true, h_place_order))
    goto out;
  if (v == CMD_INSUFFICIENT_STOCK) {
    json_t *short_lines = json_array();
    for (size_t i = 0; i < n; i++) {
      if (!shorts[i])
        continue;
      cmd_stock_row_t row;
      cmd_state_stock(st, store_id, in[i].product_id, &row);
      json_array_append_new(
          short_lines,
          json_pack("{s:s, s:I, s:I}", "product_id", in[i].product_id,
                    "requested", (json_int_t)in[i].quantity, "available",
                    (json_int_t)(row.on_hand - row.reserved)));
    }
    cmd_pipeline_refuse(pl, c, v,
                        "some lines are short of available stock; nothing was "
                        "reserved",
                        json_pack("{s:o}", "lines", short_lines));
    goto out;
  }
  if (v != CMD_OK) {
    const char *detail = v == CMD_NOT_FOUND_STORE     ? "no such store"
                         : v == CMD_NOT_FOUND_PRODUCT ? "a line names an unknown product"
                         : v == CMD_DUPLICATE_LINE
                             ? "lines: a product appears twice"
                         : v == CMD_STORE_CLOSED ? "the store is closed"
                                                 : "refused";
    cmd_pipeline_refuse(pl, c, v, detail, NULL);
    goto out;
  }
  cmd_outgoing_t o = {&e, false, store_id};
  cmd_pipeline_commit(pl, c, &o, 1);
out:
  free(in);
  free(out_lines);
  free(shorts);
  json_decref(obj);
}

static void finish_order(sf_http_req_t *req, cmd_pipeline_t *pl, bool fulfil) {
  const char *order_id = sf_http_req_param(req, "id");
  cmd_req_t *c = cmd_pipeline_begin_write(pl, req);
  if (!c)
    return;
  if (!sf_uuid_valid(order_id)) {
    cmd_pipeline_refuse(pl, c, CMD_NOT_FOUND_ORDER, "no such order", NULL);
    return;
  }
  /* accounts: the order's store decides (an unknown order answers 404);
   * instances: so does its owner, and an order this instance has not read
   * yet may have been placed through another one */
  {
    char ostore[SF_ID_LEN];
    cmd_order_status_t ostatus;
    int64_t oversion;
    if (!cmd_state_order(cmd_pipeline_state(pl), order_id, ostore, &ostatus,
                         &oversion)) {
      if (cmd_pipeline_catch_up(pl, c, false, fulfil ? h_fulfil : h_cancel))
        return;
    } else if (!cmd_pipeline_allowed(pl, c, SF_ACT_ORDER_WRITE, ostore) ||
               !cmd_pipeline_route_store(pl, c, ostore)) {
      return;
    }
  }
  sf_order_line_t *lines = calloc(CMD_MAX_LINES, sizeof(*lines));
  if (!lines) {
    cmd_pipeline_problem(pl, c, 500, "internal", "out of memory", NULL);
    return;
  }
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  cmd_verdict_t v =
      cmd_decide_order_finish(cmd_pipeline_state(pl), order_id, fulfil, lines, &e);
  if (v != CMD_OK) {
    char detail[160];
    char store[SF_ID_LEN];
    cmd_order_status_t status;
    int64_t version;
    if (v == CMD_INVALID_STATE &&
        cmd_state_order(cmd_pipeline_state(pl), order_id, store, &status, &version))
      snprintf(detail, sizeof(detail), "order %s is already %s", order_id,
               cmd_order_status_name(status));
    else
      snprintf(detail, sizeof(detail), "no such order: %s", order_id);
    cmd_pipeline_refuse(pl, c, v, detail, NULL);
  } else {
    cmd_outgoing_t o = {&e, false, e.store_id};
    cmd_pipeline_commit(pl, c, &o, 1);
  }
  free(lines);
}

static void h_fulfil(sf_http_req_t *req, void *ud) {
  finish_order(req, ud, true);
}
static void h_cancel(sf_http_req_t *req, void *ud) {
  finish_order(req, ud, false);
}

int cmd_stock_routes(cmd_pipeline_t *pl, sf_http_server_t *http) {
  /* accounts: the gate checks the action on the path's store; counts and
   * adjustments, a transfer's stores and an order's store are checked in
   * the handlers (cmd_pipeline_allowed) */
  struct {
    const char *method, *path;
    sf_http_handler_cb cb;
    sf_auth_action_t action;
    const char *store_param;
  } routes[] = {
      {"POST", "/v1/stores/{store_id}/transactions", h_movement,
       SF_ACT_STOCK_WRITE, "store_id"},
      {"POST", "/v1/transfers", h_transfer, SF_ACT_READ_CATALOG, NULL},
      {"POST", "/v1/stores/{store_id}/orders", h_place_order,
       SF_ACT_ORDER_WRITE, "store_id"},
      {"POST", "/v1/orders/{id}/fulfil", h_fulfil, SF_ACT_READ_CATALOG, NULL},
      {"POST", "/v1/orders/{id}/cancel", h_cancel, SF_ACT_READ_CATALOG, NULL},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    int rc = cmd_pipeline_route(pl, http, routes[i].method, routes[i].path,
                                routes[i].action, routes[i].store_param,
                                routes[i].cb);
    if (rc)
      return rc;
  }
  return 0;
}

/* qry_handlers: the /v1 query endpoints of API.md. Each handler validates
 * the path and query parameters (a malformed id is an unknown id: 404; a
 * bad filter 422; a foreign cursor 400 bad_cursor), binds the statement
 * parameters and runs the statement through qry_call_run; its render
 * function turns the result into the answer. */
#include "qry_handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_call.h"
#include "qry_sql.h"
#include "sf/err.h"
#include "sf/json.h"
#include "sf/uuid.h"

/* Returns the path parameter name when it is a UUID, else NULL. */
static const char *path_id(sf_http_req_t *req, const char *name) {
  const char *id = sf_http_req_param(req, name);
  return id && sf_uuid_valid(id) ? id : NULL;
}

/* Parses an optional RFC 3339 query parameter into parameter i of c (as
 * microseconds) or SQL NULL. Answers 422 and returns false when malformed. */
static bool time_param(qry_call_t *c, const char *name, int i,
                       int64_t *us_out) {
  const char *text = sf_http_req_query(c->req, name);
  if (!text) {
    qry_call_param(c, i, NULL);
    return true;
  }
  int64_t us;
  if (sf_json_parse_time(text, &us) != 0) {
    char detail[96];
    snprintf(detail, sizeof(detail), "%s must be an RFC 3339 time", name);
    qry_respond_invalid(c->req, detail);
    return false;
  }
  qry_call_param_i64(c, i, (long long)us);
  if (us_out)
    *us_out = us;
  return true;
}

/* ---- GET /v1/stores/{store_id}/inventory ---- */

static void render_store_inventory(qry_call_t *c, const PGresult *res) {
  qry_call_respond_page(c, res, "product_id", QRY_CURSOR_STORE_INVENTORY,
                        QRY_SHAPE_INVENTORY, "store", NULL);
}

static void h_store_inventory(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *store = path_id(req, "store_id");
  if (!store) {
    qry_respond_not_found(req, "store");
    return;
  }
  bool below;
  if (qry_parse_bool(sf_http_req_query(req, "below_reorder"), false,
                     &below) != 0) {
    qry_respond_invalid(req, "below_reorder must be true or false");
    return;
  }
  if (!time_param(c, "as_of", 4, NULL))
    return;
  bool as_of = c->params[4] != NULL;
  if (!qry_call_page_params(c, QRY_CURSOR_STORE_INVENTORY, false, 1, 3))
    return;
  qry_call_param(c, 0, store);
  qry_call_param(c, 2, below ? "true" : "false");
  if (as_of)
    qry_call_run(c, QRY_SQL_STORE_INVENTORY_AS_OF, 5, render_store_inventory);
  else
    qry_call_run(c, QRY_SQL_STORE_INVENTORY, 4, render_store_inventory);
}

/* ---- GET /v1/stores/{store_id}/inventory/{product_id} ---- */

static void render_inventory_row(qry_call_t *c, const PGresult *res) {
  int s_col = PQfnumber(res, "store_id");
  int p_col = PQfnumber(res, "product_id");
  if (PQntuples(res) != 1 || s_col < 0 || p_col < 0) {
    qry_respond_internal(c, "inventory row: unexpected result shape");
    return;
  }
  if (PQgetisnull(res, 0, s_col)) {
    qry_respond_not_found(c->req, "store");
    return;
  }
  if (PQgetisnull(res, 0, p_col)) {
    qry_respond_not_found(c->req, "product");
    return;
  }
  int64_t version;
  char *row = NULL;
  size_t len = 0;
  if (qry_row_i64(res, 0, "version", &version) != 0 ||
      qry_row_text(res, 0, QRY_SHAPE_INVENTORY_AT, &row, &len) != 0) {
    qry_respond_internal(c, "inventory row: malformed row");
    return;
  }
  char etag[32];
  snprintf(etag, sizeof(etag), "\"%lld\"", (long long)version);
  if (sf_http_add_header(c->req, "ETag", etag) != 0) {
    free(row);
    qry_respond_internal(c, "inventory row: adding ETag");
    return;
  }
  sf_http_respond(c->req, 200, "application/json", row, len);
  free(row);
}

static void h_inventory_row(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *store = path_id(req, "store_id");
  const char *product = path_id(req, "product_id");
  if (!store || !product) {
    qry_respond_not_found(req, store ? "product" : "store");
    return;
  }
  qry_call_param(c, 0, store);
  qry_call_param(c, 1, product);
  qry_call_run(c, QRY_SQL_INVENTORY_ROW, 2, render_inventory_row);
}

/* ---- GET /v1/stores/{store_id}/transactions ---- */

static void render_transactions(qry_call_t *c, const PGresult *res) {
  qry_call_respond_page(c, res, "transaction_id", QRY_CURSOR_TRANSACTIONS,
                        QRY_SHAPE_TRANSACTION, "store", NULL);
}

static void h_transactions(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *store = path_id(req, "store_id");
  if (!store) {
    qry_respond_not_found(req, "store");
    return;
  }
  const char *product = sf_http_req_query(req, "product_id");
  if (product && !sf_uuid_valid(product)) {
    qry_respond_invalid(req, "product_id must be a UUID");
    return;
  }
  const char *type = sf_http_req_query(req, "type");
  if (type && !qry_tx_type_valid(type)) {
    qry_respond_invalid(req, "type must be one of receipt, sale, return, "
                             "adjustment, count, transfer_out, transfer_in, "
                             "order_placed, order_fulfilled, "
                             "order_cancelled, order_expired");
    return;
  }
  if (!time_param(c, "since", 4, NULL) || !time_param(c, "until", 5, NULL))
    return;
  if (!qry_call_page_params(c, QRY_CURSOR_TRANSACTIONS, true, 1, 6))
    return;
  qry_call_param(c, 0, store);
  qry_call_param(c, 2, product);
  qry_call_param(c, 3, type);
  qry_call_run(c, QRY_SQL_TRANSACTIONS, 7, render_transactions);
}

/* ---- GET /v1/products/{product_id} ---- */

static void render_product(qry_call_t *c, const PGresult *res) {
  if (PQntuples(res) == 0) {
    qry_respond_not_found(c->req, "product");
    return;
  }
  json_t *p = qry_row(res, 0, QRY_SHAPE_PRODUCT);
  if (!p) {
    qry_respond_internal(c, "product: malformed row");
    return;
  }
  sf_http_respond_json(c->req, 200, p);
}

static void h_product(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *product = path_id(req, "product_id");
  if (!product) {
    qry_respond_not_found(req, "product");
    return;
  }
  qry_call_param(c, 0, product);
  qry_call_run(c, QRY_SQL_PRODUCT, 1, render_product);
}

/* ---- GET /v1/products ---- */

static void render_products(qry_call_t *c, const PGresult *res) {
  qry_call_respond_page(c, res, "id", QRY_CURSOR_PRODUCTS, QRY_SHAPE_PRODUCT,
                        NULL, NULL);
}

static void h_products(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  /* An empty filter is no filter. */
  const char *category = sf_http_req_query(req, "category");
  if (category && !*category)
    category = NULL;
  if (category && strlen(category) > QRY_Q_MAX) {
    qry_respond_invalid(req, "category must be at most 200 bytes");
    return;
  }
  const char *q = sf_http_req_query(req, "q");
  if (q && *q) {
    if (qry_like_pattern(q, c->like, sizeof(c->like)) != 0) {
      qry_respond_invalid(req, "q must be at most 200 bytes");
      return;
    }
    qry_call_param(c, 2, c->like);
  } else {
    qry_call_param(c, 2, NULL);
  }
  if (!qry_call_page_params(c, QRY_CURSOR_PRODUCTS, false, 0, 3))
    return;
  qry_call_param(c, 1, category);
  qry_call_run(c, QRY_SQL_PRODUCTS, 4, render_products);
}

/* ---- GET /v1/products/{product_id}/inventory ---- */

static void render_product_inventory(qry_call_t *c, const PGresult *res) {
  if (PQntuples(res) == 0) {
    qry_respond_not_found(c->req, "product");
    return;
  }
  int64_t on_hand, available;
  if (qry_row_i64(res, 0, "total_on_hand", &on_hand) != 0 ||
      qry_row_i64(res, 0, "total_available", &available) != 0) {
    qry_respond_internal(c, "product inventory: malformed totals");
    return;
  }
  int owner = PQfnumber(res, "owner_id");
  if (owner < 0 || PQgetisnull(res, 0, owner)) {
    qry_respond_internal(c, "product inventory: no owner_id");
    return;
  }
  json_t *extra = json_pack("{s:s,s:I,s:I}", "product_id",
                            PQgetvalue(res, 0, owner), "total_on_hand",
                            (json_int_t)on_hand, "total_available",
                            (json_int_t)available);
  if (!extra) {
    qry_respond_internal(c, "out of memory");
    return;
  }
  qry_call_respond_page(c, res, "store_id", QRY_CURSOR_PRODUCT_INVENTORY,
                        QRY_SHAPE_HOLDING, "product", extra);
}

static void h_product_inventory(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *product = path_id(req, "product_id");
  if (!product) {
    qry_respond_not_found(req, "product");
    return;
  }
  if (!qry_call_page_params(c, QRY_CURSOR_PRODUCT_INVENTORY, false, 1, 2))
    return;
  qry_call_param(c, 0, product);
  qry_call_param(c, 3, c->store_filter); /* accounts: the caller's stores */
  qry_call_run(c, QRY_SQL_PRODUCT_INVENTORY, 4, render_product_inventory);
}

/* ---- GET /v1/stores, GET /v1/stores/{store_id} ---- */

static void render_stores(qry_call_t *c, const PGresult *res) {
  qry_call_respond_page(c, res, "id", QRY_CURSOR_STORES, QRY_SHAPE_STORE, NULL,
                        NULL);
}

static void h_stores(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  if (!qry_call_page_params(c, QRY_CURSOR_STORES, false, 0, 1))
    return;
  qry_call_param(c, 2, c->store_filter); /* accounts: the caller's stores */
  qry_call_run(c, QRY_SQL_STORES, 3, render_stores);
}

static void render_store(qry_call_t *c, const PGresult *res) {
  if (PQntuples(res) == 0) {
    qry_respond_not_found(c->req, "store");
    return;
  }
  json_t *st = qry_row(res, 0, QRY_SHAPE_STORE);
  if (!st) {
    qry_respond_internal(c, "store: malformed row");
    return;
  }
  sf_http_respond_json(c->req, 200, st);
}

static void h_store(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *store = path_id(req, "store_id");
  if (!store) {
    qry_respond_not_found(req, "store");
    return;
  }
  qry_call_param(c, 0, store);
  qry_call_run(c, QRY_SQL_STORE, 1, render_store);
}

/* ---- GET /v1/orders/{order_id} ---- */

static void render_order(qry_call_t *c, const PGresult *res) {
  if (PQntuples(res) == 0) {
    qry_respond_not_found(c->req, "order");
    return;
  }
  /* accounts: an order of a store the caller may not read is 403 */
  int s_col = PQfnumber(res, "store_id");
  if (c->store_filter &&
      (s_col < 0 || !sf_auth_has_store(sf_authn_principal(c->req),
                                       PQgetvalue(res, 0, s_col)))) {
    sf_authn_forbidden(c->req, "this order belongs to a store you may not "
                               "read");
    return;
  }
  json_t *o = qry_row(res, 0, QRY_SHAPE_ORDER);
  if (!o) {
    qry_respond_internal(c, "order: malformed row");
    return;
  }
  sf_http_respond_json(c->req, 200, o);
}

static void h_order(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *order = path_id(req, "order_id");
  if (!order) {
    qry_respond_not_found(req, "order");
    return;
  }
  qry_call_param(c, 0, order);
  qry_call_run(c, QRY_SQL_ORDER, 1, render_order);
}

/* ---- GET /v1/stores/{store_id}/orders ---- */

static void render_store_orders(qry_call_t *c, const PGresult *res) {
  qry_call_respond_page(c, res, "order_id", QRY_CURSOR_ORDERS, QRY_SHAPE_ORDER,
                        "store", NULL);
}

static void h_store_orders(sf_http_req_t *req, void *ud) {
  qry_call_t *c = qry_call_begin(ud, req);
  if (!c)
    return;
  const char *store = path_id(req, "store_id");
  if (!store) {
    qry_respond_not_found(req, "store");
    return;
  }
  const char *status = sf_http_req_query(req, "status");
  if (status && !*status)
    status = NULL; /* an empty filter is no filter */
  if (status && !qry_order_status_valid(status)) {
    qry_respond_invalid(req, "status must be placed, fulfilled or cancelled");
    return;
  }
  if (!qry_call_page_params(c, QRY_CURSOR_ORDERS, true, 1, 3))
    return;
  qry_call_param(c, 0, store);
  qry_call_param(c, 2, status);
  qry_call_run(c, QRY_SQL_STORE_ORDERS, 4, render_store_orders);
}

int qry_handlers_register(qry_calls_t *k, sf_http_server_t *http) {
  static const struct {
    const char *pattern;
    sf_http_handler_cb cb;
  } routes[] = {
      {"/v1/stores", h_stores},
      {"/v1/stores/{store_id}", h_store},
      {"/v1/stores/{store_id}/inventory", h_store_inventory},
      {"/v1/stores/{store_id}/inventory/{product_id}", h_inventory_row},
      {"/v1/stores/{store_id}/transactions", h_transactions},
      {"/v1/products", h_products},
      {"/v1/products/{product_id}", h_product},
      {"/v1/products/{product_id}/inventory", h_product_inventory},
      {"/v1/orders/{order_id}", h_order},
      {"/v1/stores/{store_id}/orders", h_store_orders},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    int rc = qry_route(k, http, routes[i].pattern, routes[i].cb, k);
    if (rc != 0)
      return rc;
  }
  return 0;
}

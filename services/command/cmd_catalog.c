/* cmd_catalog: handlers of the catalog commands. See cmd_catalog.h. */
#include "cmd_catalog.h"

#include <stdio.h>
#include <string.h>

#include "sf/json.h"
#include "sf/uuid.h"

#define MAX_TEXT 500
#define MAX_NAME 200
#define MAX_SKU 64

static bool valid_sku(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= 0x20 || *p == 0x7f)
      return false;
  return true;
}

static void catalog_verdict(cmd_pipeline_t *pl, cmd_req_t *c, cmd_verdict_t v,
                            const char *what, const char *id) {
  char detail[200];
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
  case CMD_DUPLICATE_SKU:
    snprintf(detail, sizeof(detail), "a product with sku \"%s\" exists", id);
    break;
  default:
    snprintf(detail, sizeof(detail), "%s %s: refused", what, id);
  }
  cmd_pipeline_refuse(pl, c, v, detail, NULL);
}

/* Commits one catalog event keyed by id. */
static void commit_catalog(cmd_pipeline_t *pl, cmd_req_t *c, sf_event_t *e,
                           const char *id) {
  cmd_outgoing_t o = {e, true, id};
  cmd_pipeline_commit(pl, c, &o, 1);
}

static const char *const product_keys[] = {"sku", "name", "category", "price",
                                           "reorder_level", NULL};

static void h_create_product(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  if (!cmd_pipeline_route_catalog(pl, req)) /* instances: instance 0 writes it */
    return;
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
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
    cmd_pipeline_invalid(pl, c, err);
    goto out;
  }
  if (!valid_sku(sku)) {
    cmd_pipeline_invalid(pl, c, "sku: must not contain spaces or control characters");
    goto out;
  }
  if (sf_json_check_decimal(price) != 0) {
    cmd_pipeline_invalid(pl, c, "price: must be a decimal string such as \"19.99\" "
                                "(up to 4 fraction digits, not negative)");
    goto out;
  }
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  const char *id = e.event_id;
  cmd_verdict_t v = cmd_decide_product_create(cmd_pipeline_state(pl), id, sku, name,
                                              category, price, reorder, &e);
  if (v != CMD_OK) {
    catalog_verdict(pl, c, v, "product", sku);
    goto out;
  }
  commit_catalog(pl, c, &e, id);
out:
  json_decref(obj);
}

static const char *const product_patch_keys[] = {"name", "category", "price",
                                                 "reorder_level", NULL};

static void h_update_product(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  if (!cmd_pipeline_route_catalog(pl, req)) /* instances: instance 0 writes it */
    return;
  const char *id = sf_http_req_param(req, "id");
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
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
    cmd_pipeline_invalid(pl, c, err);
    goto out;
  }
  if (name && !*name) {
    cmd_pipeline_invalid(pl, c, "name: must not be empty");
    goto out;
  }
  if (price && sf_json_check_decimal(price) != 0) {
    cmd_pipeline_invalid(pl, c, "price: must be a decimal string such as \"19.99\"");
    goto out;
  }
  if (!name && !category && !price && !has_reorder) {
    cmd_pipeline_invalid(pl, c, "body: give at least one of name, category, price, "
                                "reorder_level");
    goto out;
  }
  if (!sf_uuid_valid(id)) {
    catalog_verdict(pl, c, CMD_NOT_FOUND_PRODUCT, "product", id);
    goto out;
  }
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  cmd_verdict_t v = cmd_decide_product_update(cmd_pipeline_state(pl), id, name,
                                              category, price, has_reorder,
                                              reorder, &e);
  if (v != CMD_OK) {
    catalog_verdict(pl, c, v, "product", id);
    goto out;
  }
  commit_catalog(pl, c, &e, id);
out:
  json_decref(obj);
}

static const char *const policy_keys[] = {
    "max_sale_quantity", "max_negative_adjustment", "count_requires_reason",
    NULL};

/* PUT /v1/products/{id}/policy: the whole policy (rules); an absent or null
 * limit is none, an absent count_requires_reason is false. */
static void h_put_policy(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  if (!cmd_pipeline_route_catalog(pl, req)) /* instances: instance 0 writes it */
    return;
  const char *id = sf_http_req_param(req, "id");
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
  if (!obj)
    return;
  char err[256];
  cmd_policy_t pol = {0};
  if (sf_json_only_keys(obj, policy_keys, err, sizeof(err)) ||
      sf_json_get_int(obj, "max_sale_quantity", false, 1, CMD_MAX_QUANTITY,
                      &pol.max_sale_quantity, &pol.has_max_sale, err,
                      sizeof(err)) ||
      sf_json_get_int(obj, "max_negative_adjustment", false, 0,
                      CMD_MAX_QUANTITY, &pol.max_negative_adjustment,
                      &pol.has_max_negative_adjustment, err, sizeof(err))) {
    cmd_pipeline_invalid(pl, c, err);
    goto out;
  }
  json_t *flag = json_object_get(obj, "count_requires_reason");
  if (flag && !json_is_boolean(flag) && !json_is_null(flag)) {
    cmd_pipeline_invalid(pl, c, "count_requires_reason: must be true or false");
    goto out;
  }
  pol.count_requires_reason = json_is_true(flag);
  if (!sf_uuid_valid(id)) {
    catalog_verdict(pl, c, CMD_NOT_FOUND_PRODUCT, "product", id);
    goto out;
  }
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  cmd_verdict_t v = cmd_decide_product_policy(cmd_pipeline_state(pl), id, &pol, &e);
  if (v != CMD_OK) {
    catalog_verdict(pl, c, v, "product", id);
    goto out;
  }
  commit_catalog(pl, c, &e, id);
out:
  json_decref(obj);
}

static void h_discontinue_product(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  if (!cmd_pipeline_route_catalog(pl, req)) /* instances: instance 0 writes it */
    return;
  const char *id = sf_http_req_param(req, "id");
  cmd_req_t *c = cmd_pipeline_begin_write(pl, req);
  if (!c)
    return;
  if (!sf_uuid_valid(id)) {
    catalog_verdict(pl, c, CMD_NOT_FOUND_PRODUCT, "product", id);
    return;
  }
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  cmd_verdict_t v = cmd_decide_product_discontinue(cmd_pipeline_state(pl), id, &e);
  if (v != CMD_OK) {
    catalog_verdict(pl, c, v, "product", id);
    return;
  }
  commit_catalog(pl, c, &e, id);
}

static const char *const store_keys[] = {"name", "location", "manager_id",
                                         NULL};

/* Reads name, location and manager_id; required says whether name and
 * location must be there. Answers 422 itself and returns false. */
static bool store_fields(cmd_pipeline_t *pl, cmd_req_t *c, json_t *obj,
                         bool required, const char **name,
                         const char **location, const char **manager) {
  char err[256];
  if (sf_json_only_keys(obj, store_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "name", required, MAX_NAME, name, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "location", required, MAX_TEXT, location, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "manager_id", false, SF_UUID_STR_LEN, manager,
                         err, sizeof(err))) {
    cmd_pipeline_invalid(pl, c, err);
    return false;
  }
  if ((*name && !**name) || (*location && !**location)) {
    cmd_pipeline_invalid(pl, c, "name, location: must not be empty");
    return false;
  }
  if (*manager && !sf_uuid_valid(*manager)) {
    cmd_pipeline_invalid(pl, c, "manager_id: must be a user id (UUID)");
    return false;
  }
  return true;
}

static void h_create_store(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  if (!cmd_pipeline_route_catalog(pl, req)) /* instances: instance 0 writes it */
    return;
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
  if (!obj)
    return;
  const char *name = NULL, *location = NULL, *manager = NULL;
  if (store_fields(pl, c, obj, true, &name, &location, &manager)) {
    sf_event_t e;
    cmd_pipeline_envelope(pl, c, &e, NULL);
    const char *id = e.event_id;
    cmd_decide_store_open(cmd_pipeline_state(pl), id, name, location, manager, &e);
    commit_catalog(pl, c, &e, id);
  }
  json_decref(obj);
}

static void h_update_store(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  if (!cmd_pipeline_route_catalog(pl, req)) /* instances: instance 0 writes it */
    return;
  const char *id = sf_http_req_param(req, "id");
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
  if (!obj)
    return;
  const char *name = NULL, *location = NULL, *manager = NULL;
  if (!store_fields(pl, c, obj, false, &name, &location, &manager))
    goto out;
  if (!name && !location && !manager) {
    cmd_pipeline_invalid(pl, c, "body: give at least one of name, location, "
                                "manager_id");
    goto out;
  }
  if (!sf_uuid_valid(id)) {
    catalog_verdict(pl, c, CMD_NOT_FOUND_STORE, "store", id);
    goto out;
  }
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  cmd_verdict_t v = cmd_decide_store_update(cmd_pipeline_state(pl), id, name,
                                            location, manager, &e);
  if (v != CMD_OK) {
    catalog_verdict(pl, c, v, "store", id);
    goto out;
  }
  commit_catalog(pl, c, &e, id);
out:
  json_decref(obj);
}

static void h_close_store(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  if (!cmd_pipeline_route_catalog(pl, req)) /* instances: instance 0 writes it */
    return;
  const char *id = sf_http_req_param(req, "id");
  cmd_req_t *c = cmd_pipeline_begin_write(pl, req);
  if (!c)
    return;
  if (!sf_uuid_valid(id)) {
    catalog_verdict(pl, c, CMD_NOT_FOUND_STORE, "store", id);
    return;
  }
  sf_event_t e;
  cmd_pipeline_envelope(pl, c, &e, NULL);
  cmd_verdict_t v = cmd_decide_store_close(cmd_pipeline_state(pl), id, &e);
  if (v != CMD_OK) {
    catalog_verdict(pl, c, v, "store", id);
    return;
  }
  commit_catalog(pl, c, &e, id);
}

int cmd_catalog_routes(cmd_pipeline_t *pl, sf_http_server_t *http) {
  struct {
    const char *method, *path;
    sf_http_handler_cb cb;
  } routes[] = {
      {"POST", "/v1/products", h_create_product},
      {"PATCH", "/v1/products/{id}", h_update_product},
      {"DELETE", "/v1/products/{id}", h_discontinue_product},
      {"PUT", "/v1/products/{id}/policy", h_put_policy}, /* rules */
      {"POST", "/v1/stores", h_create_store},
      {"PATCH", "/v1/stores/{id}", h_update_store},
      {"DELETE", "/v1/stores/{id}", h_close_store},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    /* accounts: the catalog is written by admins only */
    int rc = cmd_pipeline_route(pl, http, routes[i].method, routes[i].path,
                                SF_ACT_CATALOG_WRITE, NULL, routes[i].cb);
    if (rc)
      return rc;
  }
  return 0;
}

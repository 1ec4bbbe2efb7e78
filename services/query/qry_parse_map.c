/* qry_parse_map: Parse writes <-> /v1 requests and answers (see
 * qry_parse_map.h and the "Writes" table of docs/parse-compat.md). */
#include "qry_parse_map.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sf/json.h"
#include "sf/uuid.h"

#define DEFAULT_INCREMENT_REASON "parse increment"
#define BATCH_PREFIX "/parse"

static bool fault(qry_parse_fault_t *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fault(qry_parse_fault_t *f, int code, const char *fmt, ...) {
  f->code = code;
  f->status = qry_parse_map_status(code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->message, sizeof(f->message), fmt, ap);
  va_end(ap);
  return false;
}

int qry_parse_map_status(int code) {
  switch (code) {
  case QRY_PARSE_OBJECT_NOT_FOUND:
    return 404;
  case QRY_PARSE_INTERNAL_SERVER_ERROR:
    return 500;
  case QRY_PARSE_CONNECTION_FAILED:
    return 503;
  case QRY_PARSE_REQUEST_LIMIT_EXCEEDED:
    return 429;
  default:
    return 400;
  }
}

/* ---- problems ---- */

typedef struct code_map {
  const char *v1;
  int parse;
} code_map_t;

/* docs/parse-compat.md, "Error codes". The rules of the current state
 * (stock, a closed store, a discontinued product, a policy) are Parse's
 * VALIDATION_ERROR: the request was understood and refused. */
static const code_map_t codes[] = {
    {"insufficient_stock", QRY_PARSE_VALIDATION_ERROR},
    {"invalid_state", QRY_PARSE_VALIDATION_ERROR},
    {"validation_failed", QRY_PARSE_VALIDATION_ERROR},
    {"store_closed", QRY_PARSE_VALIDATION_ERROR},
    {"product_discontinued", QRY_PARSE_VALIDATION_ERROR},
    {"count_below_reserved", QRY_PARSE_VALIDATION_ERROR},
    {"stock_limit_exceeded", QRY_PARSE_VALIDATION_ERROR},
    {"policy_max_sale_quantity", QRY_PARSE_VALIDATION_ERROR},
    {"policy_max_negative_adjustment", QRY_PARSE_VALIDATION_ERROR},
    {"policy_reason_required", QRY_PARSE_VALIDATION_ERROR},
    {"version_conflict", QRY_PARSE_VALIDATION_ERROR},
    {"last_admin", QRY_PARSE_VALIDATION_ERROR},
    {"bad_idempotency_key", QRY_PARSE_VALIDATION_ERROR},
    {"not_found", QRY_PARSE_OBJECT_NOT_FOUND},
    {"forbidden", QRY_PARSE_OPERATION_FORBIDDEN},
    {"account_disabled", QRY_PARSE_OPERATION_FORBIDDEN},
    {"unauthorized", QRY_PARSE_INVALID_SESSION_TOKEN},
    {"username_taken", QRY_PARSE_USERNAME_TAKEN},
    {"duplicate_sku", QRY_PARSE_DUPLICATE_VALUE},
    {"idempotency_key_reused", QRY_PARSE_DUPLICATE_REQUEST},
    {"malformed_json", QRY_PARSE_INVALID_JSON},
    {"bad_request", QRY_PARSE_INVALID_JSON},
    {"unsupported_media_type", QRY_PARSE_INVALID_JSON},
    {"payload_too_large", QRY_PARSE_OBJECT_TOO_LARGE},
    {"too_many_requests", QRY_PARSE_REQUEST_LIMIT_EXCEEDED},
    /* Retriable: Parse's SDK retries 5xx answers by itself. */
    {"unavailable", QRY_PARSE_CONNECTION_FAILED},
    {"idempotency_key_in_flight", QRY_PARSE_CONNECTION_FAILED},
    {"internal", QRY_PARSE_INTERNAL_SERVER_ERROR},
    /* 421: the owner instance's URL is not configured (not the client's
     * fault; the 307 with a URL is followed). */
    {"wrong_instance", QRY_PARSE_INTERNAL_SERVER_ERROR},
};

static int code_of_status(int status) {
  if (status == 503)
    return QRY_PARSE_CONNECTION_FAILED;
  if (status >= 500)
    return QRY_PARSE_INTERNAL_SERVER_ERROR;
  if (status == 404)
    return QRY_PARSE_OBJECT_NOT_FOUND;
  if (status == 401)
    return QRY_PARSE_INVALID_SESSION_TOKEN;
  if (status == 403)
    return QRY_PARSE_OPERATION_FORBIDDEN;
  return QRY_PARSE_VALIDATION_ERROR;
}

void qry_parse_map_problem(int v1_status, const char *v1_code,
                           const char *detail, bool login,
                           qry_parse_fault_t *f) {
  int code = code_of_status(v1_status);
  if (v1_code) {
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
      if (strcmp(codes[i].v1, v1_code) == 0) {
        code = codes[i].parse;
        break;
      }
    }
  }
  if (login && code == QRY_PARSE_INVALID_SESSION_TOKEN) {
    fault(f, QRY_PARSE_OBJECT_NOT_FOUND, "Invalid username/password.");
    return;
  }
  if (code == QRY_PARSE_OBJECT_NOT_FOUND && !login)
    fault(f, code, "Object not found.");
  else if (code == QRY_PARSE_INVALID_SESSION_TOKEN)
    fault(f, code, "Invalid session token");
  else
    fault(f, code, "%s",
          detail && *detail ? detail : (v1_code ? v1_code : "refused"));
}

/* ---- fields of a Parse body ---- */

/* The ids in a path must be UUIDs: anything else names no object (and
 * must not reach a URL). */
static bool id_ok(const char *id, qry_parse_fault_t *f) {
  if (id && sf_uuid_valid(id))
    return true;
  return fault(f, QRY_PARSE_OBJECT_NOT_FOUND, "Object not found.");
}

/* The objectId of the pointer body[key] to class_name: NULL is returned
 * with *f set when it is absent (and required), not a pointer to that
 * class (111), or not a UUID (101). *absent says it was absent or null. */
static const char *pointer_id(const json_t *body, const char *key,
                              const char *class_name, bool required,
                              bool *absent, qry_parse_fault_t *f) {
  json_t *p = json_object_get(body, key);
  *absent = !p || json_is_null(p);
  if (*absent) {
    if (required)
      fault(f, QRY_PARSE_VALIDATION_ERROR, "%s is required", key);
    return NULL;
  }
  const char *type = json_string_value(json_object_get(p, "__type"));
  const char *cls = json_string_value(json_object_get(p, "className"));
  const char *id = json_string_value(json_object_get(p, "objectId"));
  if (!json_is_object(p) || !type || strcmp(type, "Pointer") != 0 || !cls ||
      strcmp(cls, class_name) != 0 || !id) {
    fault(f, QRY_PARSE_INCORRECT_TYPE, "%s must be a pointer to %s", key,
          class_name);
    return NULL;
  }
  if (!id_ok(id, f))
    return NULL;
  return id;
}

/* Copies body[from] to out[to] when present; it must be of type want
 * (JSON_STRING, JSON_INTEGER) or null when nullable. */
static bool copy_field(const json_t *body, const char *from, json_t *out,
                       const char *to, json_type want, bool nullable,
                       qry_parse_fault_t *f) {
  json_t *v = json_object_get(body, from);
  if (!v)
    return true;
  if (json_is_null(v) && nullable) {
    json_object_set_new(out, to, json_null());
    return true;
  }
  if (json_typeof(v) != want)
    return fault(f, QRY_PARSE_INCORRECT_TYPE, "%s must be a %s", from,
                 want == JSON_STRING ? "String" : "Number (an integer)");
  json_object_set(out, to, v);
  return true;
}

/* Keys other than allowed (NULL-terminated) and the ACL the SDK may add
 * (stockflow's roles decide access, not ACLs): 105. */
static bool keys_ok(const json_t *body, const char *const *allowed,
                    const char *class_name, qry_parse_fault_t *f) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)body, key, v) {
    bool ok = strcmp(key, "ACL") == 0;
    for (size_t i = 0; !ok && allowed[i]; i++)
      ok = strcmp(key, allowed[i]) == 0;
    if (!ok)
      return fault(f, QRY_PARSE_INVALID_KEY_NAME,
                   "%s cannot be set on %s through this API", key,
                   class_name);
  }
  return true;
}

/* price: a Number (or a decimal String) as /v1's decimal string. */
static bool price_field(const json_t *body, json_t *out,
                        qry_parse_fault_t *f) {
  json_t *v = json_object_get(body, "price");
  if (!v)
    return true;
  char buf[64];
  if (json_is_integer(v))
    snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  else if (json_is_real(v))
    snprintf(buf, sizeof(buf), "%.15g", json_real_value(v));
  else if (json_is_string(v))
    snprintf(buf, sizeof(buf), "%s", json_string_value(v));
  else
    return fault(f, QRY_PARSE_INCORRECT_TYPE, "price must be a Number");
  if (sf_json_check_decimal(buf) != 0)
    return fault(f, QRY_PARSE_VALIDATION_ERROR,
                 "price must be at least 0 with at most 4 decimals");
  json_object_set_new(out, "price", json_string(buf));
  return true;
}

/* path = the /v1 route template with its one "{id}" replaced by id (ids
 * are UUIDs here, so it always fits); the templates are the routes of
 * docs/openapi.yaml, which tests/tools/check_docs.py checks. */
static void set_path(qry_parse_v1_t *v, const char *route, const char *id) {
  const char *slot = strstr(route, "{id}");
  if (!slot || !id) {
    snprintf(v->path, sizeof(v->path), "%s", route);
    return;
  }
  snprintf(v->path, sizeof(v->path), "%.*s%s%s", (int)(slot - route), route,
           id, slot + 4);
}

/* The catalog routes of /v1 for a Store or Product write: POST collection,
 * PATCH and DELETE (closes or discontinues) on item. */
static void catalog_route(qry_parse_v1_t *v, const char *collection,
                          const char *item, qry_parse_op_t op,
                          const char *id) {
  set_path(v, op == QRY_PARSE_CREATE ? collection : item, id);
  v->method = op == QRY_PARSE_CREATE   ? "POST"
              : op == QRY_PARSE_UPDATE ? "PATCH"
                                       : "DELETE";
  v->shape = op == QRY_PARSE_CREATE   ? QRY_PARSE_SHAPE_CREATED
             : op == QRY_PARSE_UPDATE ? QRY_PARSE_SHAPE_UPDATED
                                      : QRY_PARSE_SHAPE_DELETED;
}

/* ---- classes ---- */

static bool map_transaction(qry_parse_op_t op, const json_t *body,
                            qry_parse_v1_t *v, qry_parse_fault_t *f) {
  if (op != QRY_PARSE_CREATE)
    return fault(f, QRY_PARSE_OPERATION_FORBIDDEN,
                 "a Transaction cannot be changed or deleted: post another "
                 "one");
  static const char *const allowed[] = {"store", "product", "type",
                                        "quantity", "reason", "reference",
                                        NULL};
  if (!keys_ok(body, allowed, "Transaction", f))
    return false;
  bool absent;
  const char *store = pointer_id(body, "store", "Store", true, &absent, f);
  if (!store)
    return false;
  const char *product =
      pointer_id(body, "product", "Product", true, &absent, f);
  if (!product)
    return false;
  if (!json_object_get(body, "type") || !json_object_get(body, "quantity"))
    return fault(f, QRY_PARSE_VALIDATION_ERROR,
                 "type and quantity are required");
  json_t *out = json_pack("{s:s}", "product_id", product);
  if (!out || !copy_field(body, "type", out, "type", JSON_STRING, false, f) ||
      !copy_field(body, "quantity", out, "quantity", JSON_INTEGER, false, f) ||
      !copy_field(body, "reason", out, "reason", JSON_STRING, true, f) ||
      !copy_field(body, "reference", out, "reference", JSON_STRING, true, f)) {
    if (!out)
      fault(f, QRY_PARSE_INTERNAL_SERVER_ERROR, "out of memory");
    json_decref(out);
    return false;
  }
  set_path(v, "/v1/stores/{id}/transactions", store);
  v->method = "POST";
  v->body = out;
  v->shape = QRY_PARSE_SHAPE_TRANSACTION;
  return true;
}

static bool order_lines(const json_t *lines, json_t *out,
                        qry_parse_fault_t *f) {
  if (!json_is_array(lines))
    return fault(f, QRY_PARSE_INCORRECT_TYPE,
                 "lines must be an Array of {product, quantity}");
  json_t *arr = json_array();
  json_object_set_new(out, "lines", arr);
  size_t i;
  json_t *line;
  json_array_foreach(lines, i, line) {
    static const char *const allowed[] = {"product", "quantity", NULL};
    if (!json_is_object(line))
      return fault(f, QRY_PARSE_INCORRECT_TYPE,
                   "lines[%zu] must be an Object {product, quantity}", i);
    if (!keys_ok(line, allowed, "an order line", f))
      return false;
    bool absent;
    const char *product =
        pointer_id(line, "product", "Product", true, &absent, f);
    if (!product)
      return false;
    json_t *q = json_object_get(line, "quantity");
    if (!json_is_integer(q))
      return fault(f, QRY_PARSE_INCORRECT_TYPE,
                   "lines[%zu].quantity must be a Number (an integer)", i);
    json_array_append_new(arr, json_pack("{s:s, s:O}", "product_id", product,
                                         "quantity", q));
  }
  return true;
}

static bool map_order(qry_parse_op_t op, const char *id, const json_t *body,
                      qry_parse_v1_t *v, qry_parse_fault_t *f) {
  if (op == QRY_PARSE_DELETE)
    return fault(f, QRY_PARSE_OPERATION_FORBIDDEN,
                 "an Order is not deleted: cancel it with "
                 "{\"status\": \"cancelled\"}");
  if (op == QRY_PARSE_UPDATE) {
    static const char *const allowed[] = {"status", NULL};
    if (!id_ok(id, f) || !keys_ok(body, allowed, "Order", f))
      return false;
    const char *status = json_string_value(json_object_get(body, "status"));
    const char *route = NULL;
    if (status && strcmp(status, "fulfilled") == 0)
      route = "/v1/orders/{id}/fulfil";
    else if (status && strcmp(status, "cancelled") == 0)
      route = "/v1/orders/{id}/cancel";
    if (!route)
      return fault(f, QRY_PARSE_VALIDATION_ERROR,
                   "an Order changes only by {\"status\": \"fulfilled\"} or "
                   "{\"status\": \"cancelled\"}");
    set_path(v, route, id);
    v->method = "POST";
    v->body = NULL;
    v->shape = QRY_PARSE_SHAPE_UPDATED;
    return true;
  }
  static const char *const allowed[] = {"store", "lines", "reference", NULL};
  if (!keys_ok(body, allowed, "Order", f))
    return false;
  bool absent;
  const char *store = pointer_id(body, "store", "Store", true, &absent, f);
  if (!store)
    return false;
  json_t *out = json_object();
  if (!order_lines(json_object_get(body, "lines"), out, f) ||
      !copy_field(body, "reference", out, "reference", JSON_STRING, true, f)) {
    json_decref(out);
    return false;
  }
  set_path(v, "/v1/stores/{id}/orders", store);
  v->method = "POST";
  v->body = out;
  v->shape = QRY_PARSE_SHAPE_CREATED;
  return true;
}

static bool map_store(qry_parse_op_t op, const char *id, const json_t *body,
                      qry_parse_v1_t *v, qry_parse_fault_t *f) {
  if (op != QRY_PARSE_CREATE && !id_ok(id, f))
    return false;
  if (op == QRY_PARSE_DELETE) {
    catalog_route(v, "/v1/stores", "/v1/stores/{id}", op, id);
    return true;
  }
  static const char *const allowed[] = {"name", "location", "manager", NULL};
  if (!keys_ok(body, allowed, "Store", f))
    return false;
  json_t *out = json_object();
  bool absent;
  const char *manager = pointer_id(body, "manager", "_User", false, &absent, f);
  if (!manager && !absent) {
    json_decref(out);
    return false;
  }
  if (manager)
    json_object_set_new(out, "manager_id", json_string(manager));
  else if (json_object_get(body, "manager"))
    json_object_set_new(out, "manager_id", json_null());
  if (!copy_field(body, "name", out, "name", JSON_STRING, false, f) ||
      !copy_field(body, "location", out, "location", JSON_STRING, false, f)) {
    json_decref(out);
    return false;
  }
  catalog_route(v, "/v1/stores", "/v1/stores/{id}", op, id);
  v->body = out;
  return true;
}

static bool map_product(qry_parse_op_t op, const char *id, const json_t *body,
                        qry_parse_v1_t *v, qry_parse_fault_t *f) {
  if (op != QRY_PARSE_CREATE && !id_ok(id, f))
    return false;
  if (op == QRY_PARSE_DELETE) {
    catalog_route(v, "/v1/products", "/v1/products/{id}", op, id);
    return true;
  }
  static const char *const create_keys[] = {
      "sku", "name", "category", "price", "reorderLevel", NULL};
  if (!keys_ok(body, op == QRY_PARSE_CREATE ? create_keys : create_keys + 1,
               "Product", f))
    return false;
  json_t *out = json_object();
  if (!copy_field(body, "sku", out, "sku", JSON_STRING, false, f) ||
      !copy_field(body, "name", out, "name", JSON_STRING, false, f) ||
      !copy_field(body, "category", out, "category", JSON_STRING, true, f) ||
      !price_field(body, out, f) ||
      !copy_field(body, "reorderLevel", out, "reorder_level", JSON_INTEGER,
                  false, f)) {
    json_decref(out);
    return false;
  }
  catalog_route(v, "/v1/products", "/v1/products/{id}", op, id);
  v->body = out;
  return true;
}

#define INVENTORY_ONLY                                                 \
  "Inventory changes only through stock movements: a Transaction, or " \
  "{\"onHand\": {\"__op\": \"Increment\", \"amount\": N}} (an adjustment)"

static bool map_inventory(qry_parse_op_t op, const char *id,
                          const json_t *body, qry_parse_v1_t *v,
                          qry_parse_fault_t *f) {
  if (op != QRY_PARSE_UPDATE)
    return fault(f, QRY_PARSE_OPERATION_FORBIDDEN, INVENTORY_ONLY);
  json_t *inc = json_object_get(body, "onHand");
  const char *opname = json_string_value(json_object_get(inc, "__op"));
  json_t *amount = json_object_get(inc, "amount");
  static const char *const allowed[] = {"onHand", "reason", NULL};
  if (!opname || strcmp(opname, "Increment") != 0 ||
      json_object_size(inc) != 2)
    return fault(f, QRY_PARSE_OPERATION_FORBIDDEN, INVENTORY_ONLY);
  if (!keys_ok(body, allowed, "Inventory", f)) {
    f->code = QRY_PARSE_OPERATION_FORBIDDEN;
    return false;
  }
  if (!json_is_integer(amount))
    return fault(f, QRY_PARSE_INCORRECT_TYPE,
                 "amount must be a Number (an integer)");
  /* objectId is <storeId>_<productId>. */
  char store[SF_UUID_STR_LEN + 1], product[SF_UUID_STR_LEN + 1];
  const char *sep = id ? strchr(id, '_') : NULL;
  if (!sep || (size_t)(sep - id) != SF_UUID_STR_LEN ||
      strlen(sep + 1) != SF_UUID_STR_LEN)
    return fault(f, QRY_PARSE_OBJECT_NOT_FOUND, "Object not found.");
  memcpy(store, id, SF_UUID_STR_LEN);
  store[SF_UUID_STR_LEN] = '\0';
  memcpy(product, sep + 1, SF_UUID_STR_LEN + 1);
  if (!id_ok(store, f) || !id_ok(product, f))
    return false;
  json_t *reason = json_object_get(body, "reason");
  if (reason && !json_is_string(reason))
    return fault(f, QRY_PARSE_INCORRECT_TYPE, "reason must be a String");
  json_t *out = json_pack("{s:s, s:s, s:O, s:s}", "product_id", product,
                          "type", "adjustment", "quantity", amount, "reason",
                          reason ? json_string_value(reason)
                                 : DEFAULT_INCREMENT_REASON);
  if (!out)
    return fault(f, QRY_PARSE_INTERNAL_SERVER_ERROR, "no memory");
  set_path(v, "/v1/stores/{id}/transactions", store);
  v->method = "POST";
  v->body = out;
  v->shape = QRY_PARSE_SHAPE_INCREMENT;
  return true;
}

bool qry_parse_map_write(qry_parse_op_t op, const char *class_name,
                         const char *object_id, const json_t *body,
                         qry_parse_v1_t *v, qry_parse_fault_t *f) {
  memset(v, 0, sizeof(*v));
  if (!json_is_object(body))
    return fault(f, QRY_PARSE_INVALID_JSON, "the body must be a JSON object");
  if (op != QRY_PARSE_CREATE && op != QRY_PARSE_UPDATE &&
      op != QRY_PARSE_DELETE)
    return fault(f, QRY_PARSE_INTERNAL_SERVER_ERROR, "not a class write");
  if ((op == QRY_PARSE_CREATE) != (object_id == NULL))
    return fault(f, QRY_PARSE_MISSING_OBJECT_ID,
                 op == QRY_PARSE_CREATE ? "a new object has no objectId yet"
                                        : "objectId is required");
  const char *c = class_name ? class_name : "";
  if (strcmp(c, "Transaction") == 0)
    return map_transaction(op, body, v, f);
  if (strcmp(c, "Order") == 0)
    return map_order(op, object_id, body, v, f);
  if (strcmp(c, "Store") == 0)
    return map_store(op, object_id, body, v, f);
  if (strcmp(c, "Product") == 0)
    return map_product(op, object_id, body, v, f);
  if (strcmp(c, "Inventory") == 0)
    return map_inventory(op, object_id, body, v, f);
  if (strcmp(c, "_User") == 0)
    return fault(f, QRY_PARSE_OPERATION_FORBIDDEN,
                 "users sign up through /users; roles and stores are an "
                 "admin's, on /v1/users");
  return fault(f, QRY_PARSE_INVALID_CLASS_NAME, "unknown class %s", c);
}

/* ---- sign-in ---- */

bool qry_parse_map_signup(const json_t *body, qry_parse_v1_t *v,
                          qry_parse_fault_t *f) {
  memset(v, 0, sizeof(*v));
  if (!json_is_object(body))
    return fault(f, QRY_PARSE_INVALID_JSON, "the body must be a JSON object");
  static const char *const allowed[] = {"username", "password", "email",
                                        NULL};
  if (!keys_ok(body, allowed, "_User", f))
    return false;
  json_t *u = json_object_get(body, "username");
  json_t *p = json_object_get(body, "password");
  if (!u || json_is_null(u) || (json_is_string(u) && !json_string_length(u)))
    return fault(f, QRY_PARSE_USERNAME_MISSING, "bad or missing username");
  if (!p || json_is_null(p) || (json_is_string(p) && !json_string_length(p)))
    return fault(f, QRY_PARSE_PASSWORD_MISSING, "password is required");
  json_t *out = json_object();
  if (!copy_field(body, "username", out, "username", JSON_STRING, false, f) ||
      !copy_field(body, "email", out, "email", JSON_STRING, false, f) ||
      !copy_field(body, "password", out, "password", JSON_STRING, false, f)) {
    json_decref(out);
    return false;
  }
  v->method = "POST";
  set_path(v, "/v1/users", NULL);
  v->body = out;
  v->shape = QRY_PARSE_SHAPE_SIGNUP;
  return true;
}

bool qry_parse_map_login(const char *username, const char *password,
                         qry_parse_v1_t *v, qry_parse_fault_t *f) {
  memset(v, 0, sizeof(*v));
  if (!username || !*username)
    return fault(f, QRY_PARSE_USERNAME_MISSING, "username is required.");
  if (!password || !*password)
    return fault(f, QRY_PARSE_PASSWORD_MISSING, "password is required.");
  v->body = json_pack("{s:s, s:s}", "username", username, "password",
                      password);
  if (!v->body)
    return fault(f, QRY_PARSE_INTERNAL_SERVER_ERROR, "no memory");
  v->method = "POST";
  set_path(v, "/v1/sessions", NULL);
  v->shape = QRY_PARSE_SHAPE_LOGIN;
  return true;
}

void qry_parse_map_logout(qry_parse_v1_t *v) {
  memset(v, 0, sizeof(*v));
  v->method = "DELETE";
  set_path(v, "/v1/sessions/current", NULL);
  v->shape = QRY_PARSE_SHAPE_DELETED;
}

/* ---- answers ---- */

bool qry_parse_map_iso(const char *text, char out[32]) {
  int64_t us;
  if (!text || sf_json_parse_time(text, &us) != 0)
    return false;
  int64_t secs = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
  int ms = (int)((us - secs * 1000000) / 1000);
  time_t t = (time_t)secs;
  struct tm tm;
  if (!gmtime_r(&t, &tm))
    return false;
  char base[24];
  if (strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
    return false;
  snprintf(out, 32, "%s.%03dZ", base, ms);
  return true;
}

/* out[to] = Parse date of v1[from]; false when absent or bad. */
static bool set_iso(json_t *out, const char *to, const json_t *v1,
                    const char *from) {
  char iso[32];
  if (!qry_parse_map_iso(json_string_value(json_object_get(v1, from)), iso))
    return false;
  return json_object_set_new(out, to, json_string(iso)) == 0;
}

static void copy_if(json_t *out, const char *to, const json_t *v1,
                    const char *from) {
  json_t *v = json_object_get(v1, from);
  if (v)
    json_object_set(out, to, v);
}

static void stock_fields(json_t *out, const json_t *v1) {
  copy_if(out, "onHand", v1, "on_hand");
  copy_if(out, "reserved", v1, "reserved");
  copy_if(out, "available", v1, "available");
  copy_if(out, "version", v1, "version");
}

json_t *qry_parse_map_answer(qry_parse_shape_t shape, const json_t *v1,
                             const char *token, const char *now_iso,
                             int *status) {
  json_t *out = json_object();
  if (!out || !json_is_object(v1))
    goto fail;
  *status = 200;
  switch (shape) {
  case QRY_PARSE_SHAPE_TRANSACTION:
    copy_if(out, "objectId", v1, "transaction_id");
    if (!json_object_get(out, "objectId") ||
        !set_iso(out, "createdAt", v1, "created_at"))
      goto fail;
    copy_if(out, "type", v1, "type");
    copy_if(out, "quantity", v1, "quantity");
    copy_if(out, "delta", v1, "delta");
    stock_fields(out, v1);
    *status = 201;
    break;
  case QRY_PARSE_SHAPE_CREATED: {
    json_t *id = json_object_get(v1, "id");
    if (!id)
      id = json_object_get(v1, "order_id");
    if (!json_is_string(id) || !set_iso(out, "createdAt", v1, "created_at"))
      goto fail;
    json_object_set(out, "objectId", id);
    copy_if(out, "status", v1, "status");
    *status = 201;
    break;
  }
  case QRY_PARSE_SHAPE_UPDATED:
    if (!set_iso(out, "updatedAt", v1, "updated_at"))
      goto fail;
    copy_if(out, "status", v1, "status");
    break;
  case QRY_PARSE_SHAPE_INCREMENT:
    if (!set_iso(out, "updatedAt", v1, "created_at"))
      goto fail;
    stock_fields(out, v1);
    break;
  case QRY_PARSE_SHAPE_DELETED:
    break;
  case QRY_PARSE_SHAPE_SIGNUP:
  case QRY_PARSE_SHAPE_LOGIN: {
    json_t *user = json_object_get(v1, "user");
    if (!json_is_string(json_object_get(user, "id")) || !token)
      goto fail;
    copy_if(out, "objectId", user, "id");
    if (shape == QRY_PARSE_SHAPE_SIGNUP) {
      if (now_iso)
        json_object_set_new(out, "createdAt", json_string(now_iso));
      *status = 201;
    } else {
      copy_if(out, "username", user, "username");
      copy_if(out, "email", user, "email");
      copy_if(out, "role", user, "role");
      copy_if(out, "storeIds", user, "store_ids");
    }
    /* with the prefix the SDK takes as revocable (qry_parse.h) */
    if (json_object_set_new(out, "sessionToken",
                            qry_parse_client_token_json(token)))
      goto fail;
    break;
  }
  }
  return out;
fail:
  json_decref(out);
  return NULL;
}

/* ---- batch ---- */

bool qry_parse_map_batch_item(const json_t *item, qry_parse_op_t *op,
                              char *class_out, size_t class_cap, char *id_out,
                              size_t id_cap, json_t **body,
                              qry_parse_fault_t *f) {
  *body = NULL;
  const char *method = json_string_value(json_object_get(item, "method"));
  const char *path = json_string_value(json_object_get(item, "path"));
  if (!json_is_object(item) || !method || !path)
    return fault(f, QRY_PARSE_INVALID_JSON,
                 "a batch request is {method, path, body}");
  size_t plen = strlen(BATCH_PREFIX);
  if (strncmp(path, BATCH_PREFIX, plen) == 0 && path[plen] == '/')
    path += plen;
  if (strncmp(path, "/classes/", 9) != 0)
    return fault(f, QRY_PARSE_OPERATION_FORBIDDEN,
                 "a batch takes only writes to /classes/...");
  const char *cls = path + 9;
  const char *slash = strchr(cls, '/');
  size_t clen = slash ? (size_t)(slash - cls) : strlen(cls);
  const char *id = slash ? slash + 1 : NULL;
  if (clen == 0 || clen >= class_cap || (id && (!*id || strchr(id, '/'))) ||
      (id && strlen(id) >= id_cap))
    return fault(f, QRY_PARSE_INVALID_CLASS_NAME, "bad path %s", path);
  if (strcmp(method, "POST") == 0 && !id)
    *op = QRY_PARSE_CREATE;
  else if (strcmp(method, "PUT") == 0 && id)
    *op = QRY_PARSE_UPDATE;
  else if (strcmp(method, "DELETE") == 0 && id)
    *op = QRY_PARSE_DELETE;
  else
    return fault(f, QRY_PARSE_OPERATION_FORBIDDEN,
                 "a batch takes only POST /classes/{class}, PUT and DELETE "
                 "/classes/{class}/{objectId}");
  memcpy(class_out, cls, clen);
  class_out[clen] = '\0';
  if (id)
    snprintf(id_out, id_cap, "%s", id);
  else
    id_out[0] = '\0';
  json_t *b = json_object_get(item, "body");
  if (b && !json_is_object(b) && !json_is_null(b))
    return fault(f, QRY_PARSE_INVALID_JSON,
                 "the body of a batch request must be an object");
  *body = json_is_object(b) ? json_incref(b) : json_object();
  return *body != NULL;
}

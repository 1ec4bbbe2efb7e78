/* Unit tests of the pure half of the Parse facade's writes:
 * services/query/qry_parse_map.c (Parse write -> /v1 request, /v1 answer ->
 * Parse answer, /v1 problem -> Parse error, batch items) and
 * services/query/qry_parse_pos.c (the session -> positions map: merge,
 * bound, expiry). The sending itself is covered by
 * tests/integration/test_parse_write.py against the real services. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "qry_parse_map.h"
#include "qry_parse_pos.h"
#include "sf/err.h"

#define S1 "0195b7c2-7f3e-7a10-9c55-1f2d3e4a5b6c"
#define P1 "0195b7c2-8a11-7c22-8d33-2e3f4a5b6c7d"

static json_t *js(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (!j)
    fail_msg("bad test JSON: %s: %s", text, e.text);
  return j;
}

/* Maps a write that must succeed; checks method, path and body. */
static void expect_write(qry_parse_op_t op, const char *cls, const char *id,
                         const char *body, const char *method,
                         const char *path, const char *want_body,
                         qry_parse_shape_t shape) {
  json_t *b = js(body);
  qry_parse_v1_t v;
  qry_parse_fault_t f = {0};
  bool ok = qry_parse_map_write(op, cls, id, b, &v, &f);
  if (!ok)
    fail_msg("%s %s refused: %d %s", cls, body, f.code, f.message);
  assert_string_equal(v.method, method);
  assert_string_equal(v.path, path);
  assert_int_equal(v.shape, shape);
  if (want_body) {
    json_t *w = js(want_body);
    if (!json_equal(w, v.body)) {
      char *got = json_dumps(v.body, JSON_SORT_KEYS);
      fail_msg("%s %s: /v1 body %s, want %s", cls, body, got, want_body);
    }
    json_decref(w);
  } else {
    assert_null(v.body);
  }
  json_decref(v.body);
  json_decref(b);
}

/* Maps a write that must be refused with code (and status). */
static void expect_refused(qry_parse_op_t op, const char *cls, const char *id,
                           const char *body, int status, int code) {
  json_t *b = js(body);
  qry_parse_v1_t v;
  qry_parse_fault_t f = {0};
  bool ok = qry_parse_map_write(op, cls, id, b, &v, &f);
  if (ok)
    fail_msg("%s %s was accepted", cls, body);
  if (f.code != code || f.status != status)
    fail_msg("%s %s: got %d/%d (%s), want %d/%d", cls, body, f.status, f.code,
             f.message, status, code);
  assert_true(f.message[0] != '\0');
  json_decref(b);
}

#define PTR(c, id) "{\"__type\":\"Pointer\",\"className\":\"" c "\",\"objectId\":\"" id "\"}"

static void test_transaction(void **state) {
  (void)state;
  expect_write(QRY_PARSE_CREATE, "Transaction", NULL,
               "{\"store\":" PTR("Store", S1) ",\"product\":" PTR(
                   "Product", P1) ",\"type\":\"sale\",\"quantity\":3,"
                                  "\"reference\":\"till-7\",\"ACL\":{}}",
               "POST", "/v1/stores/" S1 "/transactions",
               "{\"product_id\":\"" P1 "\",\"type\":\"sale\",\"quantity\":3,"
               "\"reference\":\"till-7\"}",
               QRY_PARSE_SHAPE_TRANSACTION);
  /* Missing, wrong and unknown fields. */
  expect_refused(QRY_PARSE_CREATE, "Transaction", NULL,
                 "{\"product\":" PTR("Product", P1) ",\"type\":\"sale\","
                                                    "\"quantity\":1}",
                 400, QRY_PARSE_VALIDATION_ERROR);
  expect_refused(QRY_PARSE_CREATE, "Transaction", NULL,
                 "{\"store\":\"" S1 "\",\"product\":" PTR(
                     "Product", P1) ",\"type\":\"sale\",\"quantity\":1}",
                 400, QRY_PARSE_INCORRECT_TYPE);
  expect_refused(QRY_PARSE_CREATE, "Transaction", NULL,
                 "{\"store\":" PTR("Product", S1) ",\"product\":" PTR(
                     "Product", P1) ",\"type\":\"sale\",\"quantity\":1}",
                 400, QRY_PARSE_INCORRECT_TYPE);
  expect_refused(QRY_PARSE_CREATE, "Transaction", NULL,
                 "{\"store\":" PTR("Store", "nope/../x") ",\"product\":" PTR(
                     "Product", P1) ",\"type\":\"sale\",\"quantity\":1}",
                 404, QRY_PARSE_OBJECT_NOT_FOUND);
  expect_refused(QRY_PARSE_CREATE, "Transaction", NULL,
                 "{\"store\":" PTR("Store", S1) ",\"product\":" PTR(
                     "Product", P1) ",\"type\":\"sale\",\"quantity\":\"3\"}",
                 400, QRY_PARSE_INCORRECT_TYPE);
  expect_refused(QRY_PARSE_CREATE, "Transaction", NULL,
                 "{\"store\":" PTR("Store", S1) ",\"product\":" PTR(
                     "Product", P1) ",\"type\":\"sale\",\"quantity\":1,"
                                    "\"onHand\":5}",
                 400, QRY_PARSE_INVALID_KEY_NAME);
  expect_refused(QRY_PARSE_UPDATE, "Transaction", S1, "{\"quantity\":1}", 400,
                 QRY_PARSE_OPERATION_FORBIDDEN);
  expect_refused(QRY_PARSE_DELETE, "Transaction", S1, "{}", 400,
                 QRY_PARSE_OPERATION_FORBIDDEN);
}

static void test_inventory(void **state) {
  (void)state;
  expect_write(QRY_PARSE_UPDATE, "Inventory", S1 "_" P1,
               "{\"onHand\":{\"__op\":\"Increment\",\"amount\":-2}}", "POST",
               "/v1/stores/" S1 "/transactions",
               "{\"product_id\":\"" P1 "\",\"type\":\"adjustment\","
               "\"quantity\":-2,\"reason\":\"parse increment\"}",
               QRY_PARSE_SHAPE_INCREMENT);
  expect_write(QRY_PARSE_UPDATE, "Inventory", S1 "_" P1,
               "{\"onHand\":{\"__op\":\"Increment\",\"amount\":4},"
               "\"reason\":\"found\"}",
               "POST", "/v1/stores/" S1 "/transactions",
               "{\"product_id\":\"" P1 "\",\"type\":\"adjustment\","
               "\"quantity\":4,\"reason\":\"found\"}",
               QRY_PARSE_SHAPE_INCREMENT);
  /* Every other Inventory write: 400 code 119. */
  const char *bodies[] = {
      "{\"onHand\":5}",
      "{\"onHand\":{\"__op\":\"Add\",\"objects\":[1]}}",
      "{\"onHand\":{\"__op\":\"Increment\",\"amount\":1},\"reserved\":0}",
      "{\"reserved\":{\"__op\":\"Increment\",\"amount\":1}}",
      "{}",
  };
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
    expect_refused(QRY_PARSE_UPDATE, "Inventory", S1 "_" P1, bodies[i], 400,
                   QRY_PARSE_OPERATION_FORBIDDEN);
  expect_refused(QRY_PARSE_CREATE, "Inventory", NULL, "{\"onHand\":1}", 400,
                 QRY_PARSE_OPERATION_FORBIDDEN);
  expect_refused(QRY_PARSE_DELETE, "Inventory", S1 "_" P1, "{}", 400,
                 QRY_PARSE_OPERATION_FORBIDDEN);
  expect_refused(QRY_PARSE_UPDATE, "Inventory", S1 "_" P1,
                 "{\"onHand\":{\"__op\":\"Increment\",\"amount\":1.5}}", 400,
                 QRY_PARSE_INCORRECT_TYPE);
  expect_refused(QRY_PARSE_UPDATE, "Inventory", S1,
                 "{\"onHand\":{\"__op\":\"Increment\",\"amount\":1}}", 404,
                 QRY_PARSE_OBJECT_NOT_FOUND);
  expect_refused(QRY_PARSE_UPDATE, "Inventory", S1 "_x",
                 "{\"onHand\":{\"__op\":\"Increment\",\"amount\":1}}", 404,
                 QRY_PARSE_OBJECT_NOT_FOUND);
}

static void test_order(void **state) {
  (void)state;
  expect_write(QRY_PARSE_CREATE, "Order", NULL,
               "{\"store\":" PTR("Store", S1) ",\"lines\":[{\"product\":" PTR(
                   "Product", P1) ",\"quantity\":2}],\"reference\":\"w-1\"}",
               "POST", "/v1/stores/" S1 "/orders",
               "{\"lines\":[{\"product_id\":\"" P1 "\",\"quantity\":2}],"
               "\"reference\":\"w-1\"}",
               QRY_PARSE_SHAPE_CREATED);
  expect_write(QRY_PARSE_UPDATE, "Order", S1, "{\"status\":\"fulfilled\"}",
               "POST", "/v1/orders/" S1 "/fulfil", NULL,
               QRY_PARSE_SHAPE_UPDATED);
  expect_write(QRY_PARSE_UPDATE, "Order", S1, "{\"status\":\"cancelled\"}",
               "POST", "/v1/orders/" S1 "/cancel", NULL,
               QRY_PARSE_SHAPE_UPDATED);
  expect_refused(QRY_PARSE_UPDATE, "Order", S1, "{\"status\":\"placed\"}",
                 400, QRY_PARSE_VALIDATION_ERROR);
  expect_refused(QRY_PARSE_UPDATE, "Order", S1, "{\"lines\":[]}", 400,
                 QRY_PARSE_INVALID_KEY_NAME);
  expect_refused(QRY_PARSE_DELETE, "Order", S1, "{}", 400,
                 QRY_PARSE_OPERATION_FORBIDDEN);
  expect_refused(QRY_PARSE_CREATE, "Order", NULL,
                 "{\"store\":" PTR("Store", S1) ",\"lines\":{}}", 400,
                 QRY_PARSE_INCORRECT_TYPE);
  expect_refused(QRY_PARSE_CREATE, "Order", NULL,
                 "{\"store\":" PTR("Store", S1) ",\"lines\":[{\"product\":" PTR(
                     "Product", P1) ",\"quantity\":\"2\"}]}",
                 400, QRY_PARSE_INCORRECT_TYPE);
}

static void test_catalog(void **state) {
  (void)state;
  expect_write(QRY_PARSE_CREATE, "Store", NULL,
               "{\"name\":\"Harbour\",\"location\":\"Bristol\"}", "POST",
               "/v1/stores", "{\"name\":\"Harbour\",\"location\":\"Bristol\"}",
               QRY_PARSE_SHAPE_CREATED);
  expect_write(QRY_PARSE_UPDATE, "Store", S1,
               "{\"manager\":" PTR("_User", P1) "}", "PATCH", "/v1/stores/" S1,
               "{\"manager_id\":\"" P1 "\"}", QRY_PARSE_SHAPE_UPDATED);
  expect_write(QRY_PARSE_DELETE, "Store", S1, "{}", "DELETE", "/v1/stores/" S1,
               NULL, QRY_PARSE_SHAPE_DELETED);
  expect_write(QRY_PARSE_CREATE, "Product", NULL,
               "{\"sku\":\"MUG\",\"name\":\"Mug\",\"price\":7.5,"
               "\"reorderLevel\":5}",
               "POST", "/v1/products",
               "{\"sku\":\"MUG\",\"name\":\"Mug\",\"price\":\"7.5\","
               "\"reorder_level\":5}",
               QRY_PARSE_SHAPE_CREATED);
  expect_write(QRY_PARSE_UPDATE, "Product", P1, "{\"price\":\"19.99\"}",
               "PATCH", "/v1/products/" P1, "{\"price\":\"19.99\"}",
               QRY_PARSE_SHAPE_UPDATED);
  expect_write(QRY_PARSE_DELETE, "Product", P1, "{}", "DELETE",
               "/v1/products/" P1, NULL, QRY_PARSE_SHAPE_DELETED);
  expect_refused(QRY_PARSE_UPDATE, "Product", P1, "{\"sku\":\"X\"}", 400,
                 QRY_PARSE_INVALID_KEY_NAME);
  expect_refused(QRY_PARSE_CREATE, "Product", NULL,
                 "{\"sku\":\"X\",\"name\":\"n\",\"price\":-1}", 400,
                 QRY_PARSE_VALIDATION_ERROR);
  expect_refused(QRY_PARSE_CREATE, "Product", NULL,
                 "{\"sku\":\"X\",\"name\":\"n\",\"price\":true}", 400,
                 QRY_PARSE_INCORRECT_TYPE);
  expect_refused(QRY_PARSE_UPDATE, "Product", "not-a-uuid", "{}", 404,
                 QRY_PARSE_OBJECT_NOT_FOUND);
  expect_refused(QRY_PARSE_UPDATE, "Store", S1, "{\"name\":3}", 400,
                 QRY_PARSE_INCORRECT_TYPE);
  expect_refused(QRY_PARSE_CREATE, "Wombat", NULL, "{}", 400,
                 QRY_PARSE_INVALID_CLASS_NAME);
  expect_refused(QRY_PARSE_CREATE, "_User", NULL, "{}", 400,
                 QRY_PARSE_OPERATION_FORBIDDEN);
  expect_refused(QRY_PARSE_UPDATE, "Store", NULL, "{}", 400,
                 QRY_PARSE_MISSING_OBJECT_ID);
  /* A body that is not an object. */
  json_t *arr = json_array();
  qry_parse_v1_t v;
  qry_parse_fault_t f;
  assert_false(qry_parse_map_write(QRY_PARSE_CREATE, "Store", NULL, arr, &v,
                                   &f));
  assert_int_equal(f.code, QRY_PARSE_INVALID_JSON);
  json_decref(arr);
}

static void test_signin(void **state) {
  (void)state;
  qry_parse_v1_t v;
  qry_parse_fault_t f;
  json_t *b = js("{\"username\":\"ana\",\"password\":\"secret123\","
                 "\"email\":\"a@x.io\"}");
  assert_true(qry_parse_map_signup(b, &v, &f));
  assert_string_equal(v.path, "/v1/users");
  json_t *want =
      js("{\"username\":\"ana\",\"password\":\"secret123\",\"email\":\"a@x.io\"}");
  assert_true(json_equal(want, v.body));
  json_decref(want);
  json_decref(v.body);
  json_decref(b);
  const struct {
    const char *body;
    int code;
  } bad[] = {
      {"{\"password\":\"secret123\"}", QRY_PARSE_USERNAME_MISSING},
      {"{\"username\":\"\",\"password\":\"secret123\"}",
       QRY_PARSE_USERNAME_MISSING},
      {"{\"username\":\"ana\"}", QRY_PARSE_PASSWORD_MISSING},
      {"{\"username\":7,\"password\":\"secret123\"}", QRY_PARSE_INCORRECT_TYPE},
      {"{\"username\":\"ana\",\"password\":\"secret123\",\"role\":\"admin\"}",
       QRY_PARSE_INVALID_KEY_NAME},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    b = js(bad[i].body);
    assert_false(qry_parse_map_signup(b, &v, &f));
    if (f.code != bad[i].code)
      fail_msg("sign-up %s: code %d, want %d", bad[i].body, f.code,
               bad[i].code);
    json_decref(b);
  }
  assert_true(qry_parse_map_login("ana", "pw", &v, &f));
  assert_string_equal(v.path, "/v1/sessions");
  assert_string_equal(json_string_value(json_object_get(v.body, "password")),
                      "pw");
  json_decref(v.body);
  qry_parse_map_logout(&v);
  assert_string_equal(v.method, "DELETE");
  assert_string_equal(v.path, "/v1/sessions/current");
  assert_null(v.body);
  assert_int_equal(v.shape, QRY_PARSE_SHAPE_DELETED);
  assert_false(qry_parse_map_login(NULL, "pw", &v, &f));
  assert_int_equal(f.code, QRY_PARSE_USERNAME_MISSING);
  assert_false(qry_parse_map_login("ana", "", &v, &f));
  assert_int_equal(f.code, QRY_PARSE_PASSWORD_MISSING);
}

static void test_problems(void **state) {
  (void)state;
  const struct {
    int status;
    const char *code;
    bool login;
    int want_status, want_code;
  } cases[] = {
      {409, "insufficient_stock", false, 400, 142},
      {409, "invalid_state", false, 400, 142},
      {422, "validation_failed", false, 400, 142},
      {409, "store_closed", false, 400, 142},
      {404, "not_found", false, 404, 101},
      {403, "forbidden", false, 400, 119},
      {401, "unauthorized", false, 400, 209},
      {401, "unauthorized", true, 404, 101},
      {409, "username_taken", false, 400, 202},
      {409, "duplicate_sku", false, 400, 137},
      {422, "idempotency_key_reused", false, 400, 159},
      {503, "unavailable", false, 503, 100},
      {409, "idempotency_key_in_flight", false, 503, 100},
      {413, "payload_too_large", false, 400, 116},
      {429, "too_many_requests", true, 429, 155},
      {500, "internal", false, 500, 1},
      {421, "wrong_instance", false, 500, 1},
      {409, "last_admin", false, 400, 142},
      {403, "account_disabled", true, 400, 119},
      {400, "malformed_json", false, 400, 107},
      /* Unknown codes and no code: by status. */
      {409, "something_new", false, 400, 142},
      {502, NULL, false, 500, 1},
      {503, NULL, false, 503, 100},
      {404, NULL, false, 404, 101},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    qry_parse_fault_t f;
    qry_parse_map_problem(cases[i].status, cases[i].code, "the detail",
                          cases[i].login, &f);
    if (f.status != cases[i].want_status || f.code != cases[i].want_code)
      fail_msg("%d %s: got %d/%d, want %d/%d", cases[i].status,
               cases[i].code ? cases[i].code : "(none)", f.status, f.code,
               cases[i].want_status, cases[i].want_code);
  }
  qry_parse_fault_t f;
  qry_parse_map_problem(401, "unauthorized", "x", true, &f);
  assert_string_equal(f.message, "Invalid username/password.");
  qry_parse_map_problem(409, "insufficient_stock", "sale of 8 of 7", false,
                        &f);
  assert_string_equal(f.message, "sale of 8 of 7");
}

static void test_answers(void **state) {
  (void)state;
  int status = 0;
  json_t *v1 = js("{\"transaction_id\":\"" P1 "\",\"store_id\":\"" S1 "\","
                  "\"type\":\"sale\",\"quantity\":3,\"delta\":-3,"
                  "\"on_hand\":7,\"reserved\":0,\"available\":7,\"version\":5,"
                  "\"created_at\":\"2025-03-14T09:27:01.112233Z\","
                  "\"position\":\"stock-3-1234\"}");
  json_t *a = qry_parse_map_answer(QRY_PARSE_SHAPE_TRANSACTION, v1, NULL, NULL,
                                   &status);
  assert_non_null(a);
  assert_int_equal(status, 201);
  json_t *want = js("{\"objectId\":\"" P1 "\","
                    "\"createdAt\":\"2025-03-14T09:27:01.112Z\","
                    "\"type\":\"sale\",\"quantity\":3,\"delta\":-3,"
                    "\"onHand\":7,\"reserved\":0,\"available\":7,"
                    "\"version\":5}");
  assert_true(json_equal(want, a));
  json_decref(want);
  json_decref(a);
  a = qry_parse_map_answer(QRY_PARSE_SHAPE_INCREMENT, v1, NULL, NULL, &status);
  assert_int_equal(status, 200);
  assert_string_equal(json_string_value(json_object_get(a, "updatedAt")),
                      "2025-03-14T09:27:01.112Z");
  assert_int_equal(json_integer_value(json_object_get(a, "onHand")), 7);
  json_decref(a);
  /* A created answer without the fields needed is not made up. */
  assert_null(
      qry_parse_map_answer(QRY_PARSE_SHAPE_CREATED, v1, NULL, NULL, &status));
  json_decref(v1);

  v1 = js("{\"order_id\":\"" P1 "\",\"status\":\"placed\","
          "\"created_at\":\"2025-03-14T09:29:00.5Z\"}");
  a = qry_parse_map_answer(QRY_PARSE_SHAPE_CREATED, v1, NULL, NULL, &status);
  want = js("{\"objectId\":\"" P1 "\",\"createdAt\":"
            "\"2025-03-14T09:29:00.500Z\",\"status\":\"placed\"}");
  assert_true(json_equal(want, a));
  assert_int_equal(status, 201);
  json_decref(want);
  json_decref(a);
  json_decref(v1);

  v1 = js("{\"token\":\"tok\",\"user\":{\"id\":\"" P1 "\",\"username\":"
          "\"ana\",\"email\":\"a@x.io\",\"role\":\"viewer\","
          "\"store_ids\":[]}}");
  a = qry_parse_map_answer(QRY_PARSE_SHAPE_LOGIN, v1, "tok", NULL, &status);
  want = js("{\"objectId\":\"" P1 "\",\"username\":\"ana\",\"email\":"
            "\"a@x.io\",\"role\":\"viewer\",\"storeIds\":[],"
            "\"sessionToken\":\"tok\"}");
  assert_true(json_equal(want, a));
  assert_int_equal(status, 200);
  json_decref(want);
  json_decref(a);
  a = qry_parse_map_answer(QRY_PARSE_SHAPE_SIGNUP, v1, "tok",
                           "2026-01-01T00:00:00.000Z", &status);
  want = js("{\"objectId\":\"" P1 "\",\"createdAt\":"
            "\"2026-01-01T00:00:00.000Z\",\"sessionToken\":\"tok\"}");
  assert_true(json_equal(want, a));
  assert_int_equal(status, 201);
  json_decref(want);
  json_decref(a);
  assert_null(
      qry_parse_map_answer(QRY_PARSE_SHAPE_LOGIN, v1, NULL, NULL, &status));
  json_decref(v1);

  char iso[32];
  assert_true(qry_parse_map_iso("2025-03-14T09:26:53Z", iso));
  assert_string_equal(iso, "2025-03-14T09:26:53.000Z");
  assert_false(qry_parse_map_iso("yesterday", iso));
}

static void test_batch_items(void **state) {
  (void)state;
  const struct {
    const char *item;
    bool ok;
    qry_parse_op_t op;
    const char *cls, *id;
    int code;
  } cases[] = {
      {"{\"method\":\"POST\",\"path\":\"/parse/classes/Transaction\","
       "\"body\":{}}",
       true, QRY_PARSE_CREATE, "Transaction", "", 0},
      {"{\"method\":\"PUT\",\"path\":\"/classes/Order/" S1 "\"}", true,
       QRY_PARSE_UPDATE, "Order", S1, 0},
      {"{\"method\":\"DELETE\",\"path\":\"/parse/classes/Store/" S1 "\"}",
       true, QRY_PARSE_DELETE, "Store", S1, 0},
      {"{\"method\":\"GET\",\"path\":\"/classes/Store\"}", false, 0, NULL,
       NULL, QRY_PARSE_OPERATION_FORBIDDEN},
      {"{\"method\":\"POST\",\"path\":\"/users\"}", false, 0, NULL, NULL,
       QRY_PARSE_OPERATION_FORBIDDEN},
      {"{\"method\":\"POST\",\"path\":\"/parsex/classes/Store\"}", false, 0,
       NULL, NULL, QRY_PARSE_OPERATION_FORBIDDEN},
      {"{\"method\":\"PUT\",\"path\":\"/classes/Store\"}", false, 0, NULL,
       NULL, QRY_PARSE_OPERATION_FORBIDDEN},
      {"{\"method\":\"PUT\",\"path\":\"/classes/Store/a/b\"}", false, 0, NULL,
       NULL, QRY_PARSE_INVALID_CLASS_NAME},
      {"{\"path\":\"/classes/Store\"}", false, 0, NULL, NULL,
       QRY_PARSE_INVALID_JSON},
      {"{\"method\":\"POST\",\"path\":\"/classes/Store\",\"body\":[1]}", false,
       0, NULL, NULL, QRY_PARSE_INVALID_JSON},
      {"[1]", false, 0, NULL, NULL, QRY_PARSE_INVALID_JSON},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *item = js(cases[i].item);
    qry_parse_op_t op;
    char cls[64], id[128];
    json_t *body = NULL;
    qry_parse_fault_t f = {0};
    bool ok = qry_parse_map_batch_item(item, &op, cls, sizeof(cls), id,
                                       sizeof(id), &body, &f);
    if (ok != cases[i].ok)
      fail_msg("batch item %s: ok=%d (%s)", cases[i].item, ok, f.message);
    if (ok) {
      assert_int_equal(op, cases[i].op);
      assert_string_equal(cls, cases[i].cls);
      assert_string_equal(id, cases[i].id);
      assert_true(json_is_object(body));
    } else {
      assert_int_equal(f.code, cases[i].code);
    }
    json_decref(body);
    json_decref(item);
  }
}

static void test_pos_merge(void **state) {
  (void)state;
  char out[512];
  assert_int_equal(qry_parse_pos_merge("", "stock-3-10", out, sizeof(out)), 0);
  assert_string_equal(out, "stock-3-10");
  /* Highest offset per partition; the most recently merged last. */
  assert_int_equal(qry_parse_pos_merge("stock-3-10,catalog-0-5",
                                       "stock-3-7, stock-1-2", out,
                                       sizeof(out)),
                   0);
  assert_string_equal(out, "catalog-0-5,stock-3-10,stock-1-2");
  assert_int_equal(
      qry_parse_pos_merge("stock-3-10", "stock-3-11", out, sizeof(out)), 0);
  assert_string_equal(out, "stock-3-11");
  /* Garbage in the new position is ignored, none at all refused. */
  assert_int_equal(
      qry_parse_pos_merge("stock-3-10", "x,stock-2-1", out, sizeof(out)), 0);
  assert_string_equal(out, "stock-3-10,stock-2-1");
  assert_int_equal(
      qry_parse_pos_merge("stock-3-10", "nope", out, sizeof(out)), SF_EINVAL);
  assert_int_equal(
      qry_parse_pos_merge("stock-3-10", "stock--1-2", out, sizeof(out)),
      SF_EINVAL);
  assert_int_equal(qry_parse_pos_merge("", "stock-3-10", out, 4), SF_ETOOBIG);
  /* At most 32 tokens: the oldest goes. */
  char list[2048] = "";
  for (int p = 0; p < 40; p++) {
    char tok[32];
    snprintf(tok, sizeof(tok), "stock-%d-1", p);
    assert_int_equal(qry_parse_pos_merge(list, tok, out, sizeof(out) < 2048 ? sizeof(out) : 2048),
                     0);
    snprintf(list, sizeof(list), "%s", out);
  }
  int commas = 0;
  for (const char *c = list; *c; c++)
    commas += *c == ',';
  assert_int_equal(commas, QRY_PARSE_POS_MAX_TOKENS - 1);
  assert_non_null(strstr(list, "stock-39-1"));
  assert_null(strstr(list, "stock-7-1,"));
  assert_true(strncmp(list, "stock-8-1,", 10) == 0);
}

static void test_pos_map(void **state) {
  (void)state;
  qry_parse_pos_t *m = NULL;
  assert_int_equal(qry_parse_pos_new(&m, 0, 10), SF_EINVAL);
  assert_int_equal(qry_parse_pos_new(&m, 3, 1000), 0);
  assert_null(qry_parse_pos_get(m, "a", 0));
  assert_int_equal(qry_parse_pos_put(m, "a", "stock-1-5", 100), 0);
  assert_int_equal(qry_parse_pos_put(m, "a", "catalog-0-2", 200), 0);
  assert_string_equal(qry_parse_pos_get(m, "a", 300),
                      "stock-1-5,catalog-0-2");
  assert_int_equal(qry_parse_pos_put(m, "", "stock-1-5", 100), SF_EINVAL);
  assert_int_equal(qry_parse_pos_put(m, "b", "garbage", 100), SF_EINVAL);
  assert_null(qry_parse_pos_get(m, "b", 300));
  /* Expiry counts from the last write. */
  assert_non_null(qry_parse_pos_get(m, "a", 1199));
  assert_null(qry_parse_pos_get(m, "a", 1200));
  assert_int_equal(qry_parse_pos_size(m), 0);
  /* Bound: the session written longest ago is forgotten. */
  assert_int_equal(qry_parse_pos_put(m, "s1", "stock-0-1", 2000), 0);
  assert_int_equal(qry_parse_pos_put(m, "s2", "stock-0-2", 2001), 0);
  assert_int_equal(qry_parse_pos_put(m, "s3", "stock-0-3", 2002), 0);
  assert_int_equal(qry_parse_pos_put(m, "s1", "stock-0-4", 2003), 0);
  assert_int_equal(qry_parse_pos_put(m, "s4", "stock-0-5", 2004), 0);
  assert_int_equal(qry_parse_pos_size(m), 3);
  assert_null(qry_parse_pos_get(m, "s2", 2005));
  assert_string_equal(qry_parse_pos_get(m, "s1", 2005), "stock-0-4");
  assert_string_equal(qry_parse_pos_get(m, "s3", 2005), "stock-0-3");
  assert_string_equal(qry_parse_pos_get(m, "s4", 2005), "stock-0-5");
  /* A write drops what expired before it. */
  assert_int_equal(qry_parse_pos_put(m, "s5", "stock-0-6", 3004), 0);
  assert_int_equal(qry_parse_pos_size(m), 1);
  qry_parse_pos_destroy(m);
  /* Many sessions in a small map: no leak, no growth. */
  assert_int_equal(qry_parse_pos_new(&m, 16, 60000), 0);
  for (int i = 0; i < 1000; i++) {
    char s[32];
    snprintf(s, sizeof(s), "session-%d", i);
    assert_int_equal(qry_parse_pos_put(m, s, "stock-2-9", (uint64_t)i), 0);
  }
  assert_int_equal(qry_parse_pos_size(m), 16);
  assert_non_null(qry_parse_pos_get(m, "session-999", 1000));
  assert_null(qry_parse_pos_get(m, "session-983", 1000));
  qry_parse_pos_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transaction),
      cmocka_unit_test(test_inventory),
      cmocka_unit_test(test_order),
      cmocka_unit_test(test_catalog),
      cmocka_unit_test(test_signin),
      cmocka_unit_test(test_problems),
      cmocka_unit_test(test_answers),
      cmocka_unit_test(test_batch_items),
      cmocka_unit_test(test_pos_merge),
      cmocka_unit_test(test_pos_map),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

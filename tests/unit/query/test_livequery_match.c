/* Unit tests for services/query/qry_livequery_match.c: the Parse LiveQuery
 * client messages, the subscription query and its where, matching, the
 * create / update / enter / leave decision, and the object in Parse's
 * shape. ASan/LSan check that refused inputs leak nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_livequery_match.h"
#include "qry_parse.h"
#include "sf/err.h"

#define S1 "0190f3a1-0000-7000-8000-000000000001"
#define S2 "0190f3a1-0000-7000-8000-000000000002"
#define P1 "0190f3a1-0000-7000-8000-00000000000a"
#define P2 "0190f3a1-0000-7000-8000-00000000000b"

static qry_lq_row_t row(const char *store, const char *product, int64_t on_hand,
                        int64_t reserved, int64_t version) {
  qry_lq_row_t r;
  memset(&r, 0, sizeof(r));
  strcpy(r.store_id, store);
  strcpy(r.product_id, product);
  r.on_hand = on_hand;
  r.reserved = reserved;
  r.version = version;
  return r;
}

/* Parses query text; fails the test on a refusal. */
static qry_lq_query_t *query(const char *text) {
  json_t *j = json_loads(text, 0, NULL);
  assert_non_null(j);
  qry_lq_query_t *q = NULL;
  int code = 0;
  char msg[160] = "";
  int rc = qry_lq_query_parse(j, &q, &code, msg, sizeof(msg));
  json_decref(j);
  if (rc != 0)
    fail_msg("query %s refused: %d %s", text, code, msg);
  return q;
}

/* The Parse code a query text is refused with. */
static int refused(const char *text) {
  json_t *j = json_loads(text, 0, NULL);
  assert_non_null(j);
  qry_lq_query_t *q = NULL;
  int code = 0;
  char msg[160] = "";
  int rc = qry_lq_query_parse(j, &q, &code, msg, sizeof(msg));
  json_decref(j);
  assert_int_equal(rc, SF_EINVAL);
  assert_null(q);
  assert_true(msg[0] != '\0');
  return code;
}

static bool matches(const char *text, qry_lq_row_t r) {
  qry_lq_query_t *q = query(text);
  bool m = qry_lq_match(q, &r);
  qry_lq_query_free(q);
  return m;
}

#define Q(where) "{\"className\":\"Inventory\",\"where\":" where "}"
#define PTR(cls, id)                                                     \
  "{\"__type\":\"Pointer\",\"className\":\"" cls "\",\"objectId\":\"" id \
  "\"}"

static void test_match_pointers_and_ids(void **state) {
  (void)state;
  qry_lq_row_t a = row(S1, P1, 5, 0, 1), b = row(S2, P2, 5, 0, 1);
  assert_true(matches(Q("{}"), a));
  assert_true(matches("{\"className\":\"Inventory\"}", a)); /* no where */
  assert_true(matches(Q("{\"store\":" PTR("Store", S1) "}"), a));
  assert_false(matches(Q("{\"store\":" PTR("Store", S1) "}"), b));
  assert_true(matches(Q("{\"store\":\"" S1 "\"}"), a)); /* id as string */
  assert_true(matches(Q("{\"product\":{\"$in\":[" PTR("Product", P1) "," PTR("Product", P2) "]}}"),
                      b));
  assert_false(matches(Q("{\"product\":{\"$in\":[]}}"), a));
  assert_true(matches(Q("{\"product\":{\"$nin\":[" PTR("Product", P2) "]}}"),
                      a));
  assert_false(matches(Q("{\"store\":{\"$ne\":" PTR("Store", S1) "}}"), a));
  assert_true(matches(Q("{\"objectId\":\"" S1 "_" P1 "\"}"), a));
  assert_false(matches(Q("{\"objectId\":\"" S1 "_" P2 "\"}"), a));
  assert_false(matches(Q("{\"objectId\":\"" S1 "\"}"), a));
  /* ids compare case-insensitively, as PostgreSQL's uuid does */
  assert_true(matches(
      Q("{\"store\":\"0190F3A1-0000-7000-8000-000000000001\"}"), a));
  /* several keys are ANDed */
  assert_false(matches(Q("{\"store\":\"" S1 "\",\"product\":\"" P2 "\"}"), a));
}

static void test_match_numbers(void **state) {
  (void)state;
  qry_lq_row_t r = row(S1, P1, 10, 3, 4); /* available 7 */
  assert_true(matches(Q("{\"onHand\":10}"), r));
  assert_false(matches(Q("{\"onHand\":9}"), r));
  assert_true(matches(Q("{\"onHand\":{\"$gt\":9,\"$lte\":10}}"), r));
  assert_false(matches(Q("{\"onHand\":{\"$gt\":10}}"), r));
  assert_true(matches(Q("{\"onHand\":{\"$gte\":10}}"), r));
  assert_false(matches(Q("{\"onHand\":{\"$lt\":10}}"), r));
  assert_true(matches(Q("{\"reserved\":{\"$ne\":0}}"), r));
  assert_true(matches(Q("{\"available\":7}"), r));
  assert_true(matches(Q("{\"available\":{\"$in\":[1,7]}}"), r));
  assert_false(matches(Q("{\"available\":{\"$nin\":[7]}}"), r));
  assert_true(matches(Q("{\"version\":{\"$eq\":4}}"), r));
  assert_false(matches(Q("{\"onHand\":{\"$gt\":5},\"reserved\":0}"), r));
}

static void test_refusals(void **state) {
  (void)state;
  assert_int_equal(refused("{\"className\":\"Store\"}"),
                   QRY_PARSE_OPERATION_FORBIDDEN);
  assert_int_equal(refused("{\"where\":{}}"), QRY_LQ_ERR_BAD_REQUEST);
  assert_int_equal(refused("[1]"), QRY_LQ_ERR_BAD_REQUEST);
  assert_int_equal(refused(Q("[]")), QRY_PARSE_INVALID_QUERY);
  assert_int_equal(refused(Q("{\"$or\":[]}")), QRY_PARSE_INVALID_QUERY);
  assert_int_equal(refused(Q("{\"onHand\":{\"$regex\":\"1\"}}")),
                   QRY_PARSE_INVALID_QUERY);
  assert_int_equal(refused(Q("{\"onHand\":{\"$exists\":true}}")),
                   QRY_PARSE_INVALID_QUERY);
  /* ordering operators are for numbers */
  assert_int_equal(refused(Q("{\"store\":{\"$lt\":\"" S1 "\"}}")),
                   QRY_PARSE_INVALID_QUERY);
  assert_int_equal(refused(Q("{\"colour\":\"red\"}")),
                   QRY_PARSE_INVALID_KEY_NAME);
  assert_int_equal(refused(Q("{\"onHand\":\"ten\"}")),
                   QRY_PARSE_INCORRECT_TYPE);
  assert_int_equal(refused(Q("{\"onHand\":1.5}")), QRY_PARSE_INCORRECT_TYPE);
  assert_int_equal(refused(Q("{\"onHand\":{\"$in\":5}}")),
                   QRY_PARSE_INCORRECT_TYPE);
  assert_int_equal(refused(Q("{\"onHand\":{\"$in\":[1,\"x\"]}}")),
                   QRY_PARSE_INCORRECT_TYPE);
  /* a pointer of the wrong class, or not a pointer */
  assert_int_equal(refused(Q("{\"store\":" PTR("Product", S1) "}")),
                   QRY_PARSE_INCORRECT_TYPE);
  assert_int_equal(refused(Q("{\"store\":{\"__type\":\"Date\"}}")),
                   QRY_PARSE_INCORRECT_TYPE);
  assert_int_equal(refused(Q("{\"store\":7}")), QRY_PARSE_INCORRECT_TYPE);
  assert_int_equal(
      refused("{\"className\":\"Inventory\",\"keys\":\"onHand\"}"),
      QRY_PARSE_INVALID_QUERY);
  assert_int_equal(refused("{\"className\":\"Inventory\",\"keys\":[1]}"),
                   QRY_PARSE_INVALID_QUERY);
}

static void test_classify(void **state) {
  (void)state;
  qry_lq_query_t *q = query(Q("{\"onHand\":{\"$gte\":5}}"));
  qry_lq_row_t lo = row(S1, P1, 2, 0, 2), hi = row(S1, P1, 8, 0, 3),
               hi2 = row(S1, P1, 9, 0, 4);
  assert_int_equal(qry_lq_classify(q, NULL, &hi), QRY_LQ_CREATE);
  assert_int_equal(qry_lq_classify(q, NULL, &lo), QRY_LQ_NONE);
  assert_int_equal(qry_lq_classify(q, &hi, &hi2), QRY_LQ_UPDATE);
  assert_int_equal(qry_lq_classify(q, &hi, &lo), QRY_LQ_LEAVE);
  assert_int_equal(qry_lq_classify(q, &lo, &hi), QRY_LQ_ENTER);
  assert_int_equal(qry_lq_classify(q, &lo, &lo), QRY_LQ_NONE);
  assert_string_equal(qry_lq_op_name(QRY_LQ_ENTER), "enter");
  assert_string_equal(qry_lq_op_name(QRY_LQ_NONE), "");
  qry_lq_query_free(q);
}

static void test_object_shape_and_keys(void **state) {
  (void)state;
  qry_lq_row_t r = row(S1, P1, 10, 3, 4);
  strcpy(r.updated_at, "2026-12-06T02:00:00.123Z");
  json_t *o = qry_lq_object(NULL, &r, false);
  assert_non_null(o);
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(
      text, "{\"available\":7,\"className\":\"Inventory\",\"objectId\":\"" S1
            "_" P1 "\",\"onHand\":10,\"product\":" PTR("Product", P1) ",\"reserved\":3,\"store\":" PTR(
                "Store", S1) ",\"updatedAt\":\"2026-12-06T02:00:00.123Z\","
                             "\"version\":4}");
  free(text);
  json_decref(o);
  /* keys restrict; className, objectId and the dates always come */
  qry_lq_query_t *q = query("{\"className\":\"Inventory\",\"keys\":[\"onHand\"]}");
  o = qry_lq_object(q, &r, true);
  text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(text,
                      "{\"className\":\"Inventory\",\"createdAt\":\"2026-12-"
                      "06T02:00:00.123Z\",\"objectId\":\"" S1 "_" P1
                      "\",\"onHand\":10,\"updatedAt\":\"2026-12-06T02:00:00."
                      "123Z\"}");
  free(text);
  json_decref(o);
  qry_lq_query_free(q);
}

static void test_query_text_canonical(void **state) {
  (void)state;
  qry_lq_query_t *a = query("{\"where\":{\"onHand\":1,\"store\":\"" S1
                            "\"},\"className\":\"Inventory\",\"watch\":[]}");
  qry_lq_query_t *b = query("{\"className\":\"Inventory\",\"where\":{\"store\":"
                            "\"" S1 "\",\"onHand\":1}}");
  /* the same query, keys in another order: one resume key */
  assert_string_equal(qry_lq_query_text(a), qry_lq_query_text(b));
  assert_string_equal(qry_lq_query_store(a), S1);
  qry_lq_query_free(a);
  qry_lq_query_free(b);
  a = query(Q("{\"store\":{\"$in\":[\"" S1 "\",\"" S2 "\"]}}"));
  assert_null(qry_lq_query_store(a)); /* two stores: no single one */
  qry_lq_query_free(a);
  a = query(Q("{\"store\":" PTR("Store",
                                "0190F3A1-0000-7000-8000-000000000001") "}"));
  assert_string_equal(qry_lq_query_store(a), S1); /* lowercase */
  qry_lq_query_free(a);
}

static void test_row_from_change(void **state) {
  (void)state;
  const char *ev = "{\"type\":\"change\",\"id\":9,\"store_id\":\"" S1
                   "\",\"product_id\":\"" P1
                   "\",\"on_hand\":4,\"reserved\":1,\"available\":3,"
                   "\"version\":2,\"cause\":\"sale\",\"occurred_at\":\"2026-"
                   "12-06T02:00:00.123456Z\"}";
  qry_lq_row_t r;
  assert_int_equal(qry_lq_row_from_change(ev, strlen(ev), &r), 0);
  assert_string_equal(r.store_id, S1);
  assert_string_equal(r.product_id, P1);
  assert_int_equal(r.on_hand, 4);
  assert_int_equal(r.reserved, 1);
  assert_int_equal(r.version, 2);
  assert_string_equal(r.updated_at, "2026-12-06T02:00:00.123Z");
  const char *bad[] = {
      "{", "[]", "{\"store_id\":\"x\",\"product_id\":\"" P1 "\",\"on_hand\":1,\"reserved\":0,\"version\":1}",
      "{\"store_id\":\"" S1 "\",\"product_id\":\"" P1
      "\",\"on_hand\":\"1\",\"reserved\":0,\"version\":1}",
      "{\"store_id\":\"" S1 "\",\"product_id\":\"" P1 "\",\"on_hand\":1}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(qry_lq_row_from_change(bad[i], strlen(bad[i]), &r),
                     SF_EPARSE);
}

/* Parses text as a message; returns rc and fills code / rid. */
static int msg(const char *text, qry_lq_msg_t *m, int *code, int64_t *rid) {
  char err[160] = "";
  int rc = qry_lq_msg_parse(text, strlen(text), m, code, err, sizeof(err), rid);
  if (rc != 0) {
    assert_true(err[0] != '\0');
    assert_null(m->root);
  }
  return rc;
}

static void test_messages(void **state) {
  (void)state;
  qry_lq_msg_t m;
  int code = 0;
  int64_t rid = 0;
  assert_int_equal(msg("{\"op\":\"connect\",\"applicationId\":\"app\","
                       "\"sessionToken\":\"t\",\"installationId\":\"i\","
                       "\"javascriptKey\":\"k\"}",
                       &m, &code, &rid),
                   0);
  assert_int_equal(m.kind, QRY_LQ_MSG_CONNECT);
  assert_string_equal(m.application_id, "app");
  assert_string_equal(m.session_token, "t");
  assert_string_equal(m.installation_id, "i");
  assert_false(m.has_master_key);
  qry_lq_msg_clear(&m);
  assert_int_equal(msg("{\"op\":\"connect\",\"masterKey\":\"m\"}", &m, &code,
                       &rid),
                   0);
  assert_true(m.has_master_key);
  assert_null(m.session_token);
  qry_lq_msg_clear(&m);
  assert_int_equal(msg("{\"op\":\"subscribe\",\"requestId\":3,\"query\":{"
                       "\"className\":\"Inventory\"},\"sessionToken\":\"t\"}",
                       &m, &code, &rid),
                   0);
  assert_int_equal(m.kind, QRY_LQ_MSG_SUBSCRIBE);
  assert_int_equal(m.request_id, 3);
  assert_non_null(m.query);
  assert_string_equal(m.session_token, "t");
  qry_lq_msg_clear(&m);
  /* a Parse session token's "r:" is dropped (qry_parse_bare_token) */
  assert_int_equal(msg("{\"op\":\"connect\",\"sessionToken\":\"r:t\"}", &m,
                       &code, &rid),
                   0);
  assert_string_equal(m.session_token, "t");
  qry_lq_msg_clear(&m);
  assert_int_equal(msg("{\"op\":\"subscribe\",\"requestId\":4,\"query\":{"
                       "\"className\":\"Inventory\"},\"sessionToken\":\"r:t\"}",
                       &m, &code, &rid),
                   0);
  assert_string_equal(m.session_token, "t");
  qry_lq_msg_clear(&m);
  assert_int_equal(msg("{\"op\":\"update\",\"requestId\":3,\"query\":{}}", &m,
                       &code, &rid),
                   0);
  assert_int_equal(m.kind, QRY_LQ_MSG_UPDATE);
  qry_lq_msg_clear(&m);
  assert_int_equal(msg("{\"op\":\"unsubscribe\",\"requestId\":0}", &m, &code,
                       &rid),
                   0);
  assert_int_equal(m.kind, QRY_LQ_MSG_UNSUBSCRIBE);
  qry_lq_msg_clear(&m);
  /* refusals: code and, when named, the request id */
  static const struct {
    const char *text;
    int code;
    int64_t rid;
  } bad[] = {
      {"{not json", QRY_PARSE_INVALID_JSON, -1},
      {"", QRY_PARSE_INVALID_JSON, -1},
      {"{\"op\":\"connect\",\"op\":\"x\"}", QRY_PARSE_INVALID_JSON, -1},
      {"[1]", QRY_LQ_ERR_BAD_REQUEST, -1},
      {"{}", QRY_LQ_ERR_BAD_REQUEST, -1},
      {"{\"op\":7}", QRY_LQ_ERR_BAD_REQUEST, -1},
      {"{\"op\":\"dance\",\"requestId\":4}", QRY_LQ_ERR_UNKNOWN_OP, 4},
      {"{\"op\":\"connect\",\"sessionToken\":5}", QRY_LQ_ERR_BAD_REQUEST, -1},
      {"{\"op\":\"subscribe\",\"query\":{}}", QRY_LQ_ERR_BAD_REQUEST, -1},
      {"{\"op\":\"subscribe\",\"requestId\":-1,\"query\":{}}",
       QRY_LQ_ERR_BAD_REQUEST, -1},
      {"{\"op\":\"subscribe\",\"requestId\":\"1\",\"query\":{}}",
       QRY_LQ_ERR_BAD_REQUEST, -1},
      {"{\"op\":\"subscribe\",\"requestId\":2}", QRY_LQ_ERR_BAD_REQUEST, 2},
      {"{\"op\":\"subscribe\",\"requestId\":2,\"query\":[]}",
       QRY_LQ_ERR_BAD_REQUEST, 2},
      {"{\"op\":\"subscribe\",\"requestId\":2,\"query\":{},"
       "\"sessionToken\":1}",
       QRY_LQ_ERR_BAD_REQUEST, 2},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    code = 0;
    assert_int_equal(msg(bad[i].text, &m, &code, &rid), SF_EINVAL);
    if (code != bad[i].code || rid != bad[i].rid)
      fail_msg("%s: code %d rid %lld", bad[i].text, code, (long long)rid);
  }
}

static void test_answers(void **state) {
  (void)state;
  json_t *e = qry_lq_error_msg(119, "no", false, 4);
  char *text = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(text, "{\"code\":119,\"error\":\"no\",\"op\":\"error\","
                            "\"reconnect\":false,\"requestId\":4}");
  free(text);
  json_decref(e);
  e = qry_lq_error_msg(209, "bad", true, -1);
  assert_null(json_object_get(e, "requestId"));
  assert_true(json_is_true(json_object_get(e, "reconnect")));
  json_decref(e);
  qry_lq_row_t r = row(S1, P1, 1, 0, 2);
  e = qry_lq_event_msg(QRY_LQ_LEAVE, 5, 6, qry_lq_object(NULL, &r, false),
                       qry_lq_object(NULL, &r, false));
  assert_string_equal(json_string_value(json_object_get(e, "op")), "leave");
  assert_int_equal(json_integer_value(json_object_get(e, "clientId")), 5);
  assert_int_equal(json_integer_value(json_object_get(e, "requestId")), 6);
  assert_non_null(json_object_get(e, "original"));
  json_decref(e);
  /* no object: nothing, and the original is released */
  assert_null(qry_lq_event_msg(QRY_LQ_UPDATE, 1, 1, NULL,
                               qry_lq_object(NULL, &r, false)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_match_pointers_and_ids),
      cmocka_unit_test(test_match_numbers),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_classify),
      cmocka_unit_test(test_object_shape_and_keys),
      cmocka_unit_test(test_query_text_canonical),
      cmocka_unit_test(test_row_from_change),
      cmocka_unit_test(test_messages),
      cmocka_unit_test(test_answers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for services/query/qry_gql_map.c: GraphQL where inputs ->
 * the REST where of the Parse query builder (every operator, pointers with
 * have, global ids, AND, and the refusals), root fields planned against
 * the schema (arguments, order enums, first / skip / after, include and
 * count learnt from the selection, validation errors for unknown fields,
 * arguments and wrong types), global ids and cursors, and Parse results
 * shaped into connections and nodes. The SQL runs against PostgreSQL in
 * tests/integration/test_parse_graphql.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_gql_map.h"
#include "sf/err.h"

#define U1 "0190f3a1-0000-7000-8000-000000000001"
#define U2 "0190f3a1-0000-7000-8000-000000000002"

static char *dump(const json_t *v) {
  return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
}

static void assert_json(const json_t *v, const char *want_text) {
  json_t *want = json_loads(want_text, 0, NULL);
  assert_non_null(want);
  char *a = dump(v), *b = dump(want);
  if (strcmp(a, b) != 0)
    fail_msg("got  %s\nwant %s", a, b);
  free(a);
  free(b);
  json_decref(want);
}

/* ---- where ---- */

static int where(const char *cls, const char *in, json_t **out, int *code,
                 qry_gql_error_t *err) {
  json_t *w = json_loads(in, 0, NULL);
  assert_non_null(w);
  int rc = qry_gqlm_where(qry_pq_class(cls), w, out, code, err);
  json_decref(w);
  return rc;
}

static void where_ok(const char *cls, const char *in, const char *want) {
  json_t *out = NULL;
  int code = 0;
  qry_gql_error_t err = {.line = 0};
  int rc = where(cls, in, &out, &code, &err);
  if (rc)
    fail_msg("%s refused: %s", in, err.message);
  assert_json(out, want);
  json_decref(out);
}

static void where_bad(const char *cls, const char *in, int want_code,
                      const char *want_msg) {
  json_t *out = NULL;
  int code = 0;
  qry_gql_error_t err = {.line = 0};
  int rc = where(cls, in, &out, &code, &err);
  if (rc != SF_EINVAL)
    fail_msg("%s accepted", in);
  assert_null(out);
  assert_int_equal(code, want_code);
  if (!strstr(err.message, want_msg))
    fail_msg("%s: \"%s\" lacks \"%s\"", in, err.message, want_msg);
}

static void test_where_operators(void **state) {
  (void)state;
  where_ok("Store", "{}", "{}");
  where_ok("Store",
           "{\"name\": {\"equalTo\": \"a\", \"notEqualTo\": \"b\"},"
           " \"closed\": {\"exists\": true}}",
           "{\"name\": {\"$eq\": \"a\", \"$ne\": \"b\"},"
           " \"closed\": {\"$exists\": true}}");
  where_ok("Product",
           "{\"price\": {\"lessThan\": 5, \"greaterThanOrEqualTo\": 1.5},"
           " \"reorderLevel\": {\"lessThanOrEqualTo\": 3, \"greaterThan\": 0},"
           " \"sku\": {\"in\": [\"a\", \"b\"], \"notIn\": []}}",
           "{\"price\": {\"$lt\": 5, \"$gte\": 1.5}, \"reorderLevel\":"
           " {\"$lte\": 3, \"$gt\": 0}, \"sku\": {\"$in\": [\"a\", \"b\"],"
           " \"$nin\": []}}");
  /* dates pass as ISO text, which the builder reads */
  where_ok("Transaction",
           "{\"createdAt\": {\"greaterThan\": \"2026-01-01T00:00:00Z\"}}",
           "{\"createdAt\": {\"$gt\": \"2026-01-01T00:00:00Z\"}}");
  /* AND merges; a field twice with different operators is one object */
  where_ok("Inventory",
           "{\"AND\": [{\"onHand\": {\"greaterThan\": 1}},"
           " {\"onHand\": {\"lessThan\": 9}}]}",
           "{\"onHand\": {\"$gt\": 1, \"$lt\": 9}}");
  /* unknown keys go on to the builder, which refuses them (105) */
  where_ok("Store", "{\"nope\": {\"equalTo\": 1}}",
           "{\"nope\": {\"equalTo\": 1}}");
}

static void test_where_pointers_and_ids(void **state) {
  (void)state;
  char gid[128];
  assert_int_equal(qry_gqlm_global_id("Store", U1, gid, sizeof(gid)), 0);
  where_ok("Inventory",
           "{\"store\": {\"have\": {\"objectId\": {\"equalTo\": \"" U1 "\"}}},"
           " \"product\": {\"exists\": true}}",
           "{\"store\": {\"$eq\": {\"__type\": \"Pointer\", \"className\":"
           " \"Store\", \"objectId\": \"" U1 "\"}},"
           " \"product\": {\"$exists\": true}}");
  /* a pointer's id may be a global id; in / notIn item by item */
  char in[512], want[512];
  snprintf(in, sizeof(in),
           "{\"store\": {\"have\": {\"objectId\": {\"in\": [\"%s\", \"" U2
           "\"]}}}}",
           gid);
  snprintf(want, sizeof(want),
           "{\"store\": {\"$in\": [{\"__type\": \"Pointer\", \"className\":"
           " \"Store\", \"objectId\": \"" U1 "\"}, {\"__type\": \"Pointer\","
           " \"className\": \"Store\", \"objectId\": \"" U2 "\"}]}}");
  where_ok("Transaction", in, want);
  /* id: the global id, decoded to objectId */
  snprintf(in, sizeof(in), "{\"id\": {\"equalTo\": \"%s\"}}", gid);
  where_ok("Store", in, "{\"objectId\": {\"$eq\": \"" U1 "\"}}");
}

static void test_where_refusals(void **state) {
  (void)state;
  where_bad("Store", "[]", 102, "input object");
  where_bad("Store", "{\"OR\": [{}]}", 102, "OR is not supported");
  where_bad("Store", "{\"NOR\": [{}]}", 102, "NOR is not supported");
  where_bad("Store", "{\"AND\": {}}", 102, "AND needs a list");
  where_bad("Store",
            "{\"AND\": [{\"AND\": [{\"AND\": [{\"AND\": [{\"AND\": []}]}]}]}]}",
            102, "nested at most");
  where_bad("Store", "{\"name\": \"x\"}", 111, "input object");
  where_bad("Store", "{\"name\": {\"matchesRegex\": \"x\"}}", 102,
            "unsupported operator matchesRegex");
  where_bad("Store", "{\"name\": {\"text\": {}}}", 102, "unsupported");
  where_bad("Inventory", "{\"store\": {\"equalTo\": \"x\"}}", 102,
            "use have or exists");
  where_bad("Inventory", "{\"store\": {\"haveNot\": {}}}", 102,
            "use have or exists");
  where_bad("Inventory",
            "{\"store\": {\"have\": {\"name\": {\"equalTo\": \"x\"}}}}", 102,
            "only have: {objectId");
  where_bad("Inventory",
            "{\"store\": {\"have\": {\"objectId\": {\"exists\": true}}}}",
            102, "exists on the pointer");
  where_bad("Store",
            "{\"AND\": [{\"name\": {\"equalTo\": \"a\"}},"
            " {\"name\": {\"equalTo\": \"b\"}}]}",
            102, "given twice");
}

/* ---- ids and cursors ---- */

static void test_ids(void **state) {
  (void)state;
  char gid[128], id[128];
  assert_int_equal(qry_gqlm_global_id("Store", "abc", gid, sizeof(gid)), 0);
  assert_string_equal(gid, "U3RvcmU6YWJj"); /* base64("Store:abc") */
  assert_int_equal(qry_gqlm_object_id("Store", gid, id, sizeof(id)), 0);
  assert_string_equal(id, "abc");
  /* an objectId is taken as it is; another class's global id is not */
  assert_int_equal(qry_gqlm_object_id("Store", U1, id, sizeof(id)), 0);
  assert_string_equal(id, U1);
  assert_int_equal(qry_gqlm_object_id("Product", gid, id, sizeof(id)),
                   SF_EINVAL);
  assert_int_equal(qry_gqlm_global_id("Store", "abc", gid, 8), SF_ETOOBIG);
  /* malformed base64 is an objectId like any other text */
  assert_int_equal(qry_gqlm_object_id("Store", "U3RvcmU6YW=j", id,
                                      sizeof(id)),
                   0);
  assert_string_equal(id, "U3RvcmU6YW=j");
}

/* ---- plans ---- */

typedef struct planned {
  qry_gql_doc_t *doc;
  const qry_gql_op_t *op;
  qry_gqlm_root_t r;
  qry_gql_error_t err;
  int rc;
} planned_t;

static void plan_text(planned_t *p, const char *text, const char *vars) {
  memset(p, 0, sizeof(*p));
  qry_gql_error_t err;
  if (qry_gql_parse(text, strlen(text), &p->doc, &err) != 0)
    fail_msg("%s: %s", text, err.message);
  p->op = qry_gql_ops(p->doc);
  const qry_gql_sel_t *roots[4];
  int n = qry_gqlm_roots(p->doc, p->op, roots, 4, &p->err);
  if (n < 0) {
    p->rc = SF_EPARSE;
    return;
  }
  assert_true(n >= 1);
  json_t *v = vars ? json_loads(vars, 0, NULL) : NULL;
  p->rc = qry_gqlm_plan(p->doc, p->op, roots[0], v, &p->r, &p->err);
  json_decref(v);
}

static void plan_done(planned_t *p) {
  qry_gqlm_root_free(&p->r);
  qry_gql_doc_free(p->doc);
}

static void plan_invalid(const char *text, const char *want) {
  planned_t p;
  plan_text(&p, text, NULL);
  if (p.rc != SF_EPARSE)
    fail_msg("%s: rc %d, want a validation error", text, p.rc);
  if (!strstr(p.err.message, want))
    fail_msg("%s: \"%s\" lacks \"%s\"", text, p.err.message, want);
  assert_true(p.err.line > 0);
  plan_done(&p);
}

static void test_plan_list(void **state) {
  (void)state;
  planned_t p;
  plan_text(&p,
            "query Q($w: InventoryWhereInput) { inventories(where: $w,"
            " order: [onHand_DESC, createdAt_ASC], skip: 2, first: 5) {"
            " count edges { cursor node { objectId onHand store { name }"
            " product { sku } } } pageInfo { hasNextPage endCursor } } }",
            "{\"w\": {\"onHand\": {\"greaterThan\": 0}}}");
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.kind, QRY_GQLM_LIST);
  assert_string_equal(p.r.cls->name, "Inventory");
  assert_int_equal(p.r.first, 5);
  assert_int_equal(p.r.skip, 2);
  assert_true(p.r.with_count);
  assert_json(p.r.params,
              "{\"limit\": 6, \"skip\": 2, \"count\": 1, \"order\":"
              " \"-onHand,createdAt\", \"include\": \"store,product\","
              " \"where\": {\"onHand\": {\"$gt\": 0}}}");
  plan_done(&p);

  /* defaults; after adds the cursor's offset + 1; one order enum alone */
  char q[512], c[64];
  /* base64("arrayconnection:9") */
  snprintf(c, sizeof(c), "%s", "YXJyYXljb25uZWN0aW9uOjk=");
  snprintf(q, sizeof(q),
           "{ stores(after: \"%s\", order: name_ASC) { edges { node {"
           " name } } } }",
           c);
  plan_text(&p, q, NULL);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.skip, 10);
  assert_false(p.r.with_count);
  assert_json(p.r.params,
              "{\"limit\": 101, \"skip\": 10, \"count\": 0, \"order\":"
              " \"name\", \"include\": \"\"}");
  plan_done(&p);

  /* first 1000: the builder's limit, so the count tells hasNextPage */
  plan_text(&p, "{ products(first: 1000) { pageInfo { hasNextPage } } }",
            NULL);
  assert_int_equal(p.rc, 0);
  assert_true(p.r.with_count);
  assert_int_equal(json_integer_value(json_object_get(p.r.params, "limit")),
                   1000);
  plan_done(&p);

  /* execution errors of the field, with Parse's code */
  const char *exec_bad[] = {
      "{ stores(first: 1001) { count } }",
      "{ stores(skip: -1) { count } }",
      "{ stores(after: \"bm9wZQ==\") { count } }",
      "{ stores(where: {name: {matchesRegex: \"x\"}}) { count } }",
      "{ stores(where: {OR: []}) { count } }",
  };
  for (size_t i = 0; i < sizeof(exec_bad) / sizeof(exec_bad[0]); i++) {
    plan_text(&p, exec_bad[i], NULL);
    if (p.rc != SF_EINVAL || p.r.code != 102)
      fail_msg("%s: rc %d code %d", exec_bad[i], p.rc, p.r.code);
    assert_true(p.err.line > 0);
    plan_done(&p);
  }
}

static void test_plan_one_and_viewer(void **state) {
  (void)state;
  planned_t p;
  char gid[128], q[512];
  assert_int_equal(qry_gqlm_global_id("Order", U1, gid, sizeof(gid)), 0);
  snprintf(q, sizeof(q),
           "{ order(id: \"%s\") { id objectId status lines store {"
           " objectId manager { objectId } } } }",
           gid);
  plan_text(&p, q, NULL);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.kind, QRY_GQLM_ONE);
  assert_string_equal(p.r.object_id, U1);
  assert_json(p.r.params, "{\"include\": \"store\"}");
  plan_done(&p);
  /* a global id of another class finds nothing */
  snprintf(q, sizeof(q), "{ store(id: \"%s\") { name } }", gid);
  plan_text(&p, q, NULL);
  assert_int_equal(p.rc, 0);
  assert_string_equal(p.r.object_id, "");
  plan_done(&p);
  plan_text(&p,
            "query V { viewer { sessionToken user { objectId username role"
            " storeIds __typename } } }",
            NULL);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.kind, QRY_GQLM_VIEWER);
  plan_done(&p);
  plan_text(&p, "{ __typename }", NULL);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.kind, QRY_GQLM_TYPENAME);
  plan_done(&p);
}

static void test_plan_validation(void **state) {
  (void)state;
  plan_invalid("{ widgets { count } }",
               "Cannot query field \"widgets\" on type \"Query\"");
  plan_invalid("{ stores { edges { node { nope } } } }",
               "Cannot query field \"nope\" on type \"Store\"");
  plan_invalid("{ stores { nope } }",
               "Cannot query field \"nope\" on type \"StoreConnection\"");
  plan_invalid("{ stores { edges { nope } } }",
               "on type \"StoreEdge\"");
  plan_invalid("{ stores { pageInfo { nope } } }", "on type \"PageInfo\"");
  plan_invalid("{ viewer { nope } }", "on type \"Viewer\"");
  plan_invalid("{ viewer { user { password } } }", "on type \"User\"");
  plan_invalid("{ stores { count { x } } }", "must not have a selection");
  plan_invalid("{ stores }", "must have a selection of subfields");
  plan_invalid("{ inventories { edges { node { store } } } }",
               "must have a selection");
  plan_invalid("{ inventories { edges { node { store { manager { username }"
               " } } } } }",
               "resolved one level deep");
  plan_invalid("{ stores(first: \"x\") { count } }",
               "Argument \"first\" has an invalid value");
  plan_invalid("{ stores(where: 5) { count } }",
               "Argument \"where\" has an invalid value");
  plan_invalid("{ stores(after: 5) { count } }",
               "Argument \"after\" has an invalid value");
  plan_invalid("{ stores(order: [nope_ASC]) { count } }",
               "does not exist in \"StoreOrder\" enum");
  plan_invalid("{ stores(order: [name_UP]) { count } }", "enum");
  plan_invalid("{ stores(order: [lines_ASC]) { count } }", "enum");
  plan_invalid("{ stores(limit: 5) { count } }",
               "Unknown argument \"limit\" on field \"Query.stores\"");
  plan_invalid("{ stores(last: 5) { count } }", "not supported");
  plan_invalid("{ store { name } }", "argument \"id\" of type \"ID!\"");
  plan_invalid("{ store(id: true) { name } }", "invalid value: ID");
  plan_invalid("{ store(id: \"x\", other: 1) { name } }",
               "Unknown argument \"other\"");
  plan_invalid("{ stores { edges { node { name(x: 1) } } } }",
               "Unknown argument \"x\" on field \"Store.name\"");
  plan_invalid("{ __schema { types { name } } }", "Introspection");
  plan_invalid("query Q($f: Int) { stores(first: $g) { count } }",
               "Variable \"$g\" is not defined");
  plan_invalid("{ stores(first: 99999999999) { count } }", "32-bit");
  plan_invalid("{ stores { edges { node { ...F } } } }"
               " fragment F on Product { sku }",
               "can never be of type \"Product\"");
  plan_invalid("{ stores { edges { node { ...G } } } }",
               "Unknown fragment \"G\"");
  plan_invalid("{ stores { edges { node { ...F } } } }"
               " fragment F on Store { ...F }",
               "within itself");
  /* fragments spreading others twice: 2^20 expansions, refused early */
  char bomb[2048];
  size_t n = (size_t)snprintf(bomb, sizeof(bomb),
                              "{ stores { edges { node { ...F0 } } } }");
  for (int i = 0; i < 20; i++)
    n += (size_t)snprintf(bomb + n, sizeof(bomb) - n,
                          " fragment F%d on Store { ...F%d ...F%d }", i,
                          i + 1, i + 1);
  snprintf(bomb + n, sizeof(bomb) - n, " fragment F20 on Store { name }");
  plan_invalid(bomb, "fragment expansions");
}

/* Mutations: the Parse body of the write, links as Pointers, the
 * payload's selection checked, and shaped. */
static void test_plan_mutations(void **state) {
  (void)state;
  planned_t p;
  char gid[128], q[1024];
  assert_int_equal(qry_gqlm_global_id("Product", U2, gid, sizeof(gid)), 0);
  snprintf(q, sizeof(q),
           "mutation { createTransaction(input: {clientMutationId: \"m\","
           " fields: {store: {link: \"" U1 "\"}, product: {link: \"%s\"},"
           " type: \"sale\", quantity: 2, reason: \"r\"}}) {"
           " clientMutationId transaction { objectId store { name } } } }",
           gid);
  plan_text(&p, q, NULL);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.kind, QRY_GQLM_CREATE);
  assert_string_equal(p.r.cls->name, "Transaction");
  assert_json(p.r.body,
              "{\"store\": {\"__type\": \"Pointer\", \"className\": \"Store\","
              " \"objectId\": \"" U1 "\"}, \"product\": {\"__type\":"
              " \"Pointer\", \"className\": \"Product\", \"objectId\": \"" U2
              "\"}, \"type\": \"sale\", \"quantity\": 2, \"reason\": \"r\"}");
  assert_json(p.r.params, "{\"include\": \"store\"}");
  json_t *obj = json_loads("{\"objectId\": \"t\", \"store\": {\"__type\":"
                           " \"Object\", \"objectId\": \"s\", \"name\":"
                           " \"North\"}}",
                           0, NULL);
  json_t *out = NULL;
  assert_int_equal(qry_gqlm_shape_payload(p.doc, &p.r, obj, &out), 0);
  assert_json(out, "{\"clientMutationId\": \"m\", \"transaction\":"
                   " {\"objectId\": \"t\", \"store\": {\"name\":"
                   " \"North\"}}}");
  json_decref(out);
  json_decref(obj);
  plan_done(&p);

  plan_text(&p,
            "mutation { createOrder(input: {fields: {store: {link: \"" U1
            "\"}, lines: [{product: {link: \"" U2 "\"}, quantity: 1}]}}) {"
            " order { status } } }",
            NULL);
  assert_int_equal(p.rc, 0);
  assert_json(p.r.body,
              "{\"store\": {\"__type\": \"Pointer\", \"className\": \"Store\","
              " \"objectId\": \"" U1 "\"}, \"lines\": [{\"product\":"
              " {\"__type\": \"Pointer\", \"className\": \"Product\","
              " \"objectId\": \"" U2 "\"}, \"quantity\": 1}]}");
  plan_done(&p);

  plan_text(&p,
            "mutation L($p: String!) { logIn(input: {username: \"ann\","
            " password: $p}) { viewer { sessionToken user { username } } } }",
            "{\"p\": \"secret\"}");
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.kind, QRY_GQLM_LOGIN);
  assert_json(p.r.body, "{\"username\": \"ann\", \"password\": \"secret\"}");
  obj = json_loads("{\"objectId\": \"u\", \"username\": \"ann\","
                   " \"sessionToken\": \"tok\"}",
                   0, NULL);
  assert_int_equal(qry_gqlm_shape_payload(p.doc, &p.r, obj, &out), 0);
  assert_json(out, "{\"viewer\": {\"sessionToken\": \"tok\", \"user\":"
                   " {\"username\": \"ann\"}}}");
  json_decref(out);
  json_decref(obj);
  plan_done(&p);

  plan_text(&p, "mutation { logOut { ok __typename } }", NULL);
  assert_int_equal(p.rc, 0);
  assert_int_equal(p.r.kind, QRY_GQLM_LOGOUT);
  assert_int_equal(qry_gqlm_shape_payload(p.doc, &p.r, NULL, &out), 0);
  assert_json(out, "{\"ok\": true, \"__typename\": \"LogOutPayload\"}");
  json_decref(out);
  plan_done(&p);

  plan_invalid("mutation { updateStore(input: {}) { ok } }",
               "on type \"Mutation\"");
  plan_invalid("mutation { logIn(input: {username: \"a\"}) { viewer {"
               " sessionToken } } }",
               "username and password");
  plan_invalid("mutation { logIn(input: {username: \"a\", password: \"b\","
               " x: 1}) { viewer { sessionToken } } }",
               "not defined by its type");
  plan_invalid("mutation { logIn(input: 5) { viewer { sessionToken } } }",
               "input object expected");
  plan_invalid("mutation { createOrder(input: {fields: 3}) { order {"
               " status } } }",
               "fields must be an input object");
  plan_invalid("mutation { createOrder { order { status } } }",
               "\"input\" is required");
  plan_invalid("mutation { createOrder(input: {fields: {}}) { order {"
               " nope } } }",
               "Cannot query field \"nope\" on type \"Order\"");
  plan_invalid("mutation { logOut(input: {}) { viewer { sessionToken } } }",
               "on type \"LogOutPayload\"");
  plan_invalid("mutation { logOut(input: {}, x: 1) { ok } }",
               "Unknown argument \"x\"");
}

/* ---- answers ---- */

static void test_shape_list(void **state) {
  (void)state;
  planned_t p;
  plan_text(&p,
            "{ inventories(first: 2, skip: 1) { __typename total: count"
            " edges { cursor node { id objectId onHand createdAt"
            " store { name t: __typename manager { objectId } } } }"
            " pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
            " } }",
            NULL);
  assert_int_equal(p.rc, 0);
  json_t *result = json_loads(
      "{\"results\": ["
      " {\"objectId\": \"a_b\", \"onHand\": 3, \"createdAt\":"
      "  \"2026-01-01T00:00:00.000Z\", \"store\": {\"__type\": \"Object\","
      "  \"className\": \"Store\", \"objectId\": \"a\", \"name\": \"North\","
      "  \"manager\": {\"__type\": \"Pointer\", \"className\": \"_User\","
      "  \"objectId\": \"m\"}}},"
      " {\"objectId\": \"c_d\", \"onHand\": 0, \"createdAt\": {\"__type\":"
      "  \"Date\", \"iso\": \"2026-01-02T00:00:00.000Z\"}},"
      " {\"objectId\": \"e_f\", \"onHand\": 1}], \"count\": 9}",
      0, NULL);
  assert_non_null(result);
  json_t *out = NULL;
  assert_int_equal(qry_gqlm_shape_list(p.doc, &p.r, result, &out), 0);
  /* cursors: base64("arrayconnection:1") and ":2" */
  assert_json(
      out,
      "{\"__typename\": \"InventoryConnection\", \"total\": 9, \"edges\": ["
      " {\"cursor\": \"YXJyYXljb25uZWN0aW9uOjE=\", \"node\": {\"id\":"
      "  \"SW52ZW50b3J5OmFfYg==\", \"objectId\": \"a_b\", \"onHand\": 3,"
      "  \"createdAt\": \"2026-01-01T00:00:00.000Z\", \"store\": {\"name\":"
      "  \"North\", \"t\": \"Store\", \"manager\": {\"objectId\": \"m\"}}}},"
      " {\"cursor\": \"YXJyYXljb25uZWN0aW9uOjI=\", \"node\": {\"id\":"
      "  \"SW52ZW50b3J5OmNfZA==\", \"objectId\": \"c_d\", \"onHand\": 0,"
      "  \"createdAt\": \"2026-01-02T00:00:00.000Z\", \"store\": null}}],"
      " \"pageInfo\": {\"hasNextPage\": true, \"hasPreviousPage\": true,"
      "  \"startCursor\": \"YXJyYXljb25uZWN0aW9uOjE=\", \"endCursor\":"
      "  \"YXJyYXljb25uZWN0aW9uOjI=\"}}");
  json_decref(out);
  json_decref(result);
  /* an empty page */
  result = json_loads("{\"results\": [], \"count\": 0}", 0, NULL);
  assert_int_equal(qry_gqlm_shape_list(p.doc, &p.r, result, &out), 0);
  assert_json(out, "{\"__typename\": \"InventoryConnection\", \"total\": 0,"
                   " \"edges\": [], \"pageInfo\": {\"hasNextPage\": false,"
                   " \"hasPreviousPage\": true, \"startCursor\": null,"
                   " \"endCursor\": null}}");
  json_decref(out);
  json_decref(result);
  /* a result without results is a bug, not a crash */
  result = json_loads("{}", 0, NULL);
  assert_int_equal(qry_gqlm_shape_list(p.doc, &p.r, result, &out),
                   SF_EPARSE);
  json_decref(result);
  plan_done(&p);
}

static void test_shape_one_and_viewer(void **state) {
  (void)state;
  planned_t p;
  plan_text(&p,
            "{ product(id: \"" U1 "\") { ... on Product { sku price }"
            " ...P } } fragment P on Product { discontinued x: objectId }",
            NULL);
  assert_int_equal(p.rc, 0);
  json_t *obj = json_loads("{\"objectId\": \"" U1 "\", \"sku\": \"S\","
                           " \"price\": 0.1, \"discontinued\": false}",
                           0, NULL);
  json_t *out = NULL;
  assert_int_equal(qry_gqlm_shape_one(p.doc, &p.r, obj, &out), 0);
  assert_json(out, "{\"sku\": \"S\", \"price\": 0.1, \"discontinued\": false,"
                   " \"x\": \"" U1 "\"}");
  json_decref(out);
  json_decref(obj);
  plan_done(&p);
  plan_text(&p, "{ viewer { sessionToken user { objectId username } } }",
            NULL);
  assert_int_equal(p.rc, 0);
  obj = json_loads("{\"objectId\": \"" U2 "\", \"username\": \"ann\"}", 0,
                   NULL);
  assert_int_equal(qry_gqlm_shape_viewer(p.doc, &p.r, obj, "tok", &out), 0);
  assert_json(out, "{\"sessionToken\": \"tok\", \"user\": {\"objectId\": \"" U2
                   "\", \"username\": \"ann\"}}");
  json_decref(out);
  json_decref(obj);
  plan_done(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_where_operators),
      cmocka_unit_test(test_where_pointers_and_ids),
      cmocka_unit_test(test_where_refusals),
      cmocka_unit_test(test_ids),
      cmocka_unit_test(test_plan_list),
      cmocka_unit_test(test_plan_one_and_viewer),
      cmocka_unit_test(test_plan_validation),
      cmocka_unit_test(test_plan_mutations),
      cmocka_unit_test(test_shape_list),
      cmocka_unit_test(test_shape_one_and_viewer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

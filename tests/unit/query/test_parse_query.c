/* Unit tests for services/query/qry_parse_query.c: Parse queries -> one
 * parameterized SQL text (every operator, pointers, dates, order, limit /
 * skip bounds, count, keys, include, by id) and the refusals (102, 105,
 * 111); rows -> Parse objects, with results built in memory by libpq
 * (PQmakeEmptyPGresult / PQsetvalue), so no server is needed. The SQL runs
 * against PostgreSQL in tests/integration/test_parse_rest.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_result.h"
#include "qry_parse_query.h"
#include "sf/err.h"

#define U1 "0190f3a1-0000-7000-8000-000000000001"
#define U2 "0190f3a1-0000-7000-8000-000000000002"
#define FILTER "{" U1 "}"

/* Builds cls's query from params_text (JSON) and returns the rc; q filled. */
static int build(const char *cls, const char *params_text, const char *id,
                 qry_pq_t *q) {
  json_error_t err;
  json_t *params = json_loads(params_text, 0, &err);
  assert_non_null(params);
  const qry_pq_class_t *c =
      strcmp(cls, "_User") == 0 ? qry_pq_user_class() : qry_pq_class(cls);
  assert_non_null(c);
  int rc = qry_pq_build(c, params, id, FILTER, q);
  json_decref(params);
  return rc;
}

static void assert_has(const qry_pq_t *q, const char *fragment) {
  if (!strstr(q->sql, fragment))
    fail_msg("\"%s\" not in %s", fragment, q->sql);
}

/* A refusal: the rc, Parse code and nothing to free. */
static void assert_refused(const char *cls, const char *params, int code,
                           const char *msg_part) {
  qry_pq_t q;
  int rc = build(cls, params, NULL, &q);
  if (rc != SF_EINVAL)
    fail_msg("%s: rc %d, want SF_EINVAL", params, rc);
  if (q.code != code)
    fail_msg("%s: code %d (%s), want %d", params, q.code, q.error, code);
  assert_null(q.sql);
  assert_int_equal(q.n_params, 0);
  if (msg_part && !strstr(q.error, msg_part))
    fail_msg("%s: error \"%s\" lacks \"%s\"", params, q.error, msg_part);
}

static void test_classes(void **state) {
  (void)state;
  const char *names[] = {"Store", "Product", "Inventory", "Transaction",
                         "Order"};
  for (size_t i = 0; i < 5; i++) {
    const qry_pq_class_t *c = qry_pq_class(names[i]);
    assert_non_null(c);
    assert_string_equal(c->name, names[i]);
    assert_string_equal(c->fields[0].key, "objectId");
  }
  assert_null(qry_pq_class("_User")); /* /users/me only */
  assert_null(qry_pq_class("store"));
  assert_null(qry_pq_class("Foo"));
  assert_null(qry_pq_class(NULL));
  assert_string_equal(qry_pq_user_class()->name, "_User");
}

static void test_defaults(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(build("Store", "{}", NULL, &q), 0);
  assert_has(&q, "FROM stores s WHERE ($1::uuid[] IS NULL OR s.id = ANY");
  assert_has(&q, " WHERE true ORDER BY b.\"objectId\" LIMIT $2::int OFFSET "
                 "$3::int");
  assert_int_equal(q.n_params, 3);
  assert_string_equal(q.params[0], FILTER);
  assert_string_equal(q.params[1], "100");
  assert_string_equal(q.params[2], "0");
  assert_false(q.count);
  assert_false(q.by_id);
  assert_null(strstr(q.sql, "@count"));
  qry_pq_free(&q);
  /* no store filter: $1 is SQL NULL (admin) */
  json_t *p = json_object();
  assert_int_equal(qry_pq_build(qry_pq_class("Order"), p, NULL, NULL, &q), 0);
  assert_null(q.params[0]);
  assert_has(&q, "FROM orders o WHERE ($1::uuid[] IS NULL OR o.store_id");
  qry_pq_free(&q);
  /* params NULL is an empty query */
  assert_int_equal(qry_pq_build(qry_pq_class("Order"), NULL, NULL, NULL, &q),
                   0);
  qry_pq_free(&q);
  json_decref(p);
}

static void test_equality_values_are_parameters(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(
      build("Store",
            "{\"where\":{\"name\":\"x'; DROP TABLE stores; --\","
            "\"closed\":false}}",
            NULL, &q),
      0);
  assert_has(&q, "b.\"name\" = $2::text");
  assert_has(&q, "b.\"closed\" = $3::boolean");
  assert_null(strstr(q.sql, "DROP"));
  assert_string_equal(q.params[1], "x'; DROP TABLE stores; --");
  assert_string_equal(q.params[2], "false");
  assert_int_equal(q.n_params, 5);
  qry_pq_free(&q);
}

static void test_comparisons(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(
      build("Inventory",
            "{\"where\":{\"onHand\":{\"$lt\":50,\"$lte\":40,\"$gt\":1,"
            "\"$gte\":2,\"$ne\":3,\"$eq\":4}}}",
            NULL, &q),
      0);
  assert_has(&q, "b.\"onHand\" < $2::numeric");
  assert_has(&q, "b.\"onHand\" <= $3::numeric");
  assert_has(&q, "b.\"onHand\" > $4::numeric");
  assert_has(&q, "b.\"onHand\" >= $5::numeric");
  assert_has(&q, "b.\"onHand\" IS DISTINCT FROM $6::numeric");
  assert_has(&q, "b.\"onHand\" = $7::numeric");
  const char *want[] = {"50", "40", "1", "2", "3", "4"};
  for (int i = 0; i < 6; i++)
    assert_string_equal(q.params[i + 1], want[i]);
  qry_pq_free(&q);
  /* prices: the shortest text of a real, integers as they are */
  assert_int_equal(build("Product",
                         "{\"where\":{\"price\":{\"$gte\":9.99,\"$lt\":100}}}",
                         NULL, &q),
                   0);
  assert_string_equal(q.params[1], "9.99");
  assert_string_equal(q.params[2], "100");
  assert_has(&q, "b.\"price\" >= $2::numeric");
  qry_pq_free(&q);
  /* strings compare too */
  assert_int_equal(
      build("Product", "{\"where\":{\"sku\":{\"$gt\":\"B\"}}}", NULL, &q), 0);
  assert_has(&q, "b.\"sku\" > $2::text");
  qry_pq_free(&q);
}

static void test_in_nin_exists_null(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(
      build("Transaction",
            "{\"where\":{\"type\":{\"$in\":[\"sale\",\"receipt\"]},"
            "\"reason\":{\"$nin\":[\"x\"]},\"reference\":{\"$exists\":true},"
            "\"delta\":{\"$exists\":false}}}",
            NULL, &q),
      0);
  assert_has(&q, "b.\"type\" = ANY(ARRAY(SELECT jsonb_array_elements_text("
                 "$2::jsonb))::text[])");
  assert_string_equal(q.params[1], "[\"sale\",\"receipt\"]");
  assert_has(&q, "(b.\"reason\" IS NULL OR NOT b.\"reason\" = ANY(ARRAY("
                 "SELECT jsonb_array_elements_text($3::jsonb))::text[]))");
  assert_string_equal(q.params[2], "[\"x\"]");
  assert_has(&q, "b.\"reference\" IS NOT NULL");
  assert_has(&q, "b.\"delta\" IS NULL");
  qry_pq_free(&q);
  /* $in of pointers: their ids, cast to uuid */
  assert_int_equal(
      build("Inventory",
            "{\"where\":{\"store\":{\"$in\":[{\"__type\":\"Pointer\","
            "\"className\":\"Store\",\"objectId\":\"" U1 "\"},{\"__type\":"
            "\"Pointer\",\"className\":\"Store\",\"objectId\":\"" U2 "\"}]}}}",
            NULL, &q),
      0);
  assert_string_equal(q.params[1], "[\"" U1 "\",\"" U2 "\"]");
  assert_has(&q, "::uuid[])");
  qry_pq_free(&q);
  /* null: equality and $ne */
  assert_int_equal(build("Store",
                         "{\"where\":{\"manager\":null,\"location\":{\"$ne\":"
                         "null}}}",
                         NULL, &q),
                   0);
  assert_has(&q, "b.\"manager\" IS NULL");
  assert_has(&q, "b.\"location\" IS NOT NULL");
  assert_int_equal(q.n_params, 3); /* no value parameters */
  qry_pq_free(&q);
}

static void test_pointers(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(
      build("Inventory",
            "{\"where\":{\"product\":{\"__type\":\"Pointer\",\"className\":"
            "\"Product\",\"objectId\":\"" U2 "\"}}}",
            NULL, &q),
      0);
  assert_has(&q, "b.\"product\" = $2::uuid");
  assert_string_equal(q.params[1], U2);
  qry_pq_free(&q);
  /* wrong class, bad id, a bare string, a Pointer missing its id */
  assert_refused("Inventory",
                 "{\"where\":{\"product\":{\"__type\":\"Pointer\","
                 "\"className\":\"Store\",\"objectId\":\"" U2 "\"}}}",
                 111, "product");
  assert_refused("Inventory",
                 "{\"where\":{\"product\":{\"__type\":\"Pointer\","
                 "\"className\":\"Product\",\"objectId\":\"abc\"}}}",
                 111, NULL);
  assert_refused("Inventory", "{\"where\":{\"product\":\"" U2 "\"}}", 111,
                 NULL);
  assert_refused("Order",
                 "{\"where\":{\"store\":{\"__type\":\"Pointer\","
                 "\"className\":\"Store\"}}}",
                 111, NULL);
  /* objectId of a UUID class must be a UUID */
  assert_refused("Store", "{\"where\":{\"objectId\":\"nope\"}}", 111, NULL);
  assert_int_equal(
      build("Store", "{\"where\":{\"objectId\":\"" U1 "\"}}", NULL, &q), 0);
  assert_has(&q, "b.\"objectId\" = $2::uuid");
  qry_pq_free(&q);
}

static void test_dates(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(
      build("Transaction",
            "{\"where\":{\"createdAt\":{\"$gte\":{\"__type\":\"Date\","
            "\"iso\":\"2026-11-26T15:00:00.123456Z\"},\"$lt\":"
            "\"2026-11-26T16:00:00Z\"}}}",
            NULL, &q),
      0);
  assert_has(&q, "b.\"createdAt\" >= $2::bigint");
  assert_has(&q, "b.\"createdAt\" < $3::bigint");
  assert_string_equal(q.params[1], "1795705200123456");
  assert_string_equal(q.params[2], "1795708800000000");
  qry_pq_free(&q);
  assert_refused("Order",
                 "{\"where\":{\"createdAt\":{\"__type\":\"Date\",\"iso\":"
                 "\"yesterday\"}}}",
                 111, "Date");
  assert_refused("Order", "{\"where\":{\"updatedAt\":{\"$gt\":12}}}", 111,
                 NULL);
  assert_refused("Order",
                 "{\"where\":{\"updatedAt\":{\"__type\":\"Pointer\",\"iso\":"
                 "\"2026-11-26T15:00:00Z\"}}}",
                 111, NULL);
}

static void test_order(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(
      build("Inventory", "{\"order\":\"-onHand, store\"}", NULL, &q), 0);
  assert_has(&q, "ORDER BY b.\"onHand\" DESC, b.\"store\", b.\"objectId\" "
                 "LIMIT");
  qry_pq_free(&q);
  /* objectId given: no second tie-breaker */
  assert_int_equal(build("Store", "{\"order\":\"-objectId\"}", NULL, &q), 0);
  assert_has(&q, "ORDER BY b.\"objectId\" DESC LIMIT");
  qry_pq_free(&q);
  assert_refused("Store", "{\"order\":\"-nope\"}", 105, "nope");
  assert_refused("Store", "{\"order\":\"name;DROP\"}", 105, NULL);
  assert_refused("Order", "{\"order\":\"lines\"}", 102, NULL);
  assert_refused("Order", "{\"order\":5}", 102, NULL);
}

static void test_limit_skip(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(build("Store", "{\"limit\":\"0\",\"skip\":\"10000\"}",
                         NULL, &q),
                   0);
  assert_string_equal(q.params[1], "0");
  assert_string_equal(q.params[2], "10000");
  qry_pq_free(&q);
  assert_int_equal(build("Store", "{\"limit\":1000,\"skip\":3}", NULL, &q), 0);
  assert_string_equal(q.params[1], "1000");
  assert_string_equal(q.params[2], "3");
  qry_pq_free(&q);
  assert_refused("Store", "{\"limit\":1001}", 102, "limit");
  assert_refused("Store", "{\"limit\":\"-1\"}", 102, "limit");
  assert_refused("Store", "{\"limit\":-1}", 102, "limit");
  assert_refused("Store", "{\"limit\":\"ten\"}", 102, "limit");
  assert_refused("Store", "{\"limit\":2.5}", 102, "limit");
  assert_refused("Store", "{\"skip\":10001}", 102, "skip");
  assert_refused("Store", "{\"skip\":\"\"}", 102, "skip");
  assert_refused("Store", "{\"skip\":\"99999999999999999999\"}", 102, "skip");
}

static void test_count(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(build("Product",
                         "{\"count\":\"1\",\"limit\":0,\"where\":{\"sku\":"
                         "\"A\"},\"order\":\"name\"}",
                         NULL, &q),
                   0);
  assert_true(q.count);
  assert_has(&q, "SELECT f.n AS \"@count\", x.* FROM (SELECT count(*) AS n "
                 "FROM (");
  assert_has(&q, ") x ON true ORDER BY x.\"name\", x.\"objectId\"");
  /* the where's parameter serves both the count and the page */
  assert_has(&q, "b.\"sku\" = $2::text");
  assert_int_equal(q.n_params, 4);
  qry_pq_free(&q);
  assert_int_equal(build("Product", "{\"count\":1}", NULL, &q), 0);
  assert_true(q.count);
  qry_pq_free(&q);
  assert_int_equal(build("Product", "{\"count\":0}", NULL, &q), 0);
  assert_false(q.count);
  qry_pq_free(&q);
  assert_refused("Product", "{\"count\":2}", 102, "count");
}

static void test_keys_include(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(
      build("Inventory", "{\"keys\":\"onHand,store\",\"include\":\"store, "
                         "product\"}",
            NULL, &q),
      0);
  assert_int_equal(q.keys, (1u << 3) | (1u << 1));
  assert_int_equal(q.include, (1u << 1) | (1u << 2));
  assert_has(&q, ", i1.\"name\" AS \"store.name\"");
  assert_has(&q, ", i2.\"price\" AS \"product.price\"");
  assert_has(&q, "z WHERE z.\"objectId\" = b.\"store\") i1 ON true");
  assert_has(&q, "FROM products p WHERE");
  qry_pq_free(&q);
  assert_int_equal(build("Store", "{\"include\":\"manager\"}", NULL, &q), 0);
  assert_has(&q, "FROM users u");
  assert_null(strstr(q.sql, "email")); /* a manager's e-mail is not shown */
  qry_pq_free(&q);
  assert_refused("Store", "{\"keys\":\"name,secret\"}", 105, "secret");
  assert_refused("Inventory", "{\"include\":\"onHand\"}", 102, NULL);
  assert_refused("Inventory", "{\"include\":\"warehouse\"}", 105, NULL);
  assert_refused("Inventory", "{\"include\":\"store.manager\"}", 105, NULL);
  assert_refused("Inventory", "{\"keys\":[\"onHand\"]}", 102, NULL);
}

static void test_refusals(void **state) {
  (void)state;
  assert_refused("Store", "{\"where\":{\"$or\":[{\"name\":\"a\"}]}}", 102,
                 "$or");
  assert_refused("Store", "{\"where\":{\"name\":{\"$regex\":\"^a\"}}}", 102,
                 "$regex");
  assert_refused("Store", "{\"where\":{\"name\":{\"$foo\":1}}}", 102, "$foo");
  assert_refused("Store",
                 "{\"where\":{\"name\":{\"$relatedTo\":{}}}}", 102, NULL);
  assert_refused("Store", "{\"where\":{\"nope\":1}}", 105, "nope");
  assert_refused("Store", "{\"where\":[1]}", 102, NULL);
  assert_refused("Store", "{\"where\":\"name\"}", 102, NULL);
  assert_refused("Store", "{\"where\":{\"name\":5}}", 111, "name");
  assert_refused("Store", "{\"where\":{\"closed\":\"yes\"}}", 111, "closed");
  assert_refused("Inventory", "{\"where\":{\"onHand\":\"5\"}}", 111, NULL);
  assert_refused("Inventory", "{\"where\":{\"onHand\":{\"a\":1}}}", 111,
                 NULL);
  assert_refused("Inventory", "{\"where\":{\"onHand\":{\"$lt\":null}}}", 111,
                 NULL);
  assert_refused("Inventory", "{\"where\":{\"onHand\":{\"$in\":5}}}", 111,
                 NULL);
  assert_refused("Inventory", "{\"where\":{\"onHand\":{\"$in\":[1,\"x\"]}}}",
                 111, NULL);
  assert_refused("Inventory", "{\"where\":{\"onHand\":{\"$exists\":1}}}", 111,
                 NULL);
  assert_refused("Order", "{\"where\":{\"lines\":[]}}", 102, "lines");
  /* too many values for one statement: every operator on every key */
  const qry_pq_class_t *inv = qry_pq_class("Inventory");
  const char *ops[] = {"$gt", "$gte", "$lt", "$lte", "$ne", "$eq", "$in",
                       "$nin"};
  json_t *where = json_object();
  for (size_t f = 0; f < inv->n_fields; f++) {
    json_t *v;
    switch (inv->fields[f].type) {
    case QRY_PQ_POINTER:
      v = json_pack("{s:s,s:s,s:s}", "__type", "Pointer", "className",
                    inv->fields[f].target->name, "objectId", U1);
      break;
    case QRY_PQ_DATE:
      v = json_string("2026-01-01T00:00:00Z");
      break;
    case QRY_PQ_TEXT:
      v = json_string("a");
      break;
    default:
      v = json_integer(1);
    }
    json_t *c = json_object();
    for (size_t o = 0; o < 8; o++)
      json_object_set_new(c, ops[o],
                          o >= 6 ? json_pack("[O]", v) : json_incref(v));
    json_decref(v);
    json_object_set_new(where, inv->fields[f].key, c);
  }
  json_t *params = json_pack("{s:o}", "where", where);
  qry_pq_t q;
  assert_int_equal(qry_pq_build(inv, params, NULL, NULL, &q), SF_EINVAL);
  assert_int_equal(q.code, 102);
  assert_non_null(strstr(q.error, "too many"));
  assert_int_equal(q.n_params, 0);
  /* the same with fewer keys fits */
  json_object_del(where, "createdAt");
  json_object_del(where, "updatedAt");
  assert_int_equal(qry_pq_build(inv, params, NULL, NULL, &q), 0);
  assert_int_equal(q.n_params, 1 + 7 * 8 + 2);
  qry_pq_free(&q);
  json_decref(params);
}

static void test_by_id(void **state) {
  (void)state;
  qry_pq_t q;
  assert_int_equal(build("Store", "{\"where\":{\"nope\":1},\"limit\":5000}",
                         U2, &q),
                   0); /* a by-id read ignores where and limit */
  assert_true(q.by_id);
  assert_has(&q, "WHERE true AND b.\"objectId\" = $2::uuid");
  assert_null(strstr(q.sql, "LIMIT"));
  assert_string_equal(q.params[1], U2);
  assert_int_equal(q.n_params, 2);
  qry_pq_free(&q);
  assert_int_equal(build("Inventory", "{}", U1 "_" U2, &q), 0);
  assert_has(&q, "b.\"store\" = $2::uuid AND b.\"product\" = $3::uuid");
  assert_string_equal(q.params[1], U1);
  assert_string_equal(q.params[2], U2);
  qry_pq_free(&q);
  assert_int_equal(build("Store", "{}", "abc", &q), SF_ENOTFOUND);
  assert_int_equal(build("Inventory", "{}", U1, &q), SF_ENOTFOUND);
  assert_int_equal(build("Inventory", "{}", U1 "-" U2, &q), SF_ENOTFOUND);
  assert_int_equal(build("Inventory", "{}", U1 "_nope", &q), SF_ENOTFOUND);
  /* keys and include still apply */
  assert_refused("Store", "{\"keys\":\"bad\"}", 105, NULL);
  assert_int_equal(build("_User", "{}", U1, &q), 0);
  assert_has(&q, "FROM users u WHERE u.disabled_at IS NULL");
  qry_pq_free(&q);
}

/* ---- rendering ---- */

#define MAX_COLS FAKE_MAX_COLS

/* text is read after rc was computed (argument order is unspecified). */
static void assert_rendered(int rc, char **text, const char *want) {
  assert_int_equal(rc, 0);
  assert_non_null(*text);
  assert_string_equal(*text, want);
  free(*text);
  *text = NULL;
}

static const char *const store_cols[] = {"objectId", "name", "location",
                                         "manager", "closed", "createdAt",
                                         "updatedAt"};

static void test_render_store_list(void **state) {
  (void)state;
  const char *const rows[][MAX_COLS] = {
      {U1, "North \"1\"", "Oslo", U2, "f", "1795705200123456",
       "1795705200123457"},
      {U2, "South", "Bergen", NULL, "t", "0", "1"}};
  PGresult *res = fake_result(7, store_cols, 2, rows);
  qry_pq_t q;
  assert_int_equal(build("Store", "{}", NULL, &q), 0);
  char *text = NULL;
  size_t len = 0;
  assert_rendered(
      qry_pq_render_list(&q, res, &text, &len), &text,
      "{\"results\":[{\"objectId\":\"" U1 "\",\"name\":\"North \\\"1\\\"\","
      "\"location\":\"Oslo\",\"manager\":{\"__type\":\"Pointer\","
      "\"className\":\"_User\",\"objectId\":\"" U2 "\"},\"closed\":false,"
      "\"createdAt\":\"2026-11-26T15:00:00.123456Z\",\"updatedAt\":"
      "\"2026-11-26T15:00:00.123457Z\"},{\"objectId\":\"" U2 "\",\"name\":"
      "\"South\",\"location\":\"Bergen\",\"closed\":true,\"createdAt\":"
      "\"1970-01-01T00:00:00.000000Z\",\"updatedAt\":"
      "\"1970-01-01T00:00:00.000001Z\"}]}");
  qry_pq_free(&q);
  /* keys: objectId, createdAt and updatedAt always come */
  assert_int_equal(build("Store", "{\"keys\":\"location\"}", NULL, &q), 0);
  assert_rendered(qry_pq_render_list(&q, res, &text, &len), &text,
                  "{\"results\":[{\"objectId\":\"" U1 "\",\"location\":"
                  "\"Oslo\",\"createdAt\":\"2026-11-26T15:00:00.123456Z\","
                  "\"updatedAt\":\"2026-11-26T15:00:00.123457Z\"},{"
                  "\"objectId\":\"" U2 "\",\"location\":\"Bergen\","
                  "\"createdAt\":\"1970-01-01T00:00:00.000000Z\","
                  "\"updatedAt\":\"1970-01-01T00:00:00.000001Z\"}]}");
  qry_pq_free(&q);
  /* by id: the first row; none: not found */
  assert_int_equal(build("Store", "{}", U1, &q), 0);
  assert_int_equal(qry_pq_render_one(&q, res, NULL, &text, &len), 0);
  assert_non_null(strstr(text, "\"name\":\"North"));
  free(text);
  PGresult *none = fake_result(7, store_cols, 0, rows);
  assert_int_equal(qry_pq_render_one(&q, none, NULL, &text, &len),
                   SF_ENOTFOUND);
  qry_pq_free(&q);
  PQclear(none);
  /* a malformed value is refused, not half-written */
  const char *const bad[][MAX_COLS] = {
      {U1, "N", "O", NULL, "maybe", "1", "1"}};
  PGresult *bres = fake_result(7, store_cols, 1, bad);
  assert_int_equal(build("Store", "{}", NULL, &q), 0);
  assert_int_equal(qry_pq_render_list(&q, bres, &text, &len), SF_EPARSE);
  qry_pq_free(&q);
  PQclear(bres);
  PQclear(res);
}

static void test_render_include_price_count(void **state) {
  (void)state;
  const char *const cols[] = {
      "@count", "objectId", "store",
      "product", "onHand", "reserved",
      "available", "version", "createdAt",
      "updatedAt", "product.objectId", "product.sku",
      "product.name", "product.category", "product.price",
      "product.reorderLevel", "product.discontinued", "product.createdAt",
      "product.updatedAt"};
  const char *const rows[][MAX_COLS] = {
      {"7", U1 "_" U2, U1, U2, "10", "3", "7", "2", "0", "0", U2, "SKU-1",
       "Widget", NULL, "12.5000", "4", "f", "0", "0"},
      {"7", U2 "_" U1, U2, U1, "-1", "0", "-1", "1", "0", "0", NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL}};
  PGresult *res = fake_result(19, cols, 2, rows);
  qry_pq_t q;
  assert_int_equal(build("Inventory",
                         "{\"include\":\"product\",\"count\":1,\"keys\":"
                         "\"product,onHand\"}",
                         NULL, &q),
                   0);
  char *text = NULL;
  size_t len = 0;
  assert_rendered(
      qry_pq_render_list(&q, res, &text, &len), &text,
      "{\"results\":[{\"objectId\":\"" U1 "_" U2 "\",\"product\":{\"__type\":"
      "\"Object\",\"className\":\"Product\",\"objectId\":\"" U2 "\",\"sku\":"
      "\"SKU-1\",\"name\":\"Widget\",\"price\":12.50,\"reorderLevel\":4,"
      "\"discontinued\":false,\"createdAt\":\"1970-01-01T00:00:00.000000Z\","
      "\"updatedAt\":\"1970-01-01T00:00:00.000000Z\"},\"onHand\":10,"
      "\"createdAt\":\"1970-01-01T00:00:00.000000Z\",\"updatedAt\":"
      "\"1970-01-01T00:00:00.000000Z\"},{\"objectId\":\"" U2 "_" U1 "\","
      "\"product\":{\"__type\":\"Pointer\",\"className\":\"Product\","
      "\"objectId\":\"" U1 "\"},\"onHand\":-1,\"createdAt\":"
      "\"1970-01-01T00:00:00.000000Z\",\"updatedAt\":"
      "\"1970-01-01T00:00:00.000000Z\"}],\"count\":7}");
  PQclear(res);
  /* count with an empty page: one row of NULLs */
  const char *const empty[][MAX_COLS] = {{"0", NULL}};
  const char *const ecols[] = {"@count", "objectId"};
  PGresult *eres = fake_result(2, ecols, 1, empty);
  assert_rendered(qry_pq_render_list(&q, eres, &text, &len), &text,
                  "{\"results\":[],\"count\":0}");
  PQclear(eres);
  qry_pq_free(&q);
}

static void test_render_order_and_user(void **state) {
  (void)state;
  const char *const cols[] = {"objectId", "store", "status",
                              "lines", "reference", "createdAt",
                              "updatedAt"};
  const char *const rows[][MAX_COLS] = {
      {U1, U2, "placed",
       "[{\"product\" : {\"__type\" : \"Pointer\", \"className\" : "
       "\"Product\", \"objectId\" : \"" U2 "\"}, \"quantity\" : 2}]",
       NULL, "0", "0"}};
  PGresult *res = fake_result(7, cols, 1, rows);
  qry_pq_t q;
  assert_int_equal(build("Order", "{}", U1, &q), 0);
  char *text = NULL;
  size_t len = 0;
  assert_rendered(
      qry_pq_render_one(&q, res, NULL, &text, &len), &text,
      "{\"objectId\":\"" U1 "\",\"store\":{\"__type\":\"Pointer\","
      "\"className\":\"Store\",\"objectId\":\"" U2 "\"},\"status\":"
      "\"placed\",\"lines\":[{\"product\":{\"__type\":\"Pointer\","
      "\"className\":\"Product\",\"objectId\":\"" U2 "\"},\"quantity\":2}],"
      "\"createdAt\":\"1970-01-01T00:00:00.000000Z\",\"updatedAt\":"
      "\"1970-01-01T00:00:00.000000Z\"}");
  qry_pq_free(&q);
  PQclear(res);
  const char *const ucols[] = {"objectId", "username", "email",
                               "role", "storeIds", "createdAt",
                               "updatedAt"};
  const char *const urows[][MAX_COLS] = {
      {U1, "ann", "ann@example.com", "viewer", "[\"" U2 "\"]", "0", "0"}};
  PGresult *ures = fake_result(7, ucols, 1, urows);
  assert_int_equal(build("_User", "{}", U1, &q), 0);
  assert_rendered(
      qry_pq_render_one(&q, ures, "tok", &text, &len), &text,
      "{\"objectId\":\"" U1 "\",\"username\":\"ann\",\"email\":"
      "\"ann@example.com\",\"role\":\"viewer\",\"storeIds\":[\"" U2 "\"],"
      "\"createdAt\":\"1970-01-01T00:00:00.000000Z\",\"updatedAt\":"
      "\"1970-01-01T00:00:00.000000Z\",\"sessionToken\":\"tok\"}");
  qry_pq_free(&q);
  PQclear(ures);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classes),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_equality_values_are_parameters),
      cmocka_unit_test(test_comparisons),
      cmocka_unit_test(test_in_nin_exists_null),
      cmocka_unit_test(test_pointers),
      cmocka_unit_test(test_dates),
      cmocka_unit_test(test_order),
      cmocka_unit_test(test_limit_skip),
      cmocka_unit_test(test_count),
      cmocka_unit_test(test_keys_include),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_by_id),
      cmocka_unit_test(test_render_store_list),
      cmocka_unit_test(test_render_include_price_count),
      cmocka_unit_test(test_render_order_and_user),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for services/query/qry_rows.c: result rows -> JSON and page
 * building. Results are built in memory with libpq's PQmakeEmptyPGresult /
 * PQsetResultAttrs / PQsetvalue, so no server is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_params.h"
#include "fake_result.h"
#include "qry_rows.h"
#include "sf/err.h"
#include "sf/json.h"

#define MAX_COLS FAKE_MAX_COLS

/* Compares the compact serialisation of v with want; frees v. */
static void assert_json(json_t *v, const char *want) {
  assert_non_null(v);
  char *got = sf_json_dumps(v);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
  json_decref(v);
}

static const char *const inv_cols[] = {"owner_id", "product_id", "sku",
                                       "name", "on_hand", "reserved",
                                       "version", "updated_us"};
#define INV_NCOLS 8
#define STORE "0190f3a1-0000-7000-8000-000000000001"
#define P1 "0190f3a1-0000-7000-8000-00000000000a"
#define P2 "0190f3a1-0000-7000-8000-00000000000b"
#define P3 "0190f3a1-0000-7000-8000-00000000000c"

static void test_inventory_row(void **state) {
  (void)state;
  const char *const rows[][MAX_COLS] = {
      {STORE, P1, "SKU-1", "Widget \"big\"", "10", "3", "4",
       "1795705200123456"},
      {STORE, P2, "SKU-2", "Gadget", "0", "0", "0", NULL}};
  PGresult *res = fake_result(INV_NCOLS, inv_cols, 2, rows);
  assert_json(qry_row(res, 0, QRY_SHAPE_INVENTORY),
              "{\"product_id\":\"" P1 "\",\"sku\":\"SKU-1\",\"name\":\"Widget "
              "\\\"big\\\"\",\"on_hand\":10,\"reserved\":3,\"available\":7,"
              "\"version\":4,\"updated_at\":\"2026-11-26T15:00:00.123456Z\"}");
  assert_json(qry_row(res, 1, QRY_SHAPE_INVENTORY),
              "{\"product_id\":\"" P2 "\",\"sku\":\"SKU-2\",\"name\":\"Gadget\","
              "\"on_hand\":0,\"reserved\":0,\"available\":0,\"version\":0,"
              "\"updated_at\":null}");
  /* out of range rows */
  assert_null(qry_row(res, 2, QRY_SHAPE_INVENTORY));
  assert_null(qry_row(res, -1, QRY_SHAPE_INVENTORY));
  /* store_id column missing: the _at variant refuses */
  assert_null(qry_row(res, 0, QRY_SHAPE_INVENTORY_AT));
  PQclear(res);
}

static void test_inventory_row_bad_cells(void **state) {
  (void)state;
  const char *const rows[][MAX_COLS] = {
      {STORE, P1, "S", "N", "10x", "3", "4", "1"},   /* bad integer */
      {STORE, P1, "S", "N", NULL, "3", "4", "1"},    /* NULL on_hand */
      {STORE, P1, NULL, "N", "1", "0", "1", "1"},    /* NULL sku */
      {STORE, P1, "S", "N", "1", "0", "", "1"},      /* empty version */
      {STORE, P1, "S", "N", "1", "0", "1", "12:00"}, /* bad time */
      {STORE, P1, "S", "N", "99999999999999999999", "0", "1", "1"}};
  PGresult *res = fake_result(INV_NCOLS, inv_cols, 6, rows);
  for (int r = 0; r < 6; r++)
    assert_null(qry_row(res, r, QRY_SHAPE_INVENTORY));
  PQclear(res);
}

static void test_inventory_at_row(void **state) {
  (void)state;
  const char *const cols[] = {"store_id", "product_id", "sku", "name",
                              "on_hand", "reserved", "version", "updated_us"};
  const char *const rows[][MAX_COLS] = {
      {STORE, P1, "S", "N", "-2", "1", "9", "0"}};
  PGresult *res = fake_result(8, cols, 1, rows);
  assert_json(qry_row(res, 0, QRY_SHAPE_INVENTORY_AT),
              "{\"store_id\":\"" STORE "\",\"product_id\":\"" P1
              "\",\"sku\":\"S\",\"name\":\"N\",\"on_hand\":-2,\"reserved\":1,"
              "\"available\":-3,\"version\":9,"
              "\"updated_at\":\"1970-01-01T00:00:00.000000Z\"}");
  PQclear(res);
}

static void test_transaction_row(void **state) {
  (void)state;
  const char *const cols[] = {
      "owner_id", "transaction_id", "store_id", "product_id", "type",
      "quantity", "delta", "on_hand", "reserved", "version",
      "reason", "reference", "actor", "created_us"};
  const char *const rows[][MAX_COLS] = {
      {STORE, P3, STORE, P1, "sale", "2", "-2", "8", "1", "5", NULL, "PO-1",
       NULL, "1795705200000001"},
      {STORE, P2, STORE, P1, "adjustment", "-1", "-1", "7", "0", "6",
       "broken", NULL, P1, "1795705200000002"},
      {STORE, P2, STORE, P1, "adjustment", "-1", "-1", "7", "0", "6",
       "broken", NULL, P1, NULL} /* created_at must not be NULL */};
  PGresult *res = fake_result(14, cols, 3, rows);
  assert_json(qry_row(res, 0, QRY_SHAPE_TRANSACTION),
              "{\"transaction_id\":\"" P3 "\",\"store_id\":\"" STORE
              "\",\"product_id\":\"" P1 "\",\"type\":\"sale\",\"quantity\":2,"
              "\"delta\":-2,\"on_hand\":8,\"reserved\":1,\"available\":7,"
              "\"version\":5,\"reason\":null,\"reference\":\"PO-1\","
              "\"actor\":null,\"created_at\":\"2026-11-26T15:00:00.000001Z\"}");
  json_t *t = qry_row(res, 1, QRY_SHAPE_TRANSACTION);
  assert_non_null(t);
  assert_string_equal(json_string_value(json_object_get(t, "reason")),
                      "broken");
  assert_string_equal(json_string_value(json_object_get(t, "actor")), P1);
  assert_true(json_is_null(json_object_get(t, "reference")));
  json_decref(t);
  assert_null(qry_row(res, 2, QRY_SHAPE_TRANSACTION));
  PQclear(res);
}

static const char *const product_cols[] = {
    "id", "sku", "name", "category", "price",
    "reorder_level", "discontinued", "version", "created_us", "updated_us",
    "total_on_hand", "total_available", "policy"};

#define POLICY                                                       \
  "{\"max_sale_quantity\" : 5, \"max_negative_adjustment\" : null, " \
  "\"count_requires_reason\" : true}"

static void test_product_row(void **state) {
  (void)state;
  const char *const rows[][MAX_COLS] = {
      {P1, "SKU-1", "Widget", "tools", "19.9900", "5", "f", "2",
       "1795705200000000", "1795705260500000", "12", "10", POLICY},
      {P2, "SKU-2", "Gadget", NULL, "3.0000", "0", "t", "1", "0", "0", "0",
       "0", POLICY},
      {P3, "SKU-3", "Bad", NULL, "3.0000", "0", "x", "1", "0", "0", "0", "0",
       POLICY},
      {P3, "SKU-3", "Bad", NULL, "-3", "0", "f", "1", "0", "0", "0", "0",
       POLICY}};
  PGresult *res = fake_result(13, product_cols, 4, rows);
  assert_json(qry_row(res, 0, QRY_SHAPE_PRODUCT),
              "{\"id\":\"" P1 "\",\"sku\":\"SKU-1\",\"name\":\"Widget\","
              "\"category\":\"tools\",\"price\":\"19.99\","
              "\"reorder_level\":5,\"discontinued\":false,\"version\":2,"
              "\"created_at\":\"2026-11-26T15:00:00.000000Z\","
              "\"updated_at\":\"2026-11-26T15:01:00.500000Z\","
              "\"total_on_hand\":12,\"total_available\":10,"
              "\"policy\":{\"max_sale_quantity\":5,"
              "\"max_negative_adjustment\":null,"
              "\"count_requires_reason\":true}}");
  json_t *p = qry_row(res, 1, QRY_SHAPE_PRODUCT);
  assert_non_null(p);
  assert_true(json_is_null(json_object_get(p, "category")));
  assert_true(json_is_true(json_object_get(p, "discontinued")));
  assert_string_equal(json_string_value(json_object_get(p, "price")), "3.00");
  json_decref(p);
  assert_null(qry_row(res, 2, QRY_SHAPE_PRODUCT)); /* bad boolean */
  assert_null(qry_row(res, 3, QRY_SHAPE_PRODUCT)); /* bad price */
  PQclear(res);
}

static void test_store_row(void **state) {
  (void)state;
  const char *const cols[] = {"id", "name", "location", "manager_id",
                              "closed", "version", "created_us", "updated_us"};
  const char *const rows[][MAX_COLS] = {
      {STORE, "Main", "Berlin", NULL, "f", "1", "0", "1000000"}};
  PGresult *res = fake_result(8, cols, 1, rows);
  assert_json(qry_row(res, 0, QRY_SHAPE_STORE),
              "{\"id\":\"" STORE "\",\"name\":\"Main\",\"location\":\"Berlin\","
              "\"manager_id\":null,\"closed\":false,\"version\":1,"
              "\"created_at\":\"1970-01-01T00:00:00.000000Z\","
              "\"updated_at\":\"1970-01-01T00:00:01.000000Z\"}");
  PQclear(res);
}

static void test_row_i64(void **state) {
  (void)state;
  const char *const cols[] = {"a", "b", "c"};
  const char *const rows[][MAX_COLS] = {{"-9223372036854775808", NULL, "7 "}};
  PGresult *res = fake_result(3, cols, 1, rows);
  int64_t v = 0;
  assert_int_equal(qry_row_i64(res, 0, "a", &v), 0);
  assert_true(v == INT64_MIN);
  assert_int_equal(qry_row_i64(res, 0, "b", &v), SF_ENOTFOUND);
  assert_int_equal(qry_row_i64(res, 0, "c", &v), SF_EPARSE);
  assert_int_equal(qry_row_i64(res, 0, "zz", &v), SF_ENOTFOUND);
  assert_int_equal(qry_row_i64(res, 1, "a", &v), SF_ENOTFOUND);
  PQclear(res);
}

/* qry_page_build's text, parsed back: the page as jansson sees it. Leaves
 * *page NULL when the build fails. */
static int build_page(const PGresult *res, const char *key, int limit,
                      qry_cursor_kind_t kind, const qry_shape_t *shape,
                      bool owner, json_t **page) {
  char *text = NULL;
  size_t len = 0;
  int rc = qry_page_build(res, key, limit, kind, shape, owner, NULL, &text,
                          &len);
  if (rc == 0) {
    assert_int_equal(strlen(text), len);
    json_error_t e;
    *page = json_loadb(text, len, 0, &e);
    assert_non_null(*page); /* the text is JSON */
    free(text);
  }
  return rc;
}

static const char *const page_rows[][MAX_COLS] = {
    {STORE, P1, "S1", "N1", "1", "0", "1", "0"},
    {STORE, P2, "S2", "N2", "2", "0", "1", "0"},
    {STORE, P3, "S3", "N3", "3", "0", "1", "0"}};

static void test_page_more_rows(void **state) {
  (void)state;
  PGresult *res = fake_result(INV_NCOLS, inv_cols, 3, page_rows);
  json_t *page = NULL;
  assert_int_equal(build_page(res, "product_id", 2,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   0);
  json_t *items = json_object_get(page, "items");
  assert_int_equal(json_array_size(items), 2);
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(items, 1), "product_id")),
      P2);
  const char *cur = json_string_value(json_object_get(page, "next_cursor"));
  assert_non_null(cur);
  char back[SF_UUID_STR_LEN + 1];
  assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_STORE_INVENTORY, back), 0);
  assert_string_equal(back, P2); /* the last row kept, not the extra one */
  json_decref(page);

  /* exactly limit rows: no next page */
  assert_int_equal(build_page(res, "product_id", 3,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   0);
  assert_int_equal(json_array_size(json_object_get(page, "items")), 3);
  assert_true(json_is_null(json_object_get(page, "next_cursor")));
  json_decref(page);
  PQclear(res);
}

static void test_page_owner_cases(void **state) {
  (void)state;
  json_t *page = NULL;
  /* no owner row: the store does not exist */
  PGresult *none = fake_result(INV_NCOLS, inv_cols, 0, NULL);
  assert_int_equal(build_page(none, "product_id", 50,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   SF_ENOTFOUND);
  assert_null(page);
  /* an unowned list may be empty */
  assert_int_equal(build_page(none, "product_id", 50,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              false, &page),
                   0);
  assert_json(page, "{\"items\":[],\"next_cursor\":null}");
  PQclear(none);

  /* the owner exists and holds nothing: one row with a NULL key */
  const char *const empty_rows[][MAX_COLS] = {
      {STORE, NULL, NULL, NULL, NULL, NULL, NULL, NULL}};
  PGresult *empty = fake_result(INV_NCOLS, inv_cols, 1, empty_rows);
  page = NULL;
  assert_int_equal(build_page(empty, "product_id", 50,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   0);
  assert_json(page, "{\"items\":[],\"next_cursor\":null}");
  PQclear(empty);
}

static void test_page_errors(void **state) {
  (void)state;
  json_t *page = NULL;
  const char *const rows[][MAX_COLS] = {
      {STORE, P1, "S1", "N1", "1", "0", "1", "0"},
      {STORE, P2, "S2", "N2", "oops", "0", "1", "0"}};
  PGresult *res = fake_result(INV_NCOLS, inv_cols, 2, rows);
  assert_int_equal(build_page(res, "product_id", 5,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   SF_EPARSE);
  assert_null(page);
  /* the bad row is beyond the page: not mapped, no error */
  assert_int_equal(build_page(res, "product_id", 1,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   0);
  assert_int_equal(json_array_size(json_object_get(page, "items")), 1);
  json_decref(page);
  page = NULL;
  /* unknown key column, bad limit */
  assert_int_equal(build_page(res, "nope", 5, QRY_CURSOR_STORE_INVENTORY,
                              QRY_SHAPE_INVENTORY, true, &page),
                   SF_EPARSE);
  assert_int_equal(build_page(res, "product_id", 0,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   SF_EPARSE);
  assert_null(page);
  PQclear(res);

  /* a key that is not a UUID cannot become a cursor */
  const char *const badkey[][MAX_COLS] = {
      {STORE, "x", "S1", "N1", "1", "0", "1", "0"},
      {STORE, "y", "S2", "N2", "1", "0", "1", "0"}};
  res = fake_result(INV_NCOLS, inv_cols, 2, badkey);
  assert_int_equal(build_page(res, "product_id", 1,
                              QRY_CURSOR_STORE_INVENTORY, QRY_SHAPE_INVENTORY,
                              true, &page),
                   SF_EPARSE);
  assert_null(page);
  PQclear(res);
}

/* Names with quotes, backslashes, control characters and non-ASCII text
 * come out as the same strings; extra's members follow next_cursor; text
 * that is not UTF-8 fails the page instead of sending invalid JSON. */
static void test_page_text_escapes_and_extra(void **state) {
  (void)state;
  const char *const rows[][MAX_COLS] = {
      {STORE, P1, "S\"1", "tab\tquote\"back\\nl\n\x01 é", "1", "0", "1", "0"}};
  PGresult *res = fake_result(INV_NCOLS, inv_cols, 1, rows);
  json_t *extra = json_pack("{s:s,s:I}", "product_id", P1, "total_on_hand",
                            (json_int_t)7);
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(qry_page_build(res, "product_id", 5,
                                  QRY_CURSOR_STORE_INVENTORY,
                                  QRY_SHAPE_INVENTORY, true, extra, &text, &len),
                   0);
  json_t *page = json_loadb(text, len, 0, NULL);
  assert_non_null(page);
  json_t *item = json_array_get(json_object_get(page, "items"), 0);
  assert_string_equal(json_string_value(json_object_get(item, "sku")), "S\"1");
  assert_string_equal(json_string_value(json_object_get(item, "name")),
                      "tab\tquote\"back\\nl\n\x01 é");
  assert_int_equal(json_integer_value(json_object_get(item, "available")), 1);
  assert_string_equal(json_string_value(json_object_get(page, "product_id")), P1);
  assert_int_equal(json_integer_value(json_object_get(page, "total_on_hand")), 7);
  assert_true(json_is_null(json_object_get(page, "next_cursor")));
  json_decref(page);
  free(text);
  json_decref(extra);
  PQclear(res);

  const char *const bad[][MAX_COLS] = {
      {STORE, P1, "S1", "bad \xff byte", "1", "0", "1", "0"}};
  res = fake_result(INV_NCOLS, inv_cols, 1, bad);
  text = NULL;
  assert_int_equal(qry_page_build(res, "product_id", 5,
                                  QRY_CURSOR_STORE_INVENTORY,
                                  QRY_SHAPE_INVENTORY, true, NULL, &text, &len),
                   SF_EPARSE);
  assert_null(text);
  PQclear(res);
}

static void test_order_row(void **state) {
  (void)state;
  static const char *const cols[] = {"owner_id", "order_id", "store_id",
                                     "status", "reference", "version",
                                     "created_us", "updated_us", "lines",
                                     "cancel_cause"};
  const char *const rows[][MAX_COLS] = {
      {STORE, P3, STORE, "placed", "PO-1", "1", "1795705200123456",
       "1795705200123456",
       "[{\"product_id\" : \"" P1 "\", \"quantity\" : 2}, "
       "{\"product_id\" : \"" P2 "\", \"quantity\" : 5}]",
       NULL},
      {STORE, P2, STORE, "cancelled", NULL, "2", "1795705200000000",
       "1795705260000000", "[]", "expired"},
      {STORE, P1, STORE, "placed", NULL, "1", "1795705200000000",
       "1795705200000000", "[{\"product_id\": ", NULL}, /* broken JSON */
  };
  PGresult *res = fake_result(10, cols, 3, rows);
  assert_json(qry_row(res, 0, QRY_SHAPE_ORDER),
              "{\"order_id\":\"" P3 "\",\"store_id\":\"" STORE "\","
              "\"status\":\"placed\",\"lines\":[{\"product_id\":\"" P1 "\","
              "\"quantity\":2},{\"product_id\":\"" P2 "\",\"quantity\":5}],"
              "\"reference\":\"PO-1\",\"version\":1,"
              "\"created_at\":\"2026-11-26T15:00:00.123456Z\","
              "\"updated_at\":\"2026-11-26T15:00:00.123456Z\","
              "\"cancel_cause\":null}");
  assert_json(qry_row(res, 1, QRY_SHAPE_ORDER),
              "{\"order_id\":\"" P2 "\",\"store_id\":\"" STORE "\","
              "\"status\":\"cancelled\",\"lines\":[],\"reference\":null,"
              "\"version\":2,\"created_at\":\"2026-11-26T15:00:00.000000Z\","
              "\"updated_at\":\"2026-11-26T15:01:00.000000Z\","
              "\"cancel_cause\":\"expired\"}");
  assert_null(qry_row(res, 2, QRY_SHAPE_ORDER)); /* never half a row */
  /* a page of orders, newest first, keyed by order_id */
  json_t *page = NULL;
  assert_int_equal(build_page(res, "order_id", 1, QRY_CURSOR_ORDERS,
                              QRY_SHAPE_ORDER, true, &page),
                   0);
  json_t *next = json_object_get(page, "next_cursor");
  assert_true(json_is_string(next));
  char id[SF_UUID_STR_LEN + 1];
  assert_int_equal(qry_cursor_decode(json_string_value(next),
                                     QRY_CURSOR_ORDERS, id),
                   0);
  assert_string_equal(id, P3);
  assert_int_equal(qry_cursor_decode(json_string_value(next),
                                     QRY_CURSOR_TRANSACTIONS, id),
                   SF_EPARSE);
  json_decref(page);
  PQclear(res);
}

static void test_change_and_snapshot_rows(void **state) {
  (void)state;
  static const char *const cols[] = {
      "id", "store_id", "product_id", "on_hand", "reserved",
      "version", "cause", "transaction_id", "occurred_us", "updated_us"};
  const char *const rows[][MAX_COLS] = {
      {"42", STORE, P1, "10", "4", "7", "order_placed", P3,
       "1795705200123456", NULL},
      {"x", STORE, P1, "10", "4", "7", "sale", P3, "1795705200123456", NULL},
  };
  PGresult *res = fake_result(10, cols, 2, rows);
  assert_json(qry_row(res, 0, QRY_SHAPE_CHANGE),
              "{\"id\":42,\"store_id\":\"" STORE "\",\"product_id\":\"" P1
              "\",\"on_hand\":10,\"reserved\":4,\"available\":6,"
              "\"version\":7,\"cause\":\"order_placed\","
              "\"transaction_id\":\"" P3 "\","
              "\"occurred_at\":\"2026-11-26T15:00:00.123456Z\"}");
  assert_null(qry_row(res, 1, QRY_SHAPE_CHANGE));
  assert_json(qry_row(res, 0, QRY_SHAPE_SNAPSHOT),
              "{\"store_id\":\"" STORE "\",\"product_id\":\"" P1 "\","
              "\"on_hand\":10,\"reserved\":4,\"available\":6,"
              "\"version\":7,\"updated_at\":null}");
  PQclear(res);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inventory_row),
      cmocka_unit_test(test_inventory_row_bad_cells),
      cmocka_unit_test(test_inventory_at_row),
      cmocka_unit_test(test_transaction_row),
      cmocka_unit_test(test_product_row),
      cmocka_unit_test(test_store_row),
      cmocka_unit_test(test_row_i64),
      cmocka_unit_test(test_page_more_rows),
      cmocka_unit_test(test_page_owner_cases),
      cmocka_unit_test(test_page_errors),
      cmocka_unit_test(test_page_text_escapes_and_extra),
      cmocka_unit_test(test_order_row),
      cmocka_unit_test(test_change_and_snapshot_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

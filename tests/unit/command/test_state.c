/* Unit tests for cmd_state: the fold and the rules of stock commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmd_state.h"
#include "sf/err.h"

#define STORE "0190f5a0-0000-7000-8000-000000000001"
#define STORE2 "0190f5a0-0000-7000-8000-000000000002"
#define PROD "0190f5a0-0000-7000-8000-0000000000a1"
#define PROD2 "0190f5a0-0000-7000-8000-0000000000a2"
#define ORDER "0190f5a0-0000-7000-8000-0000000000d1"
#define ORDER2 "0190f5a0-0000-7000-8000-0000000000d2"

static void open_store(cmd_state_t *s, const char *id) {
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(cmd_decide_store_open(s, id, "Main", "Lyon", NULL, &e),
                   CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  assert_int_equal(r, CMD_APPLY_APPLIED);
}

static void create_product(cmd_state_t *s, const char *id, const char *sku) {
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(
      cmd_decide_product_create(s, id, sku, "Widget", NULL, "1.50", 3, &e),
      CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  assert_int_equal(r, CMD_APPLY_APPLIED);
}

static int setup(void **st) {
  cmd_state_t *s = NULL;
  assert_int_equal(cmd_state_new(&s), 0);
  open_store(s, STORE);
  create_product(s, PROD, "SKU-1");
  *st = s;
  return 0;
}

static int teardown(void **st) {
  cmd_state_destroy(*st);
  return 0;
}

/* Decides and applies a movement; returns the verdict. */
static cmd_verdict_t move(cmd_state_t *s, sf_movement_t m, int64_t q,
                          int64_t if_match) {
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE, PROD, m, q, "why", NULL, if_match};
  cmd_verdict_t v = cmd_decide_movement(s, &c, &e);
  if (v == CMD_OK) {
    cmd_apply_result_t r;
    assert_int_equal(cmd_state_apply(s, &e, &r), 0);
    assert_int_equal(r, CMD_APPLY_APPLIED);
  }
  return v;
}

static void test_receipt_sale_oversell(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 10, -1), CMD_OK);
  assert_int_equal(move(s, SF_MOVE_SALE, 3, -1), CMD_OK);
  assert_int_equal(move(s, SF_MOVE_SALE, 8, -1), CMD_INSUFFICIENT_STOCK);
  cmd_stock_row_t row;
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 7);
  assert_int_equal(row.version, 2);
  assert_int_equal(move(s, SF_MOVE_SALE, 7, -1), CMD_OK);
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 0);
  assert_int_equal(row.version, 3);
}

static void test_event_fields(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 5, -1), CMD_OK);
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE, PROD, SF_MOVE_COUNT, 2, NULL, "cnt", -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  assert_int_equal(e.type, SF_EV_STOCK_MOVED);
  assert_string_equal(e.store_id, STORE);
  assert_string_equal(e.product_id, PROD);
  assert_int_equal(e.stream_version, 2);
  assert_int_equal(e.stock.delta, -3);
  assert_int_equal(e.stock.on_hand, 2);
  assert_int_equal(e.stock.quantity, 2);
  assert_string_equal(e.stock.reference, "cnt");
  /* deciding does not change the state */
  cmd_stock_row_t row;
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 5);
}

static void test_adjustment_and_count(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_ADJUSTMENT, 5, -1), CMD_OK);
  assert_int_equal(move(s, SF_MOVE_ADJUSTMENT, -6, -1), CMD_INSUFFICIENT_STOCK);
  assert_int_equal(move(s, SF_MOVE_ADJUSTMENT, -5, -1), CMD_OK);
  assert_int_equal(move(s, SF_MOVE_COUNT, 0, -1), CMD_OK);
  assert_int_equal(move(s, SF_MOVE_COUNT, 12, -1), CMD_OK);
  cmd_stock_row_t row;
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 12);
  assert_int_equal(row.version, 4);
}

static void test_if_match(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 1, 0), CMD_OK);
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 1, 0), CMD_VERSION_CONFLICT);
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 1, 1), CMD_OK);
}

static void test_unknown_ids(void **st) {
  cmd_state_t *s = *st;
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE2, PROD, SF_MOVE_RECEIPT, 1, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_NOT_FOUND_STORE);
  cmd_movement_cmd_t c2 = {STORE, PROD2, SF_MOVE_RECEIPT, 1, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c2, &e), CMD_NOT_FOUND_PRODUCT);
  cmd_movement_cmd_t c3 = {"not-a-uuid", PROD, SF_MOVE_RECEIPT, 1, NULL, NULL,
                           -1};
  assert_int_equal(cmd_decide_movement(s, &c3, &e), CMD_NOT_FOUND_STORE);
}

static void test_duplicate_sku(void **st) {
  cmd_state_t *s = *st;
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(cmd_decide_product_create(s, PROD2, "SKU-1", "Other", NULL,
                                             "2", 0, &e),
                   CMD_DUPLICATE_SKU);
  assert_true(cmd_state_sku_taken(s, "SKU-1"));
  assert_false(cmd_state_sku_taken(s, "SKU-2"));
}

static void test_replayed_events_are_skipped(void **st) {
  cmd_state_t *s = *st;
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE, PROD, SF_MOVE_RECEIPT, 4, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  assert_int_equal(r, CMD_APPLY_APPLIED);
  /* the same event again (a broker-side duplicate) changes nothing */
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  assert_int_equal(r, CMD_APPLY_DUPLICATE);
  cmd_stock_row_t row;
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 4);
  assert_int_equal(row.version, 1);
  /* a second ProductCreated for the same id is a duplicate too */
  sf_event_t p;
  sf_event_init(&p);
  p.type = SF_EV_PRODUCT_CREATED;
  strcpy(p.product_id, PROD);
  p.stream_version = 1;
  p.product.sku = "SKU-1";
  p.product.name = "Widget";
  p.product.price = "1.50";
  assert_int_equal(cmd_state_apply(s, &p, &r), 0);
  assert_int_equal(r, CMD_APPLY_DUPLICATE);
  assert_int_equal(cmd_state_n_products(s), 1);
}

static void test_closed_and_discontinued(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 3, -1), CMD_OK);
  sf_event_t d;
  sf_event_init(&d);
  d.type = SF_EV_PRODUCT_DISCONTINUED;
  strcpy(d.product_id, PROD);
  d.stream_version = 2;
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &d, &r), 0);
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 1, -1), CMD_PRODUCT_DISCONTINUED);
  assert_int_equal(move(s, SF_MOVE_SALE, 1, -1), CMD_OK);
  sf_event_t cl;
  sf_event_init(&cl);
  cl.type = SF_EV_STORE_CLOSED;
  strcpy(cl.store_id, STORE);
  cl.stream_version = 2;
  assert_int_equal(cmd_state_apply(s, &cl, &r), 0);
  assert_int_equal(move(s, SF_MOVE_SALE, 1, -1), CMD_STORE_CLOSED);
}

static void test_invalid_events_rejected(void **st) {
  cmd_state_t *s = *st;
  sf_event_t e;
  sf_event_init(&e);
  e.type = SF_EV_STOCK_MOVED;
  strcpy(e.store_id, STORE);
  strcpy(e.product_id, PROD);
  e.stream_version = 1;
  e.stock.on_hand = -1;
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), SF_EINVAL);
  e.stock.on_hand = 1;
  e.stock.reserved = 2;
  assert_int_equal(cmd_state_apply(s, &e, &r), SF_EINVAL);
  assert_int_equal(cmd_state_n_stock(s), 0);
  sf_event_t u;
  sf_event_init(&u);
  u.type = SF_EV_PRODUCT_UPDATED;
  strcpy(u.product_id, PROD2); /* never created */
  u.stream_version = 2;
  assert_int_equal(cmd_state_apply(s, &u, &r), SF_EINVAL);
}

static void test_quantity_rules(void **st) {
  (void)st;
  assert_null(cmd_check_movement(SF_MOVE_RECEIPT, 1, NULL));
  assert_non_null(cmd_check_movement(SF_MOVE_RECEIPT, 0, NULL));
  assert_non_null(cmd_check_movement(SF_MOVE_SALE, -1, NULL));
  assert_non_null(cmd_check_movement(SF_MOVE_SALE, INT64_C(2147483648), NULL));
  assert_null(cmd_check_movement(SF_MOVE_SALE, INT64_C(2147483647), NULL));
  assert_non_null(cmd_check_movement(SF_MOVE_ADJUSTMENT, 0, "x"));
  assert_non_null(cmd_check_movement(SF_MOVE_ADJUSTMENT, 3, NULL));
  assert_non_null(cmd_check_movement(SF_MOVE_ADJUSTMENT, 3, ""));
  assert_null(cmd_check_movement(SF_MOVE_ADJUSTMENT, -3, "damage"));
  assert_null(cmd_check_movement(SF_MOVE_COUNT, 0, NULL));
  assert_non_null(cmd_check_movement(SF_MOVE_COUNT, -1, NULL));
  assert_non_null(cmd_check_movement((sf_movement_t)99, 1, NULL));
}

static void test_verdict_mapping(void **st) {
  (void)st;
  assert_int_equal(cmd_verdict_status(CMD_INSUFFICIENT_STOCK), 409);
  assert_string_equal(cmd_verdict_code(CMD_INSUFFICIENT_STOCK),
                      "insufficient_stock");
  assert_int_equal(cmd_verdict_status(CMD_NOT_FOUND_PRODUCT), 404);
  assert_int_equal(cmd_verdict_status(CMD_VERSION_CONFLICT), 412);
  assert_string_equal(cmd_verdict_code(CMD_DUPLICATE_SKU), "duplicate_sku");
}

static void test_orders_reserve_and_finish(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 10, -1), CMD_OK);
  sf_order_line_t in[1] = {{PROD, 4, 0, 0, 0}}, out[1];
  bool shorts[1];
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(cmd_decide_order_place(s, STORE, ORDER, in, 1, "po", out,
                                          shorts, &e),
                   CMD_OK);
  assert_int_equal(out[0].reserved, 4);
  assert_int_equal(out[0].on_hand, 10);
  assert_int_equal(out[0].version, 2);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  /* available is 6 now: a sale of 7 is refused, 6 is fine */
  assert_int_equal(move(s, SF_MOVE_SALE, 7, -1), CMD_INSUFFICIENT_STOCK);
  /* a count below the reservation is refused */
  assert_int_equal(move(s, SF_MOVE_COUNT, 3, -1), CMD_COUNT_BELOW_RESERVED);
  /* a second order for 7 is short and names its line */
  sf_order_line_t in2[1] = {{PROD, 7, 0, 0, 0}};
  sf_event_t e2;
  sf_event_init(&e2);
  assert_int_equal(cmd_decide_order_place(s, STORE, ORDER2, in2, 1, NULL, out,
                                          shorts, &e2),
                   CMD_INSUFFICIENT_STOCK);
  assert_true(shorts[0]);
  /* fulfil: reserved units leave on hand */
  sf_order_line_t fin[CMD_MAX_LINES];
  sf_event_t f;
  sf_event_init(&f);
  assert_int_equal(cmd_decide_order_finish(s, ORDER, true, fin, &f), CMD_OK);
  assert_int_equal(cmd_state_apply(s, &f, &r), 0);
  cmd_stock_row_t row;
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 6);
  assert_int_equal(row.reserved, 0);
  /* a second fulfil or a cancel is invalid_state */
  assert_int_equal(cmd_decide_order_finish(s, ORDER, true, fin, &f),
                   CMD_INVALID_STATE);
  assert_int_equal(cmd_decide_order_finish(s, ORDER, false, fin, &f),
                   CMD_INVALID_STATE);
  assert_int_equal(cmd_decide_order_finish(s, ORDER2, false, fin, &f),
                   CMD_NOT_FOUND_ORDER);
}

static void test_order_cancel_releases(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 5, -1), CMD_OK);
  sf_order_line_t in[1] = {{PROD, 5, 0, 0, 0}}, out[1];
  bool shorts[1];
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(
      cmd_decide_order_place(s, STORE, ORDER, in, 1, NULL, out, shorts, &e),
      CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  assert_int_equal(move(s, SF_MOVE_SALE, 1, -1), CMD_INSUFFICIENT_STOCK);
  sf_order_line_t fin[CMD_MAX_LINES];
  sf_event_t c;
  sf_event_init(&c);
  assert_int_equal(cmd_decide_order_finish(s, ORDER, false, fin, &c), CMD_OK);
  assert_int_equal(cmd_state_apply(s, &c, &r), 0);
  assert_int_equal(move(s, SF_MOVE_SALE, 5, -1), CMD_OK);
  /* duplicate lines are refused */
  sf_order_line_t dup[2] = {{PROD, 1, 0, 0, 0}, {PROD, 1, 0, 0, 0}};
  sf_order_line_t out2[2];
  bool shorts2[2];
  assert_int_equal(cmd_decide_order_place(s, STORE, ORDER2, dup, 2, NULL, out2,
                                          shorts2, &e),
                   CMD_DUPLICATE_LINE);
}

static void test_transfer_legs(void **st) {
  cmd_state_t *s = *st;
  open_store(s, STORE2);
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 8, -1), CMD_OK);
  sf_event_t out, in;
  sf_event_init(&out);
  sf_event_init(&in);
  assert_int_equal(cmd_decide_transfer(s, STORE, STORE2, PROD, 9, NULL, ORDER,
                                       &out, &in),
                   CMD_INSUFFICIENT_STOCK);
  assert_int_equal(cmd_decide_transfer(s, STORE, STORE, PROD, 1, NULL, ORDER,
                                       &out, &in),
                   CMD_SAME_STORE);
  assert_int_equal(cmd_decide_transfer(s, STORE, STORE2, PROD, 8, "t", ORDER,
                                       &out, &in),
                   CMD_OK);
  assert_int_equal(out.stock.delta, -8);
  assert_int_equal(in.stock.delta, 8);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &out, &r), 0);
  assert_int_equal(cmd_state_apply(s, &in, &r), 0);
  cmd_stock_row_t a, b;
  cmd_state_stock(s, STORE, PROD, &a);
  cmd_state_stock(s, STORE2, PROD, &b);
  assert_int_equal(a.on_hand + b.on_hand, 8); /* nothing created or lost */
  assert_int_equal(b.on_hand, 8);
}

static void test_savepoint_rollback(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 3, -1), CMD_OK);
  cmd_state_savepoint(s);
  assert_int_equal(move(s, SF_MOVE_SALE, 2, -1), CMD_OK);
  assert_int_equal(move(s, SF_MOVE_RECEIPT, 10, -1), CMD_OK);
  cmd_state_rollback(s);
  cmd_stock_row_t row;
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 3);
  assert_int_equal(row.version, 1);
  /* a row created inside the savepoint disappears */
  open_store(s, STORE2);
  cmd_state_savepoint(s);
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE2, PROD, SF_MOVE_RECEIPT, 1, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  size_t before = cmd_state_n_stock(s);
  cmd_state_rollback(s);
  assert_int_equal(cmd_state_n_stock(s), before - 1);
  /* release keeps the changes */
  cmd_state_savepoint(s);
  assert_int_equal(move(s, SF_MOVE_SALE, 1, -1), CMD_OK);
  cmd_state_release(s);
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.on_hand, 2);
}

static void test_idempotency_keys(void **st) {
  cmd_state_t *s = *st;
  cmd_idem_view_t v;
  assert_false(cmd_state_idem_get(s, "k", &v));
  assert_int_equal(cmd_state_idem_begin(s, "k", "h1", 100), 0);
  assert_int_equal(cmd_state_idem_begin(s, "k", "h1", 100), SF_EEXISTS);
  assert_true(cmd_state_idem_get(s, "k", &v));
  assert_true(v.pending);
  assert_int_equal(cmd_state_idem_finish(s, "k", "h1", 201, "{\"a\":1}", 100),
                   0);
  assert_true(cmd_state_idem_get(s, "k", &v));
  assert_false(v.pending);
  assert_int_equal(v.status, 201);
  assert_string_equal(v.body, "{\"a\":1}");
  assert_string_equal(v.request_hash, "h1");
  /* the first answer stays; dropping an answered key does nothing */
  assert_int_equal(cmd_state_idem_finish(s, "k", "h1", 409, "{}", 100), 0);
  cmd_state_idem_drop(s, "k");
  assert_true(cmd_state_idem_get(s, "k", &v));
  assert_int_equal(v.status, 201);
  /* a pending key can be dropped */
  assert_int_equal(cmd_state_idem_begin(s, "p", "h2", 100), 0);
  cmd_state_idem_drop(s, "p");
  assert_false(cmd_state_idem_get(s, "p", &v));
  /* expiry */
  assert_int_equal(cmd_state_idem_expire(s, 99), 0);
  assert_int_equal(cmd_state_idem_expire(s, 101), 1);
  assert_int_equal(cmd_state_n_idem(s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_receipt_sale_oversell, setup, teardown),
      cmocka_unit_test_setup_teardown(test_event_fields, setup, teardown),
      cmocka_unit_test_setup_teardown(test_adjustment_and_count, setup, teardown),
      cmocka_unit_test_setup_teardown(test_if_match, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_ids, setup, teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_sku, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replayed_events_are_skipped, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_closed_and_discontinued, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_invalid_events_rejected, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_orders_reserve_and_finish, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_order_cancel_releases, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_transfer_legs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_savepoint_rollback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idempotency_keys, setup, teardown),
      cmocka_unit_test(test_quantity_rules),
      cmocka_unit_test(test_verdict_mapping),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

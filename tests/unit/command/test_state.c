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

/* ---- rules: low-stock crossings ---- */

/* Decides a movement of PROD at STORE, folds it and its crossing; returns
 * how many crossing events it caused (0 or 1), the crossing in *x. */
static size_t move_x(cmd_state_t *s, sf_movement_t m, int64_t q,
                     sf_event_t *x) {
  sf_event_t e;
  sf_event_init(&e);
  strcpy(e.command_id, "0190f5a0-0000-7000-8000-0000000000c1");
  cmd_movement_cmd_t c = {STORE, PROD, m, q, "why", NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  size_t n = cmd_state_crossings(s, &e, x, 1);
  if (n) {
    assert_int_equal(x->stream_version, e.stream_version);
    assert_string_equal(x->command_id, e.command_id);
    assert_string_equal(x->store_id, STORE);
    assert_string_equal(x->product_id, PROD);
    assert_true(x->crossing.on_hand == e.stock.on_hand);
    assert_true(x->crossing.reserved == e.stock.reserved);
    assert_int_equal(cmd_state_apply(s, x, &r), 0);
    assert_int_equal(r, CMD_APPLY_APPLIED);
  }
  return n;
}

static void test_crossing_once_per_crossing(void **st) {
  cmd_state_t *s = *st; /* PROD's reorder level is 3 */
  sf_event_t x;
  assert_int_equal(move_x(s, SF_MOVE_RECEIPT, 10, &x), 0);
  assert_int_equal(move_x(s, SF_MOVE_SALE, 7, &x), 0); /* 3: not below */
  assert_int_equal(move_x(s, SF_MOVE_SALE, 1, &x), 1); /* 2 */
  assert_int_equal(x.type, SF_EV_STOCK_BELOW_REORDER);
  assert_int_equal(x.crossing.reorder_level, 3);
  assert_int_equal(move_x(s, SF_MOVE_SALE, 1, &x), 0); /* still below */
  assert_int_equal(move_x(s, SF_MOVE_COUNT, 0, &x), 0);
  assert_int_equal(move_x(s, SF_MOVE_RECEIPT, 2, &x), 0); /* 2 */
  assert_int_equal(move_x(s, SF_MOVE_RECEIPT, 1, &x), 1); /* 3: restored */
  assert_int_equal(x.type, SF_EV_STOCK_RESTORED);
  assert_int_equal(move_x(s, SF_MOVE_RECEIPT, 100, &x), 0);
  assert_int_equal(move_x(s, SF_MOVE_ADJUSTMENT, -101, &x), 1); /* 2 */
  assert_int_equal(x.type, SF_EV_STOCK_BELOW_REORDER);
  /* a row first moved below the level crosses at its first event */
  open_store(s, STORE2);
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE2, PROD, SF_MOVE_RECEIPT, 1, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  assert_int_equal(cmd_state_crossings(s, &e, &x, 1), 1);
  assert_int_equal(x.type, SF_EV_STOCK_BELOW_REORDER);
  assert_int_equal(cmd_state_crossings(s, &e, &x, 0), 0); /* no room */
}

static void test_crossing_level_zero_and_predicate(void **st) {
  cmd_state_t *s = *st;
  create_product(s, PROD2, "SKU-2");
  sf_event_t u;
  sf_event_init(&u);
  assert_int_equal(
      cmd_decide_product_update(s, PROD2, NULL, NULL, NULL, true, 0, &u),
      CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &u, &r), 0);
  sf_event_t e, x;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE, PROD2, SF_MOVE_RECEIPT, 1, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  assert_int_equal(cmd_state_crossings(s, &e, &x, 1), 0); /* 0: no level */
  assert_false(cmd_below_reorder(0, 0, 0));
  assert_true(cmd_below_reorder(5, 3, 3)); /* available 2 */
  assert_false(cmd_below_reorder(6, 3, 3));
  /* types without stock levels cause none */
  assert_int_equal(cmd_state_crossings(s, &u, &x, 1), 0);
}

static void test_crossing_orders(void **st) {
  cmd_state_t *s = *st;
  create_product(s, PROD2, "SKU-2");
  sf_event_t x[2];
  assert_int_equal(move_x(s, SF_MOVE_RECEIPT, 5, x), 0);
  sf_movement_t rc = SF_MOVE_RECEIPT;
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE, PROD2, rc, 10, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  /* reserving 4 of PROD (available 1) crosses; 1 of PROD2 (9) does not */
  sf_order_line_t in[2] = {{PROD, 4, 0, 0, 0}, {PROD2, 1, 0, 0, 0}}, out[2];
  bool shorts[2];
  sf_event_t o;
  sf_event_init(&o);
  assert_int_equal(
      cmd_decide_order_place(s, STORE, ORDER, in, 2, NULL, out, shorts, &o),
      CMD_OK);
  assert_int_equal(cmd_state_crossings(s, &o, x, 2), 1);
  assert_int_equal(x[0].type, SF_EV_STOCK_BELOW_REORDER);
  assert_string_equal(x[0].product_id, PROD);
  assert_true(x[0].crossing.reserved == 4);
  assert_int_equal(x[0].stream_version, out[0].version);
  assert_int_equal(cmd_state_apply(s, &o, &r), 0);
  assert_int_equal(cmd_state_apply(s, &x[0], &r), 0);
  /* the cancel releases it: restored */
  sf_order_line_t fin[CMD_MAX_LINES];
  sf_event_t cn;
  sf_event_init(&cn);
  assert_int_equal(cmd_decide_order_finish(s, ORDER, false, fin, &cn), CMD_OK);
  assert_int_equal(cmd_state_crossings(s, &cn, x, 2), 1);
  assert_int_equal(x[0].type, SF_EV_STOCK_RESTORED);
}

static void test_crossing_fold_rules(void **st) {
  cmd_state_t *s = *st;
  sf_event_t x;
  cmd_apply_result_t r;
  assert_int_equal(move_x(s, SF_MOVE_RECEIPT, 2, &x), 1); /* version 1 */
  /* the same crossing again (a replay): skipped */
  assert_int_equal(cmd_state_apply(s, &x, &r), 0);
  assert_int_equal(r, CMD_APPLY_DUPLICATE);
  /* of a version the row never reached: refused */
  sf_event_t bad = x;
  bad.stream_version = 5;
  assert_int_equal(cmd_state_apply(s, &bad, &r), SF_EINVAL);
  /* of a row that never moved: refused */
  bad = x;
  strcpy(bad.store_id, STORE2);
  assert_int_equal(cmd_state_apply(s, &bad, &r), SF_EINVAL);
  /* an older crossing after newer events: skipped, flag unchanged */
  assert_int_equal(move_x(s, SF_MOVE_RECEIPT, 5, &x), 1); /* restored, v2 */
  sf_event_t old = x;
  old.type = SF_EV_STOCK_BELOW_REORDER;
  old.stream_version = 1;
  assert_int_equal(cmd_state_apply(s, &old, &r), 0);
  assert_int_equal(r, CMD_APPLY_DUPLICATE);
  assert_int_equal(move_x(s, SF_MOVE_SALE, 1, &x), 0); /* 6: still fine */
  /* a savepoint rollback puts the flag back with the levels */
  cmd_state_savepoint(s);
  assert_int_equal(move_x(s, SF_MOVE_SALE, 5, &x), 1); /* 1: below */
  cmd_state_rollback(s);
  assert_int_equal(move_x(s, SF_MOVE_SALE, 5, &x), 1); /* below again */
  assert_int_equal(x.type, SF_EV_STOCK_BELOW_REORDER);
}

/* ---- rules: policies ---- */

static void set_policy(cmd_state_t *s, const cmd_policy_t *pol) {
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(cmd_decide_product_policy(s, PROD, pol, &e), CMD_OK);
  assert_int_equal(e.type, SF_EV_PRODUCT_POLICY_SET);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  assert_int_equal(r, CMD_APPLY_APPLIED);
}

static cmd_verdict_t move_reason(cmd_state_t *s, sf_movement_t m, int64_t q,
                                 const char *reason) {
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE, PROD, m, q, reason, NULL, -1};
  cmd_verdict_t v = cmd_decide_movement(s, &c, &e);
  if (v == CMD_OK) {
    cmd_apply_result_t r;
    assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  }
  return v;
}

static void test_policy_check_pure(void **st) {
  (void)st;
  cmd_policy_t none = {0};
  assert_int_equal(cmd_policy_check(&none, SF_MOVE_SALE, 1000000, NULL),
                   CMD_OK);
  assert_int_equal(cmd_policy_check(&none, SF_MOVE_COUNT, 0, NULL), CMD_OK);
  cmd_policy_t p = {true, 5, true, 3, true};
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_SALE, 5, NULL), CMD_OK);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_SALE, 6, NULL),
                   CMD_POLICY_MAX_SALE);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_RECEIPT, 600, NULL), CMD_OK);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_RETURN, 600, NULL), CMD_OK);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_ADJUSTMENT, -3, "x"), CMD_OK);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_ADJUSTMENT, -4, "x"),
                   CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_ADJUSTMENT, 400, "x"),
                   CMD_OK); /* only removals are bounded */
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_COUNT, 1, NULL),
                   CMD_POLICY_REASON_REQUIRED);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_COUNT, 1, ""),
                   CMD_POLICY_REASON_REQUIRED);
  assert_int_equal(cmd_policy_check(&p, SF_MOVE_COUNT, 1, "audit"), CMD_OK);
  cmd_policy_t zero = {false, 0, true, 0, false}; /* no removal at all */
  assert_int_equal(cmd_policy_check(&zero, SF_MOVE_ADJUSTMENT, -1, "x"),
                   CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT);
  assert_int_equal(cmd_verdict_status(CMD_POLICY_MAX_SALE), 409);
  assert_string_equal(cmd_verdict_code(CMD_POLICY_MAX_SALE),
                      "policy_max_sale_quantity");
  assert_string_equal(cmd_verdict_code(CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT),
                      "policy_max_negative_adjustment");
  assert_string_equal(cmd_verdict_code(CMD_POLICY_REASON_REQUIRED),
                      "policy_reason_required");
  assert_int_equal(cmd_verdict_status(CMD_POLICY_REASON_REQUIRED), 409);
}

static void test_policy_enforced(void **st) {
  cmd_state_t *s = *st;
  assert_int_equal(move_reason(s, SF_MOVE_RECEIPT, 50, NULL), CMD_OK);
  cmd_policy_t p = {true, 5, true, 3, true};
  set_policy(s, &p);
  cmd_product_view_t v;
  assert_true(cmd_state_product(s, PROD, &v));
  assert_int_equal(v.version, 2); /* the policy moves the product stream */
  assert_true(v.policy.has_max_sale && v.policy.max_sale_quantity == 5);
  assert_int_equal(move_reason(s, SF_MOVE_SALE, 6, NULL), CMD_POLICY_MAX_SALE);
  assert_int_equal(move_reason(s, SF_MOVE_SALE, 5, NULL), CMD_OK);
  assert_int_equal(move_reason(s, SF_MOVE_ADJUSTMENT, -4, "broken"),
                   CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT);
  assert_int_equal(move_reason(s, SF_MOVE_ADJUSTMENT, -3, "broken"), CMD_OK);
  assert_int_equal(move_reason(s, SF_MOVE_COUNT, 10, NULL),
                   CMD_POLICY_REASON_REQUIRED);
  assert_int_equal(move_reason(s, SF_MOVE_COUNT, 10, "audit"), CMD_OK);
  /* the stock rule still comes after the policy */
  assert_int_equal(move_reason(s, SF_MOVE_SALE, 5, NULL), CMD_OK);
  assert_int_equal(move_reason(s, SF_MOVE_SALE, 5, NULL), CMD_OK);
  assert_int_equal(move_reason(s, SF_MOVE_SALE, 1, NULL),
                   CMD_INSUFFICIENT_STOCK);
  /* a new policy replaces the whole policy */
  cmd_policy_t q = {false, 0, false, 0, false};
  set_policy(s, &q);
  assert_int_equal(move_reason(s, SF_MOVE_RECEIPT, 100, NULL), CMD_OK);
  assert_int_equal(move_reason(s, SF_MOVE_SALE, 50, NULL), CMD_OK);
  assert_int_equal(move_reason(s, SF_MOVE_COUNT, 60, NULL), CMD_OK);
  /* unknown product */
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(cmd_decide_product_policy(s, PROD2, &q, &e),
                   CMD_NOT_FOUND_PRODUCT);
  /* a replayed policy event is skipped */
  sf_event_init(&e);
  assert_int_equal(cmd_decide_product_policy(s, PROD, &p, &e), CMD_OK);
  e.stream_version = 2;
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  assert_int_equal(r, CMD_APPLY_DUPLICATE);
  assert_int_equal(move_reason(s, SF_MOVE_SALE, 6, NULL), CMD_OK);
}

/* ---- rules: expiry of reservations ---- */

#define T0 INT64_C(1795705200000000)
#define TTL INT64_C(60000000) /* 60 s */

static void place_at(cmd_state_t *s, const char *id,
                     int64_t q, int64_t at, sf_event_t *log, size_t *n_log,
                     sf_order_line_t *lines_store) {
  sf_order_line_t in[1] = {{PROD, q, 0, 0, 0}};
  bool shorts[1];
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(cmd_decide_order_place(s, STORE, id, in, 1, NULL,
                                          lines_store, shorts, &e),
                   CMD_OK);
  e.occurred_at_us = at;
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  log[(*n_log)++] = e;
}

/* 10 received, then ORDER (4) placed at T0 and ORDER2 (3) at second_at;
 * the events go to log. */
static void two_orders(cmd_state_t *s, int64_t second_at, sf_event_t *log,
                       size_t *n_log, sf_order_line_t l[2]) {
  sf_event_t e;
  sf_event_init(&e);
  cmd_movement_cmd_t c = {STORE, PROD, SF_MOVE_RECEIPT, 10, NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &c, &e), CMD_OK);
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, &e, &r), 0);
  log[(*n_log)++] = e;
  place_at(s, ORDER, 4, T0, log, n_log, &l[0]);
  place_at(s, ORDER2, 3, second_at, log, n_log, &l[1]);
}

static void test_expiry(void **st) {
  cmd_state_t *s = *st;
  sf_event_t log[8];
  size_t n_log = 0;
  cmd_apply_result_t r;
  sf_order_line_t l[2];
  two_orders(s, T0 + 10000000, log, &n_log, l);
  assert_int_equal(cmd_state_n_open_orders(s), 2);

  char ids[4][SF_ID_LEN];
  assert_int_equal(cmd_state_due_orders(s, T0 + TTL - 1, TTL, ids, 4), 0);
  assert_int_equal(cmd_state_due_orders(s, T0 + TTL, TTL, ids, 4), 1);
  assert_string_equal(ids[0], ORDER);
  assert_int_equal(cmd_state_due_orders(s, T0 + 10 * TTL, 0, ids, 4), 0);
  assert_int_equal(cmd_state_due_orders(s, T0 + 10 * TTL, TTL, ids, 1), 1);
  assert_false(cmd_order_due(T0, T0 + 10 * TTL, 0));
  assert_true(cmd_order_due(T0, T0 + TTL, TTL));

  sf_order_line_t fin[CMD_MAX_LINES];
  sf_event_t x;
  sf_event_init(&x);
  assert_int_equal(
      cmd_decide_order_expire(s, ORDER2, T0 + TTL, TTL, fin, &x), CMD_NOT_DUE);
  assert_int_equal(cmd_decide_order_expire(s, ORDER, T0 + TTL, TTL, fin, &x),
                   CMD_OK);
  assert_int_equal(x.type, SF_EV_ORDER_CANCELLED);
  assert_string_equal(x.order.cause, CMD_CAUSE_EXPIRED);
  assert_string_equal(x.order.order_id, ORDER);
  assert_true(fin[0].reserved == 3); /* 7 reserved, 4 released */
  assert_int_equal(cmd_state_apply(s, &x, &r), 0);
  /* expired: never again, and its stock is available */
  assert_int_equal(cmd_state_due_orders(s, T0 + 10 * TTL, TTL, ids, 4), 1);
  assert_string_equal(ids[0], ORDER2);
  assert_int_equal(cmd_decide_order_expire(s, ORDER, T0 + TTL, TTL, fin, &x),
                   CMD_INVALID_STATE);
  cmd_stock_row_t row;
  cmd_state_stock(s, STORE, PROD, &row);
  assert_int_equal(row.reserved, 3);
  /* a cancel by command is not an expiry */
  sf_event_t cn;
  sf_event_init(&cn);
  assert_int_equal(cmd_decide_order_finish(s, ORDER2, false, fin, &cn),
                   CMD_OK);
  assert_null(cn.order.cause);
  /* a fulfilled order is never expired */
  sf_event_t f;
  sf_event_init(&f);
  assert_int_equal(cmd_decide_order_finish(s, ORDER2, true, fin, &f), CMD_OK);
  assert_null(f.order.cause);
  assert_int_equal(cmd_state_apply(s, &f, &r), 0);
  assert_int_equal(cmd_state_due_orders(s, T0 + 10 * TTL, TTL, ids, 4), 0);
  assert_int_equal(
      cmd_decide_order_expire(s, ORDER2, T0 + 10 * TTL, TTL, fin, &x),
      CMD_INVALID_STATE);
  assert_int_equal(cmd_decide_order_expire(s, "0190f5a0-0000-7000-8000-00000000"
                                              "00ff",
                                           T0, TTL, fin, &x),
                   CMD_NOT_FOUND_ORDER);
  assert_int_equal(cmd_state_n_open_orders(s), 0);
}

/* The due time comes from the log: a state rebuilt from the same events
 * has the same orders due, and expired orders stay expired. */
static void test_expiry_survives_rebuild(void **st) {
  cmd_state_t *s = *st;
  sf_event_t log[8];
  size_t n_log = 0;
  cmd_apply_result_t r;
  sf_order_line_t l[2], fin[CMD_MAX_LINES];
  two_orders(s, T0 + TTL, log, &n_log, l);
  sf_event_t x;
  sf_event_init(&x);
  assert_int_equal(
      cmd_decide_order_expire(s, ORDER, T0 + TTL, TTL, fin, &x), CMD_OK);
  assert_int_equal(cmd_state_apply(s, &x, &r), 0);
  log[n_log++] = x;

  cmd_state_t *b = NULL;
  assert_int_equal(cmd_state_new(&b), 0);
  open_store(b, STORE);
  create_product(b, PROD, "SKU-1");
  for (size_t i = 0; i < n_log; i++) {
    assert_int_equal(cmd_state_apply(b, &log[i], &r), 0);
    assert_int_equal(r, CMD_APPLY_APPLIED);
  }
  char ids[4][SF_ID_LEN];
  assert_int_equal(cmd_state_due_orders(b, T0 + TTL, TTL, ids, 4), 0);
  assert_int_equal(cmd_state_due_orders(b, T0 + 2 * TTL, TTL, ids, 4), 1);
  assert_string_equal(ids[0], ORDER2);
  cmd_stock_row_t row;
  cmd_state_stock(b, STORE, PROD, &row);
  assert_int_equal(row.reserved, 3);
  cmd_state_destroy(b);
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
      cmocka_unit_test_setup_teardown(test_crossing_once_per_crossing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_crossing_level_zero_and_predicate,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_crossing_orders, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crossing_fold_rules, setup,
                                      teardown),
      cmocka_unit_test(test_policy_check_pure),
      cmocka_unit_test_setup_teardown(test_policy_enforced, setup, teardown),
      cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_expiry_survives_rebuild, setup,
                                      teardown),
      cmocka_unit_test(test_quantity_rules),
      cmocka_unit_test(test_verdict_mapping),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Tests for proj_batch: verdicts, collapsing, dedupe, offsets and the exact
 * array parameters of each statement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proj_batch.h"
#include "sf/err.h"

#define P1 "0190a000-0000-7000-8000-000000000001"
#define P2 "0190a000-0000-7000-8000-000000000002"
#define S1 "0190b000-0000-7000-8000-000000000001"
#define S2 "0190b000-0000-7000-8000-000000000002"
#define U1 "0190c000-0000-7000-8000-000000000001"
#define GROUP "g1"
#define CAT "inventory.catalog"
#define STK "inventory.stock"

/* Fixtures: a plan per test. */
static int setup(void **state) {
  static proj_plan_t plan;
  proj_plan_init(&plan);
  *state = &plan;
  return 0;
}

static int teardown(void **state) {
  proj_plan_free(*state);
  return 0;
}

static sf_event_t product_ev(sf_event_type_t t, const char *id, int64_t ver) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = t;
  snprintf(e.event_id, sizeof e.event_id, "0190d000-0000-7000-8000-%012lld",
           (long long)ver);
  snprintf(e.product_id, sizeof e.product_id, "%s", id);
  e.stream_version = ver;
  e.occurred_at_us = 1700000000000000 + ver;
  return e;
}

static sf_event_t store_ev(sf_event_type_t t, const char *id, int64_t ver) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = t;
  snprintf(e.store_id, sizeof e.store_id, "%s", id);
  e.stream_version = ver;
  e.occurred_at_us = 1700000000000000 + ver;
  return e;
}

/* A stock event; n distinguishes event and command ids. */
static sf_event_t stock_ev(const char *store, const char *product, int64_t ver,
                           int n, int64_t on_hand) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = SF_EV_STOCK_MOVED;
  snprintf(e.event_id, sizeof e.event_id, "0190e000-0000-7000-8000-%012d", n);
  snprintf(e.command_id, sizeof e.command_id, "0190f000-0000-7000-8000-%012d",
           n);
  snprintf(e.store_id, sizeof e.store_id, "%s", store);
  snprintf(e.product_id, sizeof e.product_id, "%s", product);
  e.stream_version = ver;
  e.occurred_at_us = 1700000000000000 + n;
  e.stock.movement = SF_MOVE_RECEIPT;
  e.stock.quantity = 5;
  e.stock.delta = 5;
  e.stock.on_hand = on_hand;
  e.stock.reserved = 0;
  return e;
}

static proj_input_t in_of(const char *topic, int32_t part, int64_t off,
                          const sf_event_t *e) {
  return (proj_input_t){topic, part, off, e};
}

/* ---- offsets and verdicts ---- */

static void test_offsets_per_partition(void **state) {
  proj_plan_t *p = *state;
  sf_event_t a = stock_ev(S1, P1, 1, 1, 5), b = stock_ev(S1, P1, 2, 2, 10);
  sf_event_t c = stock_ev(S2, P1, 1, 3, 5);
  proj_input_t in[] = {
      in_of(STK, 3, 100, &a),
      in_of(STK, 0, 7, &c),
      in_of(STK, 3, 101, &b),
      in_of(STK, 3, 102, NULL), /* poison still advances */
      in_of(CAT, 0, 40, NULL),
  };
  assert_int_equal(proj_plan_build(p, GROUP, in, 5), 0);
  assert_int_equal(p->n_offsets, 3);
  assert_string_equal(p->offsets[0].topic, STK);
  assert_int_equal(p->offsets[0].partition, 3);
  assert_int_equal(p->offsets[0].first, 100);
  assert_int_equal(p->offsets[0].last, 102);
  assert_int_equal(p->offsets[0].count, 3);
  assert_int_equal(p->offsets[1].partition, 0);
  assert_int_equal(p->offsets[1].last, 7);
  assert_string_equal(p->offsets[2].topic, CAT);
  assert_int_equal(p->rows[PROJ_STMT_OFFSETS], 3);
  const char *const *op = p->params[PROJ_STMT_OFFSETS];
  assert_string_equal(op[0], GROUP);
  assert_string_equal(op[1], "{\"" STK "\",\"" STK "\",\"" CAT "\"}");
  assert_string_equal(op[2], "{3,0,0}");
  assert_string_equal(op[3], "{103,8,41}");
  assert_int_equal(p->verdicts[3], PROJ_POISON);
  assert_int_equal(p->n_by_verdict[PROJ_POISON], 2);
  assert_int_equal(p->n_by_verdict[PROJ_APPLY], 3);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 3);
}

static void test_empty_and_bad_args(void **state) {
  proj_plan_t *p = *state;
  assert_int_equal(proj_plan_build(p, GROUP, NULL, 0), 0);
  for (int s = 0; s < PROJ_STMT__COUNT; s++)
    assert_int_equal(p->rows[s], 0);
  assert_int_equal(proj_plan_build(NULL, GROUP, NULL, 0), SF_EINVAL);
  assert_int_equal(proj_plan_build(p, NULL, NULL, 0), SF_EINVAL);
  assert_int_equal(proj_plan_build(p, GROUP, NULL, 2), SF_EINVAL);
  proj_input_t in[] = {in_of(NULL, 0, 1, NULL)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 1), SF_EINVAL);
}

static void test_unhandled_type_skipped(void **state) {
  proj_plan_t *p = *state;
  sf_event_t o = store_ev(SF_EV__COUNT, S1, 1); /* unknown to the projector */
  proj_input_t in[] = {in_of(STK, 1, 9, &o)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 1), 0);
  assert_int_equal(p->verdicts[0], PROJ_SKIPPED);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 0);
  assert_int_equal(p->rows[PROJ_STMT_STORE_UPDATE], 0);
  assert_int_equal(p->rows[PROJ_STMT_OFFSETS], 1);
  assert_string_equal(p->params[PROJ_STMT_OFFSETS][3], "{10}");
}

/* ---- stock ---- */

static void test_stock_params(void **state) {
  proj_plan_t *p = *state;
  sf_event_t a = stock_ev(S1, P1, 1, 1, 5);
  sf_event_t b = stock_ev(S1, P1, 2, 2, 3);
  b.type = SF_EV_TRANSFER_OUT;
  b.stock.delta = -2;
  b.stock.quantity = 2;
  b.stock.reason = "moved \"north\"";
  b.stock.reference = "ref\\1";
  snprintf(b.actor, sizeof b.actor, "%s", U1);
  proj_input_t in[] = {in_of(STK, 2, 50, &a), in_of(STK, 2, 51, &b)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 2), 0);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 2);
  const char *const *sp = p->params[PROJ_STMT_STOCK];
  assert_string_equal(sp[0], "{\""
                             "0190e000-0000-7000-8000-000000000001\","
                             "\"0190e000-0000-7000-8000-000000000002\"}");
  assert_string_equal(sp[2], "{\"" S1 "\",\"" S1 "\"}");
  assert_string_equal(sp[4], "{\"receipt\",\"transfer_out\"}");
  assert_string_equal(sp[5], "{5,2}");
  assert_string_equal(sp[6], "{5,-2}");
  assert_string_equal(sp[7], "{5,3}");
  assert_string_equal(sp[9], "{1,2}");
  assert_string_equal(sp[10], "{NULL,\"moved \\\"north\\\"\"}");
  assert_string_equal(sp[11], "{NULL,\"ref\\\\1\"}");
  assert_string_equal(sp[12], "{NULL,\"" U1 "\"}");
  assert_string_equal(sp[13], "{1700000000000001,1700000000000002}");
  assert_string_equal(sp[14], "{2,2}");
  assert_string_equal(sp[15], "{50,51}");
  assert_string_equal(sp[16], "{0,0}"); /* reserved_delta */
  for (int s = 0; s < PROJ_STMT__COUNT; s++)
    if (s != PROJ_STMT_STOCK && s != PROJ_STMT_OFFSETS)
      assert_int_equal(p->rows[s], 0);
}

static void test_stock_dedupe(void **state) {
  proj_plan_t *p = *state;
  sf_event_t a = stock_ev(S1, P1, 1, 1, 5);
  sf_event_t same_event = a;                        /* a librdkafka/producer duplicate */
  sf_event_t same_cmd = stock_ev(S1, P1, 2, 1, 10); /* command replayed */
  snprintf(same_cmd.event_id, sizeof same_cmd.event_id,
           "0190e000-0000-7000-8000-000000000099");
  sf_event_t other_pair = stock_ev(S2, P1, 1, 1, 5); /* same command, other
                                                        store: a transfer */
  snprintf(other_pair.event_id, sizeof other_pair.event_id,
           "0190e000-0000-7000-8000-000000000098");
  sf_event_t next = stock_ev(S1, P1, 2, 2, 7);
  proj_input_t in[] = {in_of(STK, 0, 1, &a), in_of(STK, 0, 2, &same_event),
                       in_of(STK, 0, 3, &same_cmd),
                       in_of(STK, 0, 4, &other_pair), in_of(STK, 0, 5, &next)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 5), 0);
  assert_int_equal(p->verdicts[0], PROJ_APPLY);
  assert_int_equal(p->verdicts[1], PROJ_DUPLICATE);
  assert_int_equal(p->verdicts[2], PROJ_DUPLICATE);
  assert_int_equal(p->verdicts[3], PROJ_APPLY);
  assert_int_equal(p->verdicts[4], PROJ_APPLY);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 3);
  /* consume order is kept */
  assert_string_equal(p->params[PROJ_STMT_STOCK][16 - 1], "{1,4,5}");
  assert_string_equal(p->params[PROJ_STMT_STOCK][7], "{5,5,7}");
  assert_int_equal(p->n_by_verdict[PROJ_DUPLICATE], 2);
}

static void test_stock_invalid(void **state) {
  proj_plan_t *p = *state;
  sf_event_t bad_store = stock_ev("", P1, 1, 1, 5);
  sf_event_t bad_actor = stock_ev(S1, P1, 1, 2, 5);
  snprintf(bad_actor.actor, sizeof bad_actor.actor, "not-a-uuid");
  sf_event_t bad_text = stock_ev(S1, P2, 1, 3, 5);
  bad_text.stock.reason = "\xC3\x28"; /* broken 2-byte sequence */
  sf_event_t bad_ver = stock_ev(S1, P2, 0, 4, 5);
  sf_event_t bad_move = stock_ev(S2, P2, 1, 5, 5);
  bad_move.stock.movement = SF_MOVE__COUNT;
  sf_event_t bad_time = stock_ev(S2, P1, 1, 6, 5);
  bad_time.occurred_at_us = -1;
  sf_event_t good = stock_ev(S2, P2, 1, 7, 5);
  proj_input_t in[] = {in_of(STK, 0, 1, &bad_store), in_of(STK, 0, 2, &bad_actor),
                       in_of(STK, 0, 3, &bad_text), in_of(STK, 0, 4, &bad_ver),
                       in_of(STK, 0, 5, &bad_move), in_of(STK, 0, 6, &bad_time),
                       in_of(STK, 0, 7, &good)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 7), 0);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(p->verdicts[i], PROJ_INVALID);
    assert_non_null(p->why[i]);
  }
  assert_int_equal(p->verdicts[6], PROJ_APPLY);
  assert_null(p->why[6]);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 1);
  assert_string_equal(p->params[PROJ_STMT_OFFSETS][3], "{8}");
}

/* ---- orders ---- */

#define O1 "0190aa00-0000-7000-8000-000000000001"
#define O2 "0190aa00-0000-7000-8000-000000000002"

/* An order event of order `order` at version ver; n distinguishes event and
 * command ids; lines borrowed. */
static sf_event_t order_ev(sf_event_type_t t, const char *order, int64_t ver,
                           int n, const sf_order_line_t *lines, size_t nl) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = t;
  snprintf(e.event_id, sizeof e.event_id, "0190e000-0000-7000-8000-%012d", n);
  snprintf(e.command_id, sizeof e.command_id, "0190f000-0000-7000-8000-%012d",
           n);
  snprintf(e.store_id, sizeof e.store_id, "%s", S1);
  snprintf(e.order.order_id, sizeof e.order.order_id, "%s", order);
  e.stream_version = ver;
  e.occurred_at_us = 1700000000000000 + n;
  e.order.lines = lines;
  e.order.n_lines = nl;
  return e;
}

static void test_order_lifecycle(void **state) {
  proj_plan_t *p = *state;
  sf_order_line_t placed[] = {{P1, 3, 10, 3, 2}, {P2, 1, 5, 1, 7}};
  sf_order_line_t done[] = {{P1, 3, 7, 0, 3}, {P2, 1, 4, 0, 8}};
  sf_event_t r = stock_ev(S1, P1, 1, 1, 10);
  sf_event_t a = order_ev(SF_EV_ORDER_PLACED, O1, 1, 0x2a, placed, 2);
  a.order.reference = "PO \"7\"";
  sf_event_t f = order_ev(SF_EV_ORDER_FULFILLED, O1, 2, 0x2b, done, 2);
  proj_input_t in[] = {in_of(STK, 1, 7, &r), in_of(STK, 1, 8, &a),
                       in_of(STK, 1, 9, &f)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 3), 0);
  assert_int_equal(p->n_by_verdict[PROJ_APPLY], 3);
  /* one order row: the newest status and version, created by the placing */
  assert_int_equal(p->rows[PROJ_STMT_ORDER_UPSERT], 1);
  const char *const *op = p->params[PROJ_STMT_ORDER_UPSERT];
  assert_string_equal(op[0], "{\"" O1 "\"}");
  assert_string_equal(op[1], "{\"" S1 "\"}");
  assert_string_equal(op[2], "{\"fulfilled\"}");
  assert_string_equal(op[3], "{\"PO \\\"7\\\"\"}");
  assert_string_equal(op[4], "{2}");
  assert_string_equal(op[5], "{1700000000000042}");
  assert_string_equal(op[6], "{1700000000000043}");
  /* lines of both events (the second pair is a no-op in SQL) */
  assert_int_equal(p->rows[PROJ_STMT_ORDER_LINES], 4);
  assert_string_equal(p->params[PROJ_STMT_ORDER_LINES][2], "{3,1,3,1}");
  /* stock rows in consume order: the receipt, then each line */
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 5);
  const char *const *sp = p->params[PROJ_STMT_STOCK];
  assert_string_equal(sp[0], "{\"0190e000-0000-7000-8000-000000000001\","
                             "\"0190e000-0000-7000-8000-000000000000\","
                             "\"0190e000-0000-7000-8000-000000000001\","
                             "\"0190e000-0000-7000-8000-000000000000\","
                             "\"0190e000-0000-7000-8000-000000000001\"}");
  assert_string_equal(sp[3], "{\"" P1 "\",\"" P1 "\",\"" P2 "\",\"" P1
                             "\",\"" P2 "\"}");
  assert_string_equal(sp[4], "{\"receipt\",\"order_placed\",\"order_placed\","
                             "\"order_fulfilled\",\"order_fulfilled\"}");
  assert_string_equal(sp[5], "{5,3,1,3,1}");    /* quantity */
  assert_string_equal(sp[6], "{5,0,0,-3,-1}");  /* delta */
  assert_string_equal(sp[16], "{0,3,1,-3,-1}"); /* reserved_delta */
  assert_string_equal(sp[7], "{10,10,5,7,4}");  /* on_hand after */
  assert_string_equal(sp[8], "{0,3,1,0,0}");    /* reserved after */
  assert_string_equal(sp[9], "{1,2,7,3,8}");    /* line versions */
  assert_string_equal(sp[10], "{NULL,NULL,NULL,NULL,NULL}");
  assert_string_equal(sp[15], "{7,8,8,9,9}");
}

/* The line ids differ per line and are stable (the dedupe key). */
static void test_order_line_ids(void **state) {
  proj_plan_t *p = *state;
  sf_order_line_t lines[20];
  for (int i = 0; i < 20; i++) {
    snprintf(lines[i].product_id, sizeof lines[i].product_id,
             "0190a000-0000-7000-8000-0000000001%02d", i);
    lines[i].quantity = 1;
    lines[i].on_hand = 1;
    lines[i].reserved = 1;
    lines[i].version = 1;
  }
  sf_event_t a = order_ev(SF_EV_ORDER_CANCELLED, O2, 2, 0xffff, lines, 20);
  proj_input_t in[] = {in_of(STK, 0, 1, &a)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 1), 0);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 20);
  const char *ids = p->params[PROJ_STMT_STOCK][0];
  assert_non_null(strstr(ids, "\"0190e000-0000-7000-8000-00000006000f\""));
  assert_non_null(strstr(ids, "\"0190e000-0000-7000-8000-000000060013\"}"));
  assert_string_equal(p->params[PROJ_STMT_ORDER_UPSERT][2], "{\"cancelled\"}");
  assert_string_equal(p->params[PROJ_STMT_ORDER_UPSERT][3], "{NULL}");
}

static void test_order_duplicates_and_invalid(void **state) {
  proj_plan_t *p = *state;
  sf_order_line_t one[] = {{P1, 2, 8, 2, 4}};
  sf_order_line_t twice[] = {{P1, 2, 8, 2, 4}, {P1, 1, 8, 3, 5}};
  sf_order_line_t zero[] = {{P1, 0, 8, 2, 4}};
  sf_event_t a = order_ev(SF_EV_ORDER_PLACED, O1, 1, 1, one, 1);
  sf_event_t a_again = a; /* a producer duplicate */
  sf_event_t stale = order_ev(SF_EV_ORDER_CANCELLED, O1, 1, 2, one, 1);
  sf_event_t no_lines = order_ev(SF_EV_ORDER_PLACED, O2, 1, 3, NULL, 0);
  sf_event_t dup_product = order_ev(SF_EV_ORDER_PLACED, O2, 1, 4, twice, 2);
  sf_event_t bad_qty = order_ev(SF_EV_ORDER_PLACED, O2, 1, 5, zero, 1);
  sf_event_t bad_id = order_ev(SF_EV_ORDER_PLACED, "nope", 1, 6, one, 1);
  proj_input_t in[] = {in_of(STK, 0, 1, &a), in_of(STK, 0, 2, &a_again),
                       in_of(STK, 0, 3, &stale), in_of(STK, 0, 4, &no_lines),
                       in_of(STK, 0, 5, &dup_product),
                       in_of(STK, 0, 6, &bad_qty), in_of(STK, 0, 7, &bad_id)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 7), 0);
  assert_int_equal(p->verdicts[0], PROJ_APPLY);
  assert_int_equal(p->verdicts[1], PROJ_DUPLICATE);
  assert_int_equal(p->verdicts[2], PROJ_DUPLICATE);
  for (int i = 3; i < 7; i++) {
    assert_int_equal(p->verdicts[i], PROJ_INVALID);
    assert_non_null(p->why[i]);
  }
  assert_int_equal(p->rows[PROJ_STMT_ORDER_UPSERT], 1);
  assert_string_equal(p->params[PROJ_STMT_ORDER_UPSERT][2], "{\"placed\"}");
  assert_int_equal(p->rows[PROJ_STMT_ORDER_LINES], 1);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 1);
  assert_string_equal(p->params[PROJ_STMT_OFFSETS][3], "{8}");
}

/* ---- catalog ---- */

static void test_product_collapse(void **state) {
  proj_plan_t *p = *state;
  sf_event_t c = product_ev(SF_EV_PRODUCT_CREATED, P1, 1);
  c.product.sku = "SKU-1";
  c.product.name = "Widget";
  c.product.price = "19.99";
  sf_event_t u = product_ev(SF_EV_PRODUCT_UPDATED, P1, 2);
  u.product.name = "Widget \"Pro\"";
  u.product.has_reorder_level = true;
  u.product.reorder_level = 7;
  sf_event_t d = product_ev(SF_EV_PRODUCT_DISCONTINUED, P1, 3);
  /* an update of another product already in the table */
  sf_event_t o = product_ev(SF_EV_PRODUCT_UPDATED, P2, 5);
  o.product.price = "1.5";
  proj_input_t in[] = {in_of(CAT, 0, 10, &o), in_of(CAT, 0, 11, &c),
                       in_of(CAT, 0, 12, &u), in_of(CAT, 0, 13, &d)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 4), 0);
  assert_int_equal(p->n_by_verdict[PROJ_APPLY], 4);
  assert_int_equal(p->rows[PROJ_STMT_PRODUCT_INSERT], 1);
  const char *const *ip = p->params[PROJ_STMT_PRODUCT_INSERT];
  assert_string_equal(ip[0], "{\"" P1 "\"}");
  assert_string_equal(ip[1], "{\"SKU-1\"}");
  assert_string_equal(ip[2], "{\"Widget \\\"Pro\\\"\"}");
  assert_string_equal(ip[3], "{NULL}");
  assert_string_equal(ip[4], "{\"19.99\"}");
  assert_string_equal(ip[5], "{7}");
  assert_string_equal(ip[6], "{t}");
  assert_string_equal(ip[7], "{3}");
  assert_string_equal(ip[8], "{1700000000000001}");
  assert_string_equal(ip[9], "{1700000000000003}");
  /* one update row per id, sorted by id; P2 carries only its price */
  assert_int_equal(p->rows[PROJ_STMT_PRODUCT_UPDATE], 2);
  const char *const *up = p->params[PROJ_STMT_PRODUCT_UPDATE];
  assert_string_equal(up[0], "{\"" P1 "\",\"" P2 "\"}");
  assert_string_equal(up[1], "{\"SKU-1\",NULL}");
  assert_string_equal(up[2], "{\"Widget \\\"Pro\\\"\",NULL}");
  assert_string_equal(up[4], "{\"19.99\",\"1.5\"}");
  assert_string_equal(up[5], "{7,NULL}");
  assert_string_equal(up[6], "{t,f}");
  assert_string_equal(up[7], "{3,5}");
  assert_string_equal(up[8], "{1700000000000003,1700000000000005}");
}

static void test_product_duplicates_and_created_default(void **state) {
  proj_plan_t *p = *state;
  sf_event_t c = product_ev(SF_EV_PRODUCT_CREATED, P1, 1);
  c.product.sku = "S";
  c.product.name = "N";
  c.product.price = "1";
  sf_event_t c2 = c; /* replayed create */
  sf_event_t u = product_ev(SF_EV_PRODUCT_UPDATED, P1, 2);
  u.product.category = "tools";
  sf_event_t u_again = u;
  sf_event_t older = product_ev(SF_EV_PRODUCT_UPDATED, P1, 1);
  older.product.name = "stale";
  proj_input_t in[] = {in_of(CAT, 0, 1, &c), in_of(CAT, 0, 2, &c2),
                       in_of(CAT, 0, 3, &u), in_of(CAT, 0, 4, &u_again),
                       in_of(CAT, 0, 5, &older)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 5), 0);
  assert_int_equal(p->verdicts[0], PROJ_APPLY);
  assert_int_equal(p->verdicts[1], PROJ_DUPLICATE);
  assert_int_equal(p->verdicts[2], PROJ_APPLY);
  assert_int_equal(p->verdicts[3], PROJ_DUPLICATE);
  assert_int_equal(p->verdicts[4], PROJ_DUPLICATE);
  const char *const *ip = p->params[PROJ_STMT_PRODUCT_INSERT];
  assert_string_equal(ip[2], "{\"N\"}");
  assert_string_equal(ip[3], "{\"tools\"}");
  assert_string_equal(ip[5], "{0}"); /* reorder level defaults to 0 */
  assert_string_equal(ip[6], "{f}");
  assert_string_equal(ip[7], "{2}");
}

static void test_product_invalid(void **state) {
  proj_plan_t *p = *state;
  sf_event_t no_sku = product_ev(SF_EV_PRODUCT_CREATED, P1, 1);
  no_sku.product.name = "N";
  no_sku.product.price = "1";
  sf_event_t bad_price = product_ev(SF_EV_PRODUCT_UPDATED, P2, 2);
  bad_price.product.price = "1e5";
  sf_event_t bad_id = product_ev(SF_EV_PRODUCT_DISCONTINUED, "P1", 2);
  sf_event_t bad_name = product_ev(SF_EV_PRODUCT_UPDATED, P2, 3);
  bad_name.product.name = "\xED\xA0\x80"; /* a UTF-16 surrogate */
  proj_input_t in[] = {in_of(CAT, 0, 1, &no_sku), in_of(CAT, 0, 2, &bad_price),
                       in_of(CAT, 0, 3, &bad_id), in_of(CAT, 0, 4, &bad_name)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 4), 0);
  assert_int_equal(p->n_by_verdict[PROJ_INVALID], 4);
  assert_int_equal(p->rows[PROJ_STMT_PRODUCT_INSERT], 0);
  assert_int_equal(p->rows[PROJ_STMT_PRODUCT_UPDATE], 0);
  assert_int_equal(p->rows[PROJ_STMT_OFFSETS], 1);
}

static void test_store_collapse(void **state) {
  proj_plan_t *p = *state;
  sf_event_t o = store_ev(SF_EV_STORE_OPENED, S1, 1);
  o.store.name = "Main";
  o.store.location = "Riga";
  o.store.manager_id = "";
  sf_event_t u = store_ev(SF_EV_STORE_UPDATED, S1, 2);
  u.store.manager_id = U1;
  sf_event_t cl = store_ev(SF_EV_STORE_CLOSED, S2, 4);
  sf_event_t bad_mgr = store_ev(SF_EV_STORE_UPDATED, S2, 5);
  bad_mgr.store.manager_id = "x";
  proj_input_t in[] = {in_of(CAT, 0, 1, &o), in_of(CAT, 0, 2, &cl),
                       in_of(CAT, 0, 3, &u), in_of(CAT, 0, 4, &bad_mgr)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 4), 0);
  assert_int_equal(p->verdicts[3], PROJ_INVALID);
  assert_int_equal(p->rows[PROJ_STMT_STORE_INSERT], 1);
  const char *const *ip = p->params[PROJ_STMT_STORE_INSERT];
  assert_string_equal(ip[1], "{\"Main\"}");
  assert_string_equal(ip[2], "{\"Riga\"}");
  assert_string_equal(ip[3], "{\"" U1 "\"}");
  assert_string_equal(ip[4], "{f}");
  assert_string_equal(ip[5], "{2}");
  assert_int_equal(p->rows[PROJ_STMT_STORE_UPDATE], 2);
  const char *const *up = p->params[PROJ_STMT_STORE_UPDATE];
  assert_string_equal(up[0], "{\"" S1 "\",\"" S2 "\"}");
  assert_string_equal(up[1], "{\"Main\",NULL}");
  assert_string_equal(up[3], "{\"" U1 "\",NULL}");
  assert_string_equal(up[4], "{f,t}");
  assert_string_equal(up[5], "{2,4}");
}

/* A plan rebuilt from other inputs keeps nothing of the previous one. */
static void test_rebuild_resets(void **state) {
  proj_plan_t *p = *state;
  sf_event_t a = stock_ev(S1, P1, 1, 1, 5);
  proj_input_t in1[] = {in_of(STK, 4, 1, &a), in_of(STK, 5, 9, &a)};
  assert_int_equal(proj_plan_build(p, GROUP, in1, 2), 0);
  sf_event_t c = product_ev(SF_EV_PRODUCT_DISCONTINUED, P1, 2);
  proj_input_t in2[] = {in_of(CAT, 0, 3, &c)};
  assert_int_equal(proj_plan_build(p, GROUP, in2, 1), 0);
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 0);
  assert_int_equal(p->rows[PROJ_STMT_PRODUCT_UPDATE], 1);
  assert_string_equal(p->params[PROJ_STMT_PRODUCT_UPDATE][0], "{\"" P1 "\"}");
  assert_int_equal(p->n_offsets, 1);
  assert_string_equal(p->params[PROJ_STMT_OFFSETS][1], "{\"" CAT "\"}");
  assert_int_equal(p->n_inputs, 1);
}

/* Every statement's parameter count matches the $n it uses. */

/* ---- rules: expiry, crossings, policies ---- */

static void test_order_expired_rows(void **state) {
  proj_plan_t *p = *state;
  sf_order_line_t lines[] = {{P1, 2, 8, 0, 5}};
  sf_event_t x = order_ev(SF_EV_ORDER_CANCELLED, O1, 2, 7, lines, 1);
  x.order.cause = "expired";
  sf_event_t c = order_ev(SF_EV_ORDER_CANCELLED, O2, 2, 8, lines, 1);
  lines[0].version = 5;
  proj_input_t in[] = {in_of(STK, 0, 1, &x), in_of(STK, 0, 2, &c)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 2), 0);
  const char *const *op = p->params[PROJ_STMT_ORDER_UPSERT];
  assert_string_equal(op[2], "{\"cancelled\",\"cancelled\"}");
  assert_string_equal(op[7], "{\"expired\",NULL}"); /* cancel_cause */
  assert_string_equal(p->params[PROJ_STMT_STOCK][4],
                      "{\"order_expired\",\"order_cancelled\"}");
}

static sf_event_t crossing_ev(sf_event_type_t t, int n, int64_t ver,
                              int64_t on_hand) {
  sf_event_t e = stock_ev(S1, P1, ver, n, on_hand);
  e.type = t;
  e.crossing.on_hand = on_hand;
  e.crossing.reserved = 1;
  e.crossing.reorder_level = 5;
  return e;
}

static void test_crossing_rows(void **state) {
  proj_plan_t *p = *state;
  sf_event_t m = stock_ev(S1, P1, 3, 1, 4);
  sf_event_t b = crossing_ev(SF_EV_STOCK_BELOW_REORDER, 2, 3, 4);
  sf_event_t r = crossing_ev(SF_EV_STOCK_RESTORED, 3, 4, 9);
  sf_event_t dup = b;
  sf_event_t bad = crossing_ev(SF_EV_STOCK_RESTORED, 4, 5, 9);
  strcpy(bad.store_id, "nope");
  proj_input_t in[] = {in_of(STK, 0, 1, &m), in_of(STK, 0, 2, &b),
                       in_of(STK, 0, 3, &r), in_of(STK, 0, 4, &dup),
                       in_of(STK, 0, 5, &bad)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 5), 0);
  assert_int_equal(p->verdicts[3], PROJ_DUPLICATE);
  assert_int_equal(p->verdicts[4], PROJ_INVALID);
  /* crossings are no transactions rows */
  assert_int_equal(p->rows[PROJ_STMT_STOCK], 1);
  assert_int_equal(p->rows[PROJ_STMT_CROSSINGS], 2);
  const char *const *xp = p->params[PROJ_STMT_CROSSINGS];
  assert_string_equal(xp[0], "{\"0190e000-0000-7000-8000-000000000002\","
                             "\"0190e000-0000-7000-8000-000000000003\"}");
  assert_string_equal(xp[2], "{\"" S1 "\",\"" S1 "\"}");
  assert_string_equal(xp[4], "{\"below_reorder\",\"restored\"}");
  assert_string_equal(xp[5], "{4,9}");
  assert_string_equal(xp[6], "{1,1}");
  assert_string_equal(xp[7], "{5,5}");
  assert_string_equal(xp[8], "{3,4}");
}

static void test_policy_rows(void **state) {
  proj_plan_t *p = *state;
  sf_event_t c = product_ev(SF_EV_PRODUCT_CREATED, P1, 1);
  c.product.sku = "S";
  c.product.name = "N";
  c.product.price = "1";
  sf_event_t a = product_ev(SF_EV_PRODUCT_POLICY_SET, P1, 2);
  a.policy.has_max_sale = true;
  a.policy.max_sale_quantity = 9;
  sf_event_t b = product_ev(SF_EV_PRODUCT_POLICY_SET, P1, 3);
  b.policy.has_max_negative_adjustment = true;
  b.policy.max_negative_adjustment = 0;
  b.policy.count_requires_reason = true;
  sf_event_t stale = product_ev(SF_EV_PRODUCT_POLICY_SET, P1, 2);
  sf_event_t other = product_ev(SF_EV_PRODUCT_POLICY_SET, P2, 4);
  proj_input_t in[] = {in_of(CAT, 0, 1, &c), in_of(CAT, 0, 2, &a),
                       in_of(CAT, 0, 3, &b), in_of(CAT, 0, 4, &stale),
                       in_of(CAT, 0, 5, &other)};
  assert_int_equal(proj_plan_build(p, GROUP, in, 5), 0);
  assert_int_equal(p->verdicts[3], PROJ_DUPLICATE);
  /* the newest policy per product; the product version moves with it */
  assert_int_equal(p->rows[PROJ_STMT_PRODUCT_POLICY], 2);
  const char *const *pp = p->params[PROJ_STMT_PRODUCT_POLICY];
  assert_string_equal(pp[0], "{\"" P1 "\",\"" P2 "\"}");
  assert_string_equal(pp[1], "{NULL,NULL}");
  assert_string_equal(pp[2], "{0,NULL}");
  assert_string_equal(pp[3], "{t,f}");
  assert_string_equal(pp[4], "{3,4}");
  assert_string_equal(p->params[PROJ_STMT_PRODUCT_UPDATE][7], "{3,4}");
}

static void test_stmt_defs(void **state) {
  (void)state;
  for (int s = 0; s < PROJ_STMT__COUNT; s++) {
    const proj_stmt_def_t *d = proj_stmt_def((proj_stmt_t)s);
    assert_non_null(d);
    char tag[16];
    snprintf(tag, sizeof tag, "$%d", d->n_params);
    assert_non_null(strstr(d->sql, tag));
    snprintf(tag, sizeof tag, "$%d", d->n_params + 1);
    assert_null(strstr(d->sql, tag));
    assert_true(d->n_params <= PROJ_MAX_PARAMS);
  }
  assert_null(proj_stmt_def(PROJ_STMT__COUNT));
}

static void test_price_valid(void **state) {
  (void)state;
  const char *ok[] = {"0", "19.99", "-1.5", "123456789012345", "1.0001"};
  const char *bad[] = {"", "-", ".5", "1.", "1.00001", "1e5",
                       "1,5", " 1", "1 ", "1234567890123456", "abc"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    assert_true(proj_price_valid(ok[i]));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(proj_price_valid(bad[i]));
  assert_false(proj_price_valid(NULL));
}

static void test_utf8_valid(void **state) {
  (void)state;
  const char *ok[] = {"", "abc", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                      "\xF4\x8F\xBF\xBF"};
  const char *bad[] = {"\x80", "\xC0\xAF", "\xC3",
                       "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                       "\xF5\x80\x80\x80", "\xE2\x82", "a\xFF"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    assert_true(proj_utf8_valid(ok[i]));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(proj_utf8_valid(bad[i]));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_offsets_per_partition, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_and_bad_args, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unhandled_type_skipped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stock_params, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stock_dedupe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stock_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_lifecycle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_line_ids, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_expired_rows, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_crossing_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_policy_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_order_duplicates_and_invalid, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_product_collapse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_product_duplicates_and_created_default,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_product_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_collapse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_resets, setup, teardown),
      cmocka_unit_test(test_stmt_defs),
      cmocka_unit_test(test_price_valid),
      cmocka_unit_test(test_utf8_valid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

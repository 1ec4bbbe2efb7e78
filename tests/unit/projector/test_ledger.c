/* Unit tests for proj_ledger: the fold of the conservation check and its
 * comparison with read-model rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proj_ledger.h"
#include "sf/err.h"

#define S1 "0190f5a0-0000-7000-8000-000000000001"
#define S2 "0190f5a0-0000-7000-8000-000000000002"
#define P1 "0190f5a0-0000-7000-8000-0000000000a1"
#define P2 "0190f5a0-0000-7000-8000-0000000000a2"
#define O1 "0190f5a0-0000-7000-8000-0000000000d1"

static sf_event_t moved(const char *store, const char *product, int64_t delta,
                        int64_t on_hand, int64_t reserved, int64_t version) {
  sf_event_t e;
  sf_event_init(&e);
  e.type = SF_EV_STOCK_MOVED;
  strcpy(e.store_id, store);
  strcpy(e.product_id, product);
  e.stock.movement = delta >= 0 ? SF_MOVE_RECEIPT : SF_MOVE_SALE;
  e.stock.quantity = delta >= 0 ? delta : -delta;
  e.stock.delta = delta;
  e.stock.on_hand = on_hand;
  e.stock.reserved = reserved;
  e.stream_version = version;
  return e;
}

static sf_event_t leg(sf_event_type_t t, const char *store, int64_t delta,
                      int64_t on_hand, int64_t version) {
  sf_event_t e = moved(store, P1, delta, on_hand, 0, version);
  e.type = t;
  return e;
}

typedef struct seen {
  size_t rows, products, unbalanced;
  proj_ledger_diff_t last;
  proj_ledger_product_t last_product;
} seen_t;

static void row_cb(void *ud, const proj_ledger_diff_t *d) {
  seen_t *s = ud;
  s->rows++;
  s->last = *d;
}

static void product_cb(void *ud, const proj_ledger_product_t *p) {
  seen_t *s = ud;
  s->products++;
  if (!p->balanced) {
    s->unbalanced++;
    s->last_product = *p;
  }
}

static seen_t report(proj_ledger_t *l, proj_ledger_summary_t *sum) {
  seen_t s = {0};
  proj_ledger_report(l, row_cb, product_cb, &s, sum);
  return s;
}

static void test_balanced_fold(void **state) {
  (void)state;
  proj_ledger_t *l = NULL;
  assert_int_equal(proj_ledger_new(&l), 0);
  sf_event_t evs[] = {
      moved(S1, P1, 10, 10, 0, 1),
      moved(S1, P1, -3, 7, 0, 2),
      leg(SF_EV_TRANSFER_OUT, S1, -4, 3, 3),
      leg(SF_EV_TRANSFER_IN, S2, 4, 4, 1),
      moved(S1, P2, 5, 5, 0, 1),
  };
  for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
    assert_int_equal(proj_ledger_apply(l, &evs[i]), 0);
  /* an order on P2: placed 2, fulfilled (5 -> 3 on hand) */
  sf_order_line_t placed = {P2, 2, 5, 2, 2}, done = {P2, 2, 3, 0, 3};
  sf_event_t o;
  sf_event_init(&o);
  o.type = SF_EV_ORDER_PLACED;
  strcpy(o.store_id, S1);
  strcpy(o.order.order_id, O1);
  o.order.lines = &placed;
  o.order.n_lines = 1;
  assert_int_equal(proj_ledger_apply(l, &o), 0);
  o.type = SF_EV_ORDER_FULFILLED;
  o.order.lines = &done;
  assert_int_equal(proj_ledger_apply(l, &o), 0);
  /* replays are skipped by the version guard */
  assert_int_equal(proj_ledger_apply(l, &evs[1]), 0);
  assert_int_equal(proj_ledger_apply(l, &o), 0);
  /* crossings and catalog events move nothing */
  sf_event_t x = evs[0];
  x.type = SF_EV_STOCK_BELOW_REORDER;
  x.stream_version = 9;
  assert_int_equal(proj_ledger_apply(l, &x), 0);

  assert_int_equal(proj_ledger_observe(l, S1, P1, 3, 0), 0);
  assert_int_equal(proj_ledger_observe(l, S2, P1, 4, 0), 0);
  assert_int_equal(proj_ledger_observe(l, S1, P2, 3, 0), 0);
  assert_int_equal(proj_ledger_observe(l, S1, P2, 3, 0), SF_EEXISTS);
  assert_int_equal(proj_ledger_observe(l, "nope", P2, 3, 0), SF_EINVAL);
  proj_ledger_summary_t sum;
  seen_t s = report(l, &sum);
  assert_int_equal(s.rows, 0);
  assert_int_equal(s.products, 2);
  assert_int_equal(s.unbalanced, 0);
  assert_int_equal(sum.events, 7);
  assert_int_equal(sum.duplicates, 2);
  assert_int_equal(sum.rows, 3);
  assert_true(sum.stores == 10 && sum.in_transit == 0 &&
              sum.movements == 10); /* P1 7, P2 3 */
  proj_ledger_destroy(l);
}

static void test_differences(void **state) {
  (void)state;
  proj_ledger_t *l = NULL;
  assert_int_equal(proj_ledger_new(&l), 0);
  sf_event_t a = moved(S1, P1, 10, 10, 0, 1);
  sf_event_t out = leg(SF_EV_TRANSFER_OUT, S1, -4, 6, 2);
  assert_int_equal(proj_ledger_apply(l, &a), 0);
  assert_int_equal(proj_ledger_apply(l, &out), 0); /* its in-leg not yet */
  assert_int_equal(proj_ledger_observe(l, S1, P1, 6, 0), 0);
  proj_ledger_summary_t sum;
  seen_t s = report(l, &sum);
  /* 4 in transit: 6 + 4 = 10 */
  assert_int_equal(s.rows, 0);
  assert_int_equal(s.unbalanced, 0);
  assert_true(sum.in_transit == 4);

  /* a tampered row: one difference for the row, one for the product */
  proj_ledger_destroy(l);
  assert_int_equal(proj_ledger_new(&l), 0);
  assert_int_equal(proj_ledger_apply(l, &a), 0);
  assert_int_equal(proj_ledger_observe(l, S1, P1, 11, 0), 0);
  s = report(l, &sum);
  assert_int_equal(s.rows, 1);
  assert_string_equal(s.last.store_id, S1);
  assert_string_equal(s.last.product_id, P1);
  assert_true(s.last.model_on_hand == 11 && s.last.log_on_hand == 10);
  assert_false(s.last.log_contradicts);
  assert_int_equal(s.unbalanced, 1);
  assert_true(s.last_product.stores == 11 && s.last_product.movements == 10);
  assert_int_equal(sum.row_diffs + sum.product_diffs, 2);

  /* a row missing from the read model; one the log never moved */
  proj_ledger_destroy(l);
  assert_int_equal(proj_ledger_new(&l), 0);
  assert_int_equal(proj_ledger_apply(l, &a), 0);
  assert_int_equal(proj_ledger_observe(l, S2, P2, 0, 0), 0); /* harmless */
  s = report(l, &sum);
  assert_int_equal(s.rows, 1);
  assert_true(s.last.in_log && !s.last.in_model);
  assert_int_equal(proj_ledger_observe(l, S2, P1, 1, 0), 0);
  s = report(l, &sum);
  assert_int_equal(s.rows, 2);

  /* a log whose deltas contradict its after-levels */
  proj_ledger_destroy(l);
  assert_int_equal(proj_ledger_new(&l), 0);
  sf_event_t bad = moved(S1, P1, 5, 6, 0, 1);
  assert_int_equal(proj_ledger_apply(l, &bad), 0);
  assert_int_equal(proj_ledger_observe(l, S1, P1, 5, 0), 0);
  s = report(l, &sum);
  assert_int_equal(s.rows, 1);
  assert_true(s.last.log_contradicts);
  /* bad ids */
  bad = moved(S1, P1, 5, 5, 0, 2);
  strcpy(bad.store_id, "x");
  assert_int_equal(proj_ledger_apply(l, &bad), SF_EINVAL);
  proj_ledger_destroy(l);
  proj_ledger_destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_balanced_fold),
      cmocka_unit_test(test_differences),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

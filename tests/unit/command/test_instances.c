/* Unit tests of cmd_instances: the static partition assignment (disjoint,
 * covering), the transactional ids derived from it (same assignment, same
 * ids: a fence; disjoint ones never meet), the peer URLs and the redirect
 * decision, the bus intake's share (its group, which commands it
 * answers); plus the lane of an owned partition (cmd_lanes) and the log
 * positions the tail starts from (cmd_state). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cmd_instances.h"
#include "cmd_lanes.h"
#include "cmd_state.h"
#include "sf/err.h"

#define URLS "http://127.0.0.1:8081, http://127.0.0.1:8091/"

static void test_owner_of_partition(void **st) {
  (void)st;
  assert_int_equal(cmd_instances_owner_of_partition(5, 1), 0);
  assert_int_equal(cmd_instances_owner_of_partition(3, 2), 1);
  assert_int_equal(cmd_instances_owner_of_partition(4, 2), 0);
  assert_int_equal(cmd_instances_owner_of_partition(5, 3), 2);
  assert_int_equal(cmd_instances_owner_of_partition(-1, 3), 0);
}

/* Every partition has exactly one owner, for any instance count. */
static void test_assignment_is_disjoint_and_covering(void **st) {
  (void)st;
  for (unsigned n = 1; n <= 7; n++) {
    int32_t total = 0;
    for (int32_t p = 0; p < 12; p++) {
      unsigned owners = 0;
      for (unsigned i = 0; i < n; i++) {
        cmd_instances_t ins = {i, n, ""};
        owners += cmd_instances_owns_partition(&ins, p);
      }
      assert_int_equal(owners, 1);
    }
    for (unsigned i = 0; i < n; i++) {
      cmd_instances_t ins = {i, n, ""};
      total += cmd_instances_n_owned(&ins, 12);
    }
    assert_int_equal(total, 12);
  }
  cmd_instances_t one = {0, 1, ""};
  assert_int_equal(cmd_instances_n_owned(&one, 6), 6);
  assert_true(cmd_instances_owns_catalog(&one));
  cmd_instances_t second = {1, 2, ""};
  assert_false(cmd_instances_owns_catalog(&second));
  assert_int_equal(cmd_instances_n_owned(&second, 6), 3);
}

static void test_txn_prefix_follows_the_assignment(void **st) {
  (void)st;
  char a[64], b[64];
  cmd_instances_t one = {0, 1, ""};
  assert_int_equal(cmd_instances_txn_prefix(&one, "sf-cmd", a, sizeof a), 0);
  assert_string_equal(a, "sf-cmd"); /* a single instance keeps its ids */
  cmd_instances_t i1 = {1, 2, ""}, again = {1, 2, URLS}, i0 = {0, 2, ""};
  assert_int_equal(cmd_instances_txn_prefix(&i1, "sf-cmd", a, sizeof a), 0);
  assert_string_equal(a, "sf-cmd-p1of2");
  /* the same assignment: the same ids, so the newcomer fences the first */
  assert_int_equal(cmd_instances_txn_prefix(&again, "sf-cmd", b, sizeof b), 0);
  assert_string_equal(a, b);
  /* disjoint assignments never share an id */
  assert_int_equal(cmd_instances_txn_prefix(&i0, "sf-cmd", b, sizeof b), 0);
  assert_string_not_equal(a, b);
  assert_string_not_equal(b, "sf-cmd");
  assert_int_equal(cmd_instances_txn_prefix(&i1, "sf-cmd", a, 8), -1);
}

static void test_peer_urls(void **st) {
  (void)st;
  char url[CMD_INSTANCE_URL_MAX];
  cmd_instances_t ins = {0, 2, URLS};
  assert_true(cmd_instances_url(&ins, 0, url, sizeof url));
  assert_string_equal(url, "http://127.0.0.1:8081");
  assert_true(cmd_instances_url(&ins, 1, url, sizeof url));
  assert_string_equal(url, "http://127.0.0.1:8091"); /* no trailing '/' */
  assert_false(cmd_instances_url(&ins, 2, url, sizeof url));
  assert_false(cmd_instances_url(&ins, 1, url, 8)); /* does not fit */
  cmd_instances_t none = {0, 2, ""};
  assert_false(cmd_instances_url(&none, 1, url, sizeof url));
}

static void test_check(void **st) {
  (void)st;
  char err[256];
  cmd_instances_t ok = {1, 2, URLS}, ok_no_urls = {1, 2, ""},
                  single = {0, 1, ""};
  assert_int_equal(cmd_instances_check(&ok, err, sizeof err), 0);
  assert_int_equal(cmd_instances_check(&ok_no_urls, err, sizeof err), 0);
  assert_int_equal(cmd_instances_check(&single, err, sizeof err), 0);
  cmd_instances_t index_too_big = {2, 2, ""};
  assert_int_equal(cmd_instances_check(&index_too_big, err, sizeof err), -1);
  assert_non_null(strstr(err, "instance-index"));
  cmd_instances_t too_few = {0, 3, URLS};
  assert_int_equal(cmd_instances_check(&too_few, err, sizeof err), -1);
  assert_non_null(strstr(err, "peer-urls"));
  cmd_instances_t bad_scheme = {0, 2, "http://a:1,ftp://b:2"};
  assert_int_equal(cmd_instances_check(&bad_scheme, err, sizeof err), -1);
  cmd_instances_t empty_entry = {0, 2, "http://a:1,"};
  assert_int_equal(cmd_instances_check(&empty_entry, err, sizeof err), -1);
}

static void test_route_decision(void **st) {
  (void)st;
  cmd_route_t r;
  cmd_instances_t i0 = {0, 2, URLS}, i1 = {1, 2, URLS};
  const char *path = "/v1/stores/s/transactions";
  /* partition 4 is instance 0's: local there, redirected from 1 */
  cmd_instances_route(&i0, 4, path, &r);
  assert_int_equal(r.kind, CMD_ROUTE_LOCAL);
  assert_int_equal(cmd_route_status(r.kind), 0);
  cmd_instances_route(&i1, 4, path, &r);
  assert_int_equal(r.kind, CMD_ROUTE_REDIRECT);
  assert_int_equal(r.owner, 0);
  assert_int_equal(cmd_route_status(r.kind), 307);
  assert_string_equal(r.location,
                      "http://127.0.0.1:8081/v1/stores/s/transactions");
  cmd_instances_route(&i0, 3, path, &r);
  assert_int_equal(r.kind, CMD_ROUTE_REDIRECT);
  assert_int_equal(r.owner, 1);
  assert_string_equal(r.location,
                      "http://127.0.0.1:8091/v1/stores/s/transactions");
  /* the catalog (partition -1) is instance 0's */
  cmd_instances_route(&i1, -1, "/v1/products", &r);
  assert_int_equal(r.kind, CMD_ROUTE_REDIRECT);
  assert_int_equal(r.owner, 0);
  assert_string_equal(r.location, "http://127.0.0.1:8081/v1/products");
  cmd_instances_route(&i0, -1, "/v1/products", &r);
  assert_int_equal(r.kind, CMD_ROUTE_LOCAL);
  /* without peer URLs: 421 naming the owner */
  cmd_instances_t bare = {1, 3, ""};
  cmd_instances_route(&bare, 5, path, &r);
  assert_int_equal(r.kind, CMD_ROUTE_MISDIRECTED);
  assert_int_equal(r.owner, 2);
  assert_int_equal(cmd_route_status(r.kind), 421);
  assert_string_equal(r.location, "");
  /* a single instance decides everything */
  cmd_instances_t single = {0, 1, ""};
  for (int32_t p = -1; p < 6; p++) {
    cmd_instances_route(&single, p, path, &r);
    assert_int_equal(r.kind, CMD_ROUTE_LOCAL);
  }
}

/* A store's owner follows its partition (murmur2 of the id, as every
 * client computes it): the store of partition 3 of 6 is instance 1's. */
static void test_store_owner_by_partition(void **st) {
  (void)st;
  const char *store = "0190a1b2-0000-7000-8000-000000000001";
  int32_t p = cmd_lanes_partition(store, 6);
  assert_int_equal(p, 3);
  cmd_instances_t i1 = {1, 2, ""}, i0 = {0, 2, ""};
  assert_true(cmd_instances_owns_partition(&i1, p));
  assert_false(cmd_instances_owns_partition(&i0, p));
}

/* An instance's partitions spread over all of its lanes. */
static void test_owned_partitions_spread_over_lanes(void **st) {
  (void)st;
  /* instance 1 of 2 owns 1, 3, 5: lanes 0, 1, 0 of 2 (not all on 1) */
  assert_int_equal(cmd_lanes_of_owned_partition(1, 2, 2), 0);
  assert_int_equal(cmd_lanes_of_owned_partition(3, 2, 2), 1);
  assert_int_equal(cmd_lanes_of_owned_partition(5, 2, 2), 0);
  /* a single instance: p mod lanes, as before */
  for (int32_t p = 0; p < 12; p++)
    assert_int_equal(cmd_lanes_of_owned_partition(p, 1, 4),
                     cmd_lanes_of_partition(p, 4));
}

/* The bus intake: each instance has a group of its own; a single
 * instance keeps the configured one. */
static void test_intake_group_per_instance(void **st) {
  (void)st;
  char out[64];
  cmd_instances_t one = {0, 1, ""}, i1 = {1, 3, ""};
  assert_int_equal(cmd_instances_intake_group(&one, "intake", out, sizeof(out)),
                   0);
  assert_string_equal(out, "intake");
  assert_int_equal(cmd_instances_intake_group(&i1, "intake", out, sizeof(out)),
                   0);
  assert_string_equal(out, "intake-i1of3");
  assert_int_equal(cmd_instances_intake_group(&i1, "intake", out, 12), -1);
}

/* A bus command is answered by the owner of its store's stock partition
 * (murmur2 over the stock topic's count, not the commands topic's): the
 * store of stock partition 3 of 6 is instance 1's of 2, although on a
 * commands topic of 5 partitions it would land on partition 2 (which
 * p mod 2 would give instance 0). */
static void test_intake_owner_by_stock_partition(void **st) {
  (void)st;
  const char *store = "0190a1b2-0000-7000-8000-000000000001";
  size_t len = strlen(store);
  assert_int_equal(cmd_lanes_partition(store, 6), 3);
  assert_int_equal(cmd_lanes_partition(store, 5), 2);
  cmd_instances_t i0 = {0, 2, ""}, i1 = {1, 2, ""}, one = {0, 1, ""};
  assert_int_equal(cmd_instances_intake(&i1, store, len, 6), CMD_INTAKE_ANSWER);
  assert_int_equal(cmd_instances_intake(&i0, store, len, 6), CMD_INTAKE_SKIP);
  /* the partition count is not known before the first rebuild */
  assert_int_equal(cmd_instances_intake(&i0, store, len, 0), CMD_INTAKE_WAIT);
  assert_int_equal(cmd_instances_intake(&i1, store, len, -1), CMD_INTAKE_WAIT);
  /* a single instance answers everything, at once */
  assert_int_equal(cmd_instances_intake(&one, store, len, 0),
                   CMD_INTAKE_ANSWER);
  /* no store (an undecodable command without a key): instance 0's */
  assert_int_equal(cmd_instances_intake(&i0, "", 0, 6), CMD_INTAKE_ANSWER);
  assert_int_equal(cmd_instances_intake(&i1, "", 0, 6), CMD_INTAKE_SKIP);
  assert_int_equal(cmd_instances_intake(&i1, NULL, 0, 0), CMD_INTAKE_SKIP);
}

/* Every command has exactly one answering instance, and it is the one that
 * writes the store (cmd_instances_owns_partition), for any count. */
static void test_intake_exactly_one_owner(void **st) {
  (void)st;
  for (unsigned n = 1; n <= 5; n++) {
    for (int k = 0; k < 200; k++) {
      char store[40];
      snprintf(store, sizeof(store), "store-%d", k);
      unsigned answering = 0;
      for (unsigned i = 0; i < n; i++) {
        cmd_instances_t ins = {i, n, ""};
        cmd_intake_verdict_t v =
            cmd_instances_intake(&ins, store, strlen(store), 6);
        assert_int_not_equal(v, CMD_INTAKE_WAIT);
        if (v == CMD_INTAKE_ANSWER) {
          answering++;
          assert_true(
              cmd_instances_owns_partition(&ins, cmd_lanes_partition(store, 6)));
        }
      }
      assert_int_equal(answering, 1);
    }
  }
}

static void test_state_log_positions(void **st) {
  (void)st;
  cmd_state_t *s = NULL;
  assert_int_equal(cmd_state_new(&s), 0);
  assert_int_equal(cmd_state_stock_partitions(s), 0);
  assert_int_equal(cmd_state_log_next(s, true, 0), -1);
  assert_int_equal(cmd_state_log_next(s, false, 2), -1);
  assert_int_equal(cmd_state_set_log_next(s, true, 0, 17), 0);
  assert_int_equal(cmd_state_set_log_next(s, true, 1, 17), SF_EINVAL);
  assert_int_equal(cmd_state_set_log_next(s, false, 5, 40), 0);
  assert_int_equal(cmd_state_stock_partitions(s), 6);
  assert_int_equal(cmd_state_log_next(s, true, 0), 17);
  assert_int_equal(cmd_state_log_next(s, false, 5), 40);
  assert_int_equal(cmd_state_log_next(s, false, 2), -1);
  assert_int_equal(cmd_state_set_log_next(s, false, -1, 1), SF_EINVAL);
  cmd_state_destroy(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_owner_of_partition),
      cmocka_unit_test(test_assignment_is_disjoint_and_covering),
      cmocka_unit_test(test_txn_prefix_follows_the_assignment),
      cmocka_unit_test(test_peer_urls),
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_route_decision),
      cmocka_unit_test(test_store_owner_by_partition),
      cmocka_unit_test(test_owned_partitions_spread_over_lanes),
      cmocka_unit_test(test_state_log_positions),
      cmocka_unit_test(test_intake_group_per_instance),
      cmocka_unit_test(test_intake_owner_by_stock_partition),
      cmocka_unit_test(test_intake_exactly_one_owner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

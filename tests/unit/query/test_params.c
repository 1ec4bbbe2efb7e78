/* Unit tests for services/query/qry_params.c and qry_config.c: page limits,
 * boolean flags, keyset cursors, the transaction type filter, position
 * tokens, price normalisation, ILIKE patterns and the settings table. Bad
 * input is tested as hard as good input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_config.h"
#include "qry_params.h"
#include "sf/err.h"

static void test_limit_default_and_range(void **state) {
  (void)state;
  int v = -1;
  assert_int_equal(qry_parse_limit(NULL, &v), 0);
  assert_int_equal(v, QRY_LIMIT_DEFAULT);
  assert_int_equal(qry_parse_limit("1", &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(qry_parse_limit("500", &v), 0);
  assert_int_equal(v, 500);
  assert_int_equal(qry_parse_limit("73", &v), 0);
  assert_int_equal(v, 73);
}

static void test_limit_rejects_garbage(void **state) {
  (void)state;
  static const char *const bad[] = {
      "0", "501", "abc", "", "-1", "+5", " 5", "5 ", "05",
      "1e2", "5000", "2.5", "0x10", "99999999999999999999", "5a", "-0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int v = 42;
    assert_int_equal(qry_parse_limit(bad[i], &v), SF_EINVAL);
    assert_int_equal(v, 42); /* untouched on failure */
  }
}

static void test_bool(void **state) {
  (void)state;
  bool b = true;
  assert_int_equal(qry_parse_bool(NULL, false, &b), 0);
  assert_false(b);
  assert_int_equal(qry_parse_bool("true", false, &b), 0);
  assert_true(b);
  assert_int_equal(qry_parse_bool("0", true, &b), 0);
  assert_false(b);
  assert_int_equal(qry_parse_bool("1", false, &b), 0);
  assert_true(b);
  assert_int_equal(qry_parse_bool("false", true, &b), 0);
  assert_false(b);
  assert_int_equal(qry_parse_bool("yes", false, &b), SF_EINVAL);
  assert_int_equal(qry_parse_bool("", false, &b), SF_EINVAL);
  assert_int_equal(qry_parse_bool("TRUE", false, &b), SF_EINVAL);
  assert_int_equal(qry_parse_bool("truex", false, &b), SF_EINVAL);
}

static const char id_a[] = "0190f3a1-7c2b-7d4e-8f00-0123456789ab";

static void test_cursor_round_trip(void **state) {
  (void)state;
  static const qry_cursor_kind_t kinds[] = {
      QRY_CURSOR_STORE_INVENTORY, QRY_CURSOR_TRANSACTIONS, QRY_CURSOR_PRODUCTS,
      QRY_CURSOR_STORES, QRY_CURSOR_PRODUCT_INVENTORY};
  static const char *const ids[] = {id_a,
                                    "00000000-0000-0000-0000-000000000000",
                                    "ffffffff-ffff-ffff-ffff-ffffffffffff"};
  for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
      char cur[QRY_CURSOR_CAP];
      char back[SF_UUID_STR_LEN + 1];
      assert_int_equal(qry_cursor_encode(kinds[k], ids[i], cur), 0);
      assert_int_equal(strlen(cur), 23);
      /* base64url alphabet only: safe in a query string as is */
      assert_int_equal(strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                   "qrstuvwxyz0123456789-_"),
                       23);
      assert_int_equal(qry_cursor_decode(cur, kinds[k], back), 0);
      assert_string_equal(back, ids[i]);
      /* a cursor of one list is refused by another */
      qry_cursor_kind_t other = kinds[(k + 1) % 5];
      assert_int_equal(qry_cursor_decode(cur, other, back), SF_EPARSE);
    }
  }
}

static void test_cursor_lowercases(void **state) {
  (void)state;
  char cur[QRY_CURSOR_CAP];
  char back[SF_UUID_STR_LEN + 1];
  assert_int_equal(qry_cursor_encode(QRY_CURSOR_PRODUCTS,
                                     "0190F3A1-7C2B-7D4E-8F00-0123456789AB",
                                     cur),
                   0);
  assert_int_equal(qry_cursor_decode(cur, QRY_CURSOR_PRODUCTS, back), 0);
  assert_string_equal(back, id_a);
}

static void test_cursor_encode_rejects_non_uuid(void **state) {
  (void)state;
  char cur[QRY_CURSOR_CAP];
  assert_int_equal(qry_cursor_encode(QRY_CURSOR_PRODUCTS, "nope", cur),
                   SF_EINVAL);
  assert_int_equal(qry_cursor_encode(QRY_CURSOR_PRODUCTS, NULL, cur),
                   SF_EINVAL);
  assert_int_equal(
      qry_cursor_encode(QRY_CURSOR_PRODUCTS,
                        "0190f3a1-7c2b-7d4e-8f00-0123456789abc", cur),
      SF_EINVAL);
}

static void test_cursor_rejects_garbage(void **state) {
  (void)state;
  char good[QRY_CURSOR_CAP];
  assert_int_equal(qry_cursor_encode(QRY_CURSOR_STORES, id_a, good), 0);
  char back[SF_UUID_STR_LEN + 1];

  static const char *const bad[] = {
      "", "abc", "!!!!!!!!!!!!!!!!!!!!!!!", "cy0xMjM", id_a,
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "c+AAAAAAAAAAAAAAAAAAAAA",                            /* '+' is not base64url */
      "c/AAAAAAAAAAAAAAAAAAAAA", "cAAAAAAAAAAAAAAAAAAAAA=", /* padding */
      "cAAAAAAAAAAAAAAAAAAAAA",                             /* 22 chars: 16 bytes */
      "cAAAAAAAAAAAAAAAAAAAAAAA",                           /* 24 chars: 18 bytes */
      "cAAAAAAAAAAA AAAAAAAAAA"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(qry_cursor_decode(bad[i], QRY_CURSOR_STORES, back),
                     SF_EPARSE);
  assert_int_equal(qry_cursor_decode(NULL, QRY_CURSOR_STORES, back),
                   SF_EPARSE);

  /* trailing garbage after a good cursor */
  char longer[QRY_CURSOR_CAP + 4];
  snprintf(longer, sizeof(longer), "%sA", good);
  assert_int_equal(qry_cursor_decode(longer, QRY_CURSOR_STORES, back),
                   SF_EPARSE);
  /* a non-canonical last character (leftover bits set) is refused: 17 bytes
   * leave 2 spare bits in the 23rd character */
  char tweak[QRY_CURSOR_CAP];
  memcpy(tweak, good, sizeof(tweak));
  tweak[22] = tweak[22] == 'B' ? 'C' : 'B';
  assert_int_equal(qry_cursor_decode(tweak, QRY_CURSOR_STORES, back),
                   SF_EPARSE);
  /* each single-character corruption either fails or decodes to another
   * id, never crashes; the kind byte corrupted always fails */
  memcpy(tweak, good, sizeof(tweak));
  tweak[0] = tweak[0] == 'A' ? 'B' : 'A';
  assert_int_equal(qry_cursor_decode(tweak, QRY_CURSOR_STORES, back),
                   SF_EPARSE);
}

static void test_tx_types(void **state) {
  (void)state;
  /* Orders write history rows too (phase 2): their types filter as well. */
  static const char *const ok[] = {
      "receipt", "sale", "return", "adjustment",
      "count", "transfer_out", "transfer_in", "order_placed",
      "order_fulfilled", "order_cancelled", "order_expired"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    assert_true(qry_tx_type_valid(ok[i]));
  static const char *const bad[] = {"", "Sale", "sale ",
                                    "transfer", "order", "receipts",
                                    "sal", "placed", NULL};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_false(qry_tx_type_valid(bad[i]));
}

static void test_order_status(void **state) {
  (void)state;
  assert_true(qry_order_status_valid("placed"));
  assert_true(qry_order_status_valid("fulfilled"));
  assert_true(qry_order_status_valid("cancelled"));
  static const char *const bad[] = {"", "Placed", "canceled", "open",
                                    "fulfilled ", NULL};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_false(qry_order_status_valid(bad[i]));
}

static void test_position_list(void **state) {
  (void)state;
  qry_position_t p[4];
  size_t n = 99;
  assert_int_equal(qry_positions_parse("stock-5-169,stock-1-0", p, 4, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(p[0].kind, QRY_TOPIC_STOCK);
  assert_int_equal(p[0].partition, 5);
  assert_int_equal(p[0].offset, 169);
  assert_int_equal(p[1].partition, 1);
  assert_int_equal(p[1].offset, 0);
  /* one token is a list of one; blanks around tokens are fine */
  assert_int_equal(qry_positions_parse("catalog-0-17", p, 4, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(p[0].kind, QRY_TOPIC_CATALOG);
  assert_int_equal(qry_positions_parse(" stock-1-2 ,\tcatalog-0-3", p, 4, &n),
                   0);
  assert_int_equal(n, 2);
  assert_int_equal(p[1].offset, 3);
  /* exactly cap tokens pass, one more fails */
  assert_int_equal(
      qry_positions_parse("stock-0-1,stock-1-1,stock-2-1,stock-3-1", p, 4, &n),
      0);
  assert_int_equal(n, 4);
  n = 77;
  assert_int_equal(qry_positions_parse(
                       "stock-0-1,stock-1-1,stock-2-1,stock-3-1,stock-4-1", p,
                       4, &n),
                   SF_EPARSE);
  assert_int_equal(n, 77); /* untouched on failure */
  static const char *const bad[] = {
      "", ",", "stock-1-2,", ",stock-1-2",
      "stock-1-2,,stock-1-3", "stock-1-2;stock-1-3", "stock-1-2, ",
      "stock-1-2,bad-1-2", "stock-1-2 stock-1-3",
      "stock-1-99999999999999999999999999999999999999999999999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(qry_positions_parse(bad[i], p, 4, &n), SF_EPARSE);
  assert_int_equal(qry_positions_parse(NULL, p, 4, &n), SF_EPARSE);
}

static void test_header_tokens(void **state) {
  (void)state;
  assert_true(qry_header_has_token("Upgrade", "upgrade"));
  assert_true(qry_header_has_token("keep-alive, Upgrade", "upgrade"));
  assert_true(qry_header_has_token("websocket", "websocket"));
  assert_true(qry_header_has_token(" WebSocket ,h2c", "websocket"));
  assert_false(qry_header_has_token("keep-alive", "upgrade"));
  assert_false(qry_header_has_token("upgraded", "upgrade"));
  assert_false(qry_header_has_token("", "upgrade"));
  assert_false(qry_header_has_token(NULL, "upgrade"));
  assert_true(qry_accepts_media("text/event-stream", "text/event-stream"));
  assert_true(qry_accepts_media("application/json, Text/Event-Stream;q=0.9",
                                "text/event-stream"));
  assert_false(qry_accepts_media("*/*", "text/event-stream"));
  assert_false(qry_accepts_media("text/*", "text/event-stream"));
  assert_false(qry_accepts_media("text/event-streams", "text/event-stream"));
  assert_false(qry_accepts_media(NULL, "text/event-stream"));
}

static void test_position_good(void **state) {
  (void)state;
  qry_position_t p;
  assert_int_equal(qry_position_parse("stock-3-1234", &p), 0);
  assert_int_equal(p.kind, QRY_TOPIC_STOCK);
  assert_int_equal(p.partition, 3);
  assert_int_equal(p.offset, 1234);
  assert_int_equal(qry_position_parse("catalog-0-17", &p), 0);
  assert_int_equal(p.kind, QRY_TOPIC_CATALOG);
  assert_int_equal(p.partition, 0);
  assert_int_equal(p.offset, 17);
  assert_int_equal(qry_position_parse("stock-0-0", &p), 0);
  assert_int_equal(p.offset, 0);
  assert_int_equal(
      qry_position_parse("stock-2147483647-9223372036854775807", &p), 0);
  assert_int_equal(p.partition, INT32_MAX);
  assert_true(p.offset == INT64_MAX);
}

static void test_position_bad(void **state) {
  (void)state;
  static const char *const bad[] = {"",
                                    "stock",
                                    "stock-",
                                    "stock-3",
                                    "stock-3-",
                                    "stock--1",
                                    "stock-3-12a",
                                    "orders-1-2",
                                    "stock-03-1",
                                    "stock-3-01",
                                    "stock-3-1-2",
                                    "Stock-3-1",
                                    "stock-2147483648-1",
                                    "stock-1-9223372036854775808",
                                    "stock-+1-2",
                                    "stock-1--2",
                                    " stock-1-2",
                                    "stock-1-2 ",
                                    "catalog_0_17",
                                    "stock-1-99999999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    qry_position_t p = {QRY_TOPIC_CATALOG, 99, 99};
    assert_int_equal(qry_position_parse(bad[i], &p), SF_EPARSE);
    assert_int_equal(p.partition, 99); /* untouched */
  }
  qry_position_t p;
  assert_int_equal(qry_position_parse(NULL, &p), SF_EPARSE);
}

static void test_price(void **state) {
  (void)state;
  static const char *const cases[][2] = {
      {"19.9900", "19.99"}, {"20.0000", "20.00"}, {"0.1250", "0.125"}, {"0.0001", "0.0001"}, {"5", "5.00"}, {"5.1", "5.10"}, {"7.50", "7.50"}, {"0.0000", "0.00"}, {"123456789012345.4567", "123456789012345.4567"}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char out[64];
    assert_int_equal(qry_price_normalize(cases[i][0], out, sizeof(out)), 0);
    assert_string_equal(out, cases[i][1]);
  }
  static const char *const bad[] = {"", "-1.00", "abc", "1.", ".5", "1.2.3",
                                    "1,50", " 1.00", "1e3", "NaN"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char out[64];
    assert_int_equal(qry_price_normalize(bad[i], out, sizeof(out)), SF_EINVAL);
  }
  char small[5];
  assert_int_equal(qry_price_normalize("19.9900", small, sizeof(small)),
                   SF_ETOOBIG);
  char exact[6];
  assert_int_equal(qry_price_normalize("19.9900", exact, sizeof(exact)), 0);
  assert_string_equal(exact, "19.99");
}

static void test_like_pattern(void **state) {
  (void)state;
  char out[QRY_LIKE_CAP];
  assert_int_equal(qry_like_pattern("widget", out, sizeof(out)), 0);
  assert_string_equal(out, "%widget%");
  assert_int_equal(qry_like_pattern("50%_off\\x", out, sizeof(out)), 0);
  assert_string_equal(out, "%50\\%\\_off\\\\x%");
  assert_int_equal(qry_like_pattern("", out, sizeof(out)), SF_EINVAL);
  assert_int_equal(qry_like_pattern(NULL, out, sizeof(out)), SF_EINVAL);

  char q[QRY_Q_MAX + 2];
  memset(q, '%', QRY_Q_MAX);
  q[QRY_Q_MAX] = '\0';
  assert_int_equal(qry_like_pattern(q, out, sizeof(out)), 0); /* worst case */
  assert_int_equal(strlen(out), 2 * QRY_Q_MAX + 2);
  q[QRY_Q_MAX] = 'x';
  q[QRY_Q_MAX + 1] = '\0';
  assert_int_equal(qry_like_pattern(q, out, sizeof(out)), SF_EINVAL);

  char tiny[4];
  assert_int_equal(qry_like_pattern("ab", tiny, sizeof(tiny)), SF_ETOOBIG);
}

/* The config table: every key documented, flags mirror their environment
 * variable in kebab case, defaults parse. */
static void test_config_table(void **state) {
  (void)state;
  const sf_cfg_spec_t *spec = qry_config_spec();
  assert_non_null(spec);
  assert_true(spec->n_entries >= 8);
  for (size_t i = 0; i < spec->n_entries; i++) {
    const sf_cfg_entry_t ent = sf_config_entry(spec, i), *e = &ent;
    assert_non_null(e->help);
    assert_true(strlen(e->help) > 5);
    char env[128] = "STOCKFLOW_";
    size_t o = strlen(env);
    for (const char *k = e->key; *k && o + 1 < sizeof(env); k++)
      env[o++] = *k == '-' ? '_' : (char)(*k >= 'a' && *k <= 'z' ? *k - 32 : *k);
    env[o] = '\0';
    assert_string_equal(e->env, env);
  }
  qry_settings_t s;
  memset(&s, 0, sizeof(s));
  char prog[] = "stockflow-query";
  char *argv[] = {prog, NULL};
  FILE *null = fopen("/dev/null", "w");
  assert_non_null(null);
  assert_int_equal(sf_config_parse(spec, &s, 1, argv, null, null), SF_CFG_RUN);
  fclose(null);
  assert_int_equal(s.pg_pool, 4);
  assert_int_equal(s.min_position_wait_ms, 5000);
  assert_string_equal(s.listen, "127.0.0.1:8082");
  assert_string_equal(s.projector_group, "stockflow-projector");
  assert_string_equal(s.topic_stock, "inventory.stock");
  assert_string_equal(s.topic_catalog, "inventory.catalog");
  assert_int_equal(s.position_poll_ms, 250);
  assert_int_equal(s.stream_max_buffer, 1048576);
  assert_int_equal(s.stream_heartbeat_ms, 15000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_limit_default_and_range),
      cmocka_unit_test(test_limit_rejects_garbage),
      cmocka_unit_test(test_bool),
      cmocka_unit_test(test_cursor_round_trip),
      cmocka_unit_test(test_cursor_lowercases),
      cmocka_unit_test(test_cursor_encode_rejects_non_uuid),
      cmocka_unit_test(test_cursor_rejects_garbage),
      cmocka_unit_test(test_tx_types),
      cmocka_unit_test(test_position_good),
      cmocka_unit_test(test_position_bad),
      cmocka_unit_test(test_position_list),
      cmocka_unit_test(test_order_status),
      cmocka_unit_test(test_header_tokens),
      cmocka_unit_test(test_price),
      cmocka_unit_test(test_like_pattern),
      cmocka_unit_test(test_config_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

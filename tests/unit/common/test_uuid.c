/* Tests for common/src/uuid.c: UUIDv7 layout (version, variant, time),
 * strict ordering under a burst and a clock that stands still, and a strict
 * parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "sf/err.h"
#include "sf/uuid.h"

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_layout(void **state) {
  (void)state;
  sf_uuidgen_t g;
  sf_uuidgen_init(&g);
  int64_t before = wall_ms();
  sf_uuid_t u;
  sf_uuid_v7(&g, &u);
  int64_t after = wall_ms();
  assert_int_equal(u.b[6] >> 4, 7); /* version 7 */
  assert_int_equal(u.b[8] >> 6, 2); /* variant 10 */
  assert_in_range(sf_uuid_v7_ms(&u), before, after);
  char s[SF_UUID_STR_LEN + 1];
  sf_uuid_format(&u, s);
  assert_int_equal(strlen(s), SF_UUID_STR_LEN);
  assert_int_equal(s[14], '7');
  assert_true(strchr("89ab", s[19]) != NULL);
}

static void test_format_parse(void **state) {
  (void)state;
  sf_uuid_t u;
  for (int i = 0; i < 16; i++)
    u.b[i] = (uint8_t)(i * 17);
  char s[SF_UUID_STR_LEN + 1];
  sf_uuid_format(&u, s);
  assert_string_equal(s, "00112233-4455-6677-8899-aabbccddeeff");
  sf_uuid_t back;
  assert_int_equal(sf_uuid_parse(s, &back), 0);
  assert_memory_equal(&u, &back, sizeof(u));
  /* either case */
  assert_int_equal(sf_uuid_parse("00112233-4455-6677-8899-AABBCCDDEEFF",
                                 &back),
                   0);
  assert_memory_equal(&u, &back, sizeof(u));
  assert_true(sf_uuid_valid("00112233-4455-6677-8899-AaBbCcDdEeFf"));
}

static void test_parse_rejects(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      "00112233-4455-6677-8899-aabbccddeef",   /* short */
      "00112233-4455-6677-8899-aabbccddeeff0", /* long */
      "00112233-4455-6677-8899-aabbccddeeg0",  /* non-hex */
      "0011223344556677-8899-aabbccddeeff",    /* dashes missing */
      "00112233445566778899aabbccddeeff",      /* no dashes at all */
      "00112233-4455-6677-8899_aabbccddeeff",  /* wrong separator */
      "0011223-34455-6677-8899-aabbccddeeff",  /* dash misplaced */
      "{00112233-4455-6677-8899-aabbccddeeff}",
      " 00112233-4455-6677-8899-aabbccddeeff",
      "00112233-4455-6677-8899-aabbccddee f",
      "0x112233-4455-6677-8899-aabbccddeeff",
  };
  sf_uuid_t u;
  memset(&u, 0x5a, sizeof(u));
  sf_uuid_t untouched = u;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(sf_uuid_parse(bad[i], &u), SF_EINVAL);
    assert_false(sf_uuid_valid(bad[i]));
  }
  assert_memory_equal(&u, &untouched, sizeof(u));
  assert_int_equal(sf_uuid_parse(NULL, &u), SF_EINVAL);
  assert_false(sf_uuid_valid(NULL));
}

/* 100k ids from one generator: each strictly greater than the last, both as
 * bytes and as strings (so ORDER BY id in PostgreSQL sorts them too). */
static void test_strict_order(void **state) {
  (void)state;
  sf_uuidgen_t g;
  sf_uuidgen_init(&g);
  sf_uuid_t prev, cur;
  char ps[SF_UUID_STR_LEN + 1], cs[SF_UUID_STR_LEN + 1];
  sf_uuid_v7(&g, &prev);
  sf_uuid_format(&prev, ps);
  for (int i = 0; i < 100000; i++) {
    sf_uuid_v7(&g, &cur);
    sf_uuid_format(&cur, cs);
    assert_true(memcmp(&prev, &cur, sizeof(cur)) < 0);
    assert_true(strcmp(ps, cs) < 0);
    assert_int_equal(cur.b[6] >> 4, 7);
    assert_int_equal(cur.b[8] >> 6, 2);
    prev = cur;
    memcpy(ps, cs, sizeof(ps));
  }
}

/* A clock far behind the generator's state (as after a clock step back)
 * and counter exhaustion: ids keep increasing, and the timestamp moves
 * forward one millisecond per 4096 ids at most. */
static void test_clock_back_and_overflow(void **state) {
  (void)state;
  sf_uuidgen_t g;
  sf_uuidgen_init(&g);
  int64_t future = wall_ms() + 3600 * 1000;
  g.last_ms = future;
  g.seq = 0xffe;
  sf_uuid_t a, b, c;
  sf_uuid_v7(&g, &a);
  assert_int_equal(sf_uuid_v7_ms(&a), future);
  assert_int_equal(((a.b[6] & 0x0f) << 8) | a.b[7], 0xfff);
  sf_uuid_v7(&g, &b); /* counter exhausted: next millisecond */
  assert_int_equal(sf_uuid_v7_ms(&b), future + 1);
  assert_true(memcmp(&a, &b, sizeof(a)) < 0);
  for (int i = 0; i < 5000; i++) {
    sf_uuid_v7(&g, &c);
    assert_true(memcmp(&b, &c, sizeof(b)) < 0);
    b = c;
  }
  assert_int_equal(sf_uuid_v7_ms(&c), future + 2);
}

static void test_v7_str(void **state) {
  (void)state;
  sf_uuidgen_t g;
  sf_uuidgen_init(&g);
  char s[SF_UUID_STR_LEN + 1];
  sf_uuid_v7_str(&g, s);
  assert_true(sf_uuid_valid(s));
  sf_uuid_t u;
  assert_int_equal(sf_uuid_parse(s, &u), 0);
  assert_int_equal(u.b[6] >> 4, 7);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_format_parse),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_strict_order),
      cmocka_unit_test(test_clock_back_and_overflow),
      cmocka_unit_test(test_v7_str),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Tests for common/src/command.c: the StockCommand codec of the bus
 * intake, against bytes written by fastavro (a non-C Avro implementation),
 * and against hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf/command.h"
#include "sf/err.h"

/* fastavro 1.13.1: schemaless_writer(schemas/command.avsc) of
 * {command_id ...89ab, store_id ...0001, product_id ...00a1, adjustment,
 *  -3, reason "damage", reference null, actor null, correlation "corr-1"}
 * behind the single-object header (fingerprint 9b3f28663aa2a777). */
static const uint8_t fastavro_bytes[] = {
    0xc3, 0x01, 0x9b, 0x3f, 0x28, 0x66, 0x3a, 0xa2, 0xa7, 0x77, 0x48, 0x30,
    0x31, 0x39, 0x30, 0x66, 0x35, 0x63, 0x34, 0x2d, 0x37, 0x62, 0x31, 0x65,
    0x2d, 0x37, 0x63, 0x33, 0x61, 0x2d, 0x38, 0x61, 0x39, 0x62, 0x2d, 0x30,
    0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x48,
    0x30, 0x31, 0x39, 0x30, 0x66, 0x35, 0x63, 0x34, 0x2d, 0x37, 0x62, 0x31,
    0x65, 0x2d, 0x37, 0x63, 0x33, 0x61, 0x2d, 0x38, 0x61, 0x39, 0x62, 0x2d,
    0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31,
    0x48, 0x30, 0x31, 0x39, 0x30, 0x66, 0x35, 0x63, 0x34, 0x2d, 0x37, 0x62,
    0x31, 0x65, 0x2d, 0x37, 0x63, 0x33, 0x61, 0x2d, 0x38, 0x61, 0x39, 0x62,
    0x2d, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x61,
    0x31, 0x06, 0x05, 0x02, 0x0c, 0x64, 0x61, 0x6d, 0x61, 0x67, 0x65, 0x00,
    0x00, 0x02, 0x0c, 0x63, 0x6f, 0x72, 0x72, 0x2d, 0x31};

static uint64_t fp(void) {
  uint64_t f = 0;
  assert_int_equal(sf_command_fingerprint(&f), 0);
  return f;
}

static void test_fingerprint_matches_fastavro(void **state) {
  (void)state;
  assert_true(fp() == UINT64_C(0x77a7a23a66283f9b));
}

static void test_decode_fastavro_bytes(void **state) {
  (void)state;
  sf_command_t c;
  assert_int_equal(sf_command_decode(fastavro_bytes, sizeof(fastavro_bytes),
                                     fp(), &c),
                   0);
  assert_string_equal(c.command_id, "0190f5c4-7b1e-7c3a-8a9b-0123456789ab");
  assert_string_equal(c.store_id, "0190f5c4-7b1e-7c3a-8a9b-000000000001");
  assert_string_equal(c.product_id, "0190f5c4-7b1e-7c3a-8a9b-0000000000a1");
  assert_int_equal(c.movement, SF_MOVE_ADJUSTMENT);
  assert_true(c.quantity == -3);
  assert_true(c.has_reason);
  assert_string_equal(c.reason, "damage");
  assert_false(c.has_reference);
  assert_string_equal(c.actor, "");
  assert_true(c.has_correlation_id);
  assert_string_equal(c.correlation_id, "corr-1");
  /* and our writer produces the very same bytes */
  uint8_t out[512];
  size_t len = 0;
  assert_int_equal(sf_command_encode(&c, fp(), out, sizeof(out), &len), 0);
  assert_int_equal(len, sizeof(fastavro_bytes));
  assert_memory_equal(out, fastavro_bytes, len);
}

static void test_every_truncation_fails(void **state) {
  (void)state;
  uint64_t f = fp();
  for (size_t n = 0; n < sizeof(fastavro_bytes); n++) {
    sf_command_t c;
    int rc = sf_command_decode(fastavro_bytes, n, f, &c);
    assert_true(rc == SF_ETRUNCATED || rc == SF_EPARSE);
  }
}

static void test_hostile_input(void **state) {
  (void)state;
  uint64_t f = fp();
  uint8_t b[sizeof(fastavro_bytes) + 16];
  sf_command_t c;
  /* wrong marker, unknown fingerprint */
  memcpy(b, fastavro_bytes, sizeof(fastavro_bytes));
  b[0] = 0xC4;
  assert_int_equal(sf_command_decode(b, sizeof(fastavro_bytes), f, &c),
                   SF_EPARSE);
  memcpy(b, fastavro_bytes, sizeof(fastavro_bytes));
  b[5] ^= 1;
  assert_int_equal(sf_command_decode(b, sizeof(fastavro_bytes), f, &c),
                   SF_ESCHEMA);
  /* a huge string length (2^40) in command_id: refused, nothing allocated */
  memcpy(b, fastavro_bytes, 10);
  const uint8_t huge[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x40};
  memcpy(b + 10, huge, sizeof(huge));
  assert_int_equal(sf_command_decode(b, 10 + sizeof(huge), f, &c),
                   SF_ETRUNCATED);
  /* a negative length */
  b[10] = 0x01;
  assert_int_equal(sf_command_decode(b, 11, f, &c), SF_EPARSE);
  /* an 11-byte varint */
  memset(b + 10, 0xff, 10);
  b[20] = 0x01;
  assert_int_equal(sf_command_decode(b, 21, f, &c), SF_EPARSE);
  /* movement index 5 (zig-zag 10), union index 2, trailing byte */
  memcpy(b, fastavro_bytes, sizeof(fastavro_bytes));
  size_t movement_at = 10 + 3 * 37;
  assert_int_equal(b[movement_at], 0x06);
  b[movement_at] = 0x0a;
  assert_int_equal(sf_command_decode(b, sizeof(fastavro_bytes), f, &c),
                   SF_EPARSE);
  memcpy(b, fastavro_bytes, sizeof(fastavro_bytes));
  assert_int_equal(b[movement_at + 2], 0x02); /* reason: branch 1 */
  b[movement_at + 2] = 0x04;
  assert_int_equal(sf_command_decode(b, sizeof(fastavro_bytes), f, &c),
                   SF_EPARSE);
  memcpy(b, fastavro_bytes, sizeof(fastavro_bytes));
  b[sizeof(fastavro_bytes)] = 0;
  assert_int_equal(sf_command_decode(b, sizeof(fastavro_bytes) + 1, f, &c),
                   SF_EPARSE);
  /* an id that is not a UUID */
  memcpy(b, fastavro_bytes, sizeof(fastavro_bytes));
  b[11] = 'x';
  assert_int_equal(sf_command_decode(b, sizeof(fastavro_bytes), f, &c),
                   SF_EPARSE);
}

static void test_random_flips_never_crash(void **state) {
  (void)state;
  uint64_t f = fp();
  uint8_t b[sizeof(fastavro_bytes)];
  uint32_t seed = 12345;
  for (int i = 0; i < 20000; i++) {
    memcpy(b, fastavro_bytes, sizeof(b));
    for (int k = 0; k < 3; k++) {
      seed = seed * 1103515245u + 12345u;
      b[10 + (seed >> 8) % (sizeof(b) - 10)] ^= (uint8_t)(seed >> 16);
    }
    sf_command_t c;
    (void)sf_command_decode(b, sizeof(b), f, &c);
  }
}

static void test_encode_limits(void **state) {
  (void)state;
  sf_command_t c;
  memset(&c, 0, sizeof(c));
  strcpy(c.command_id, "0190f5c4-7b1e-7c3a-8a9b-0123456789ab");
  strcpy(c.store_id, "0190f5c4-7b1e-7c3a-8a9b-000000000001");
  strcpy(c.product_id, "not a uuid");
  uint8_t out[512];
  size_t len;
  assert_int_equal(sf_command_encode(&c, fp(), out, sizeof(out), &len),
                   SF_EINVAL);
  strcpy(c.product_id, "0190f5c4-7b1e-7c3a-8a9b-0000000000a1");
  assert_int_equal(sf_command_encode(&c, fp(), out, 20, &len), SF_ETOOBIG);
  assert_int_equal(sf_command_encode(&c, fp(), out, sizeof(out), &len), 0);
  sf_command_t back;
  assert_int_equal(sf_command_decode(out, len, fp(), &back), 0);
  assert_int_equal(back.movement, SF_MOVE_RECEIPT);
  assert_false(back.has_reason);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fingerprint_matches_fastavro),
      cmocka_unit_test(test_decode_fastavro_bytes),
      cmocka_unit_test(test_every_truncation_fails),
      cmocka_unit_test(test_hostile_input),
      cmocka_unit_test(test_random_flips_never_crash),
      cmocka_unit_test(test_encode_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

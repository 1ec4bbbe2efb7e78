/* Tests for common/src/avro.c: CRC-64-AVRO against the specification's
 * reference algorithm, the Parsing Canonical Form and fingerprints against
 * fastavro, strict UTF-8, and the bounds-checking walk on small schemas with
 * bytes written by hand: good data, truncation, crafted lengths and counts,
 * bad indexes, trailing bytes, the item bound and the depth bound. The
 * walk's use on the envelope is tested in test_event.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf/avro.h"
#include "sf/err.h"

/* Vectors computed with the Avro specification's reference algorithm:
 *   EMPTY = 0xc15d213aa4d7a795
 *   T = []
 *   for i in range(256):
 *       fp = i
 *       for _ in range(8): fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
 *       T.append(fp)
 *   def crc(b):
 *       fp = EMPTY
 *       for x in b: fp = (fp >> 8) ^ T[(fp ^ x) & 0xff]
 *       return fp
 * ("int" -> 0x7275d51a3f395c8f is also in the Avro test suite.) */
static void test_crc64(void **state) {
  (void)state;
  assert_true(sf_avro_crc64("", 0) == UINT64_C(0xc15d213aa4d7a795));
  assert_true(sf_avro_crc64("a", 1) == UINT64_C(0x0ade663b45cf10e2));
  assert_true(sf_avro_crc64("123456789", 9) == UINT64_C(0xa2cdcf9465b2c75f));
  assert_true(sf_avro_crc64("\"int\"", 5) == UINT64_C(0x7275d51a3f395c8f));
  assert_true(sf_avro_crc64("\"string\"", 8) ==
              UINT64_C(0x8f014872634503c7));
}

static void expect_pcf(const char *schema, const char *canon) {
  char *out = NULL;
  assert_int_equal(sf_avro_canonical_form(schema, strlen(schema), &out), 0);
  assert_string_equal(out, canon);
  free(out);
}

#define NESTED                                                              \
  "{\"type\": \"record\", \"name\": \"R\", \"namespace\": \"a\", \"doc\": " \
  "\"x\", \"fields\": [{\"name\": \"e\", \"default\": \"A\", \"type\": "    \
  "{\"type\": \"enum\", \"name\": \"E\", \"symbols\": [\"A\", \"B\"]}}, "   \
  "{\"name\": \"e2\", \"type\": \"E\"}]}"

/* Expected texts and the fingerprint come from fastavro 1.13.1
 * (fastavro.schema.to_parsing_canonical_form and fingerprint, which prints
 * the little-endian wire bytes 03283fa08683e45a for NESTED). */
static void test_canonical_form(void **state) {
  (void)state;
  expect_pcf("{\"type\": \"int\"}", "\"int\"");
  expect_pcf("{\"type\": \"long\", \"logicalType\": \"timestamp-micros\"}",
             "\"long\"");
  expect_pcf("{\"type\": \"fixed\", \"size\": 4, \"namespace\": \"x.y\", "
             "\"name\": \"Foo\"}",
             "{\"name\":\"x.y.Foo\",\"type\":\"fixed\",\"size\":4}");
  expect_pcf("{\"items\": \"string\", \"type\": \"array\"}",
             "{\"type\":\"array\",\"items\":\"string\"}");
  expect_pcf("[\"null\", {\"type\": \"map\", \"values\": \"long\"}]",
             "[\"null\",{\"type\":\"map\",\"values\":\"long\"}]");
  /* full names inside a namespace, doc and default dropped */
  expect_pcf(NESTED,
             "{\"name\":\"a.R\",\"type\":\"record\",\"fields\":[{\"name\":"
             "\"e\",\"type\":{\"name\":\"a.E\",\"type\":\"enum\",\"symbols\":"
             "[\"A\",\"B\"]}},{\"name\":\"e2\",\"type\":\"a.E\"}]}");
  uint64_t fp = 0;
  assert_int_equal(sf_avro_schema_fingerprint(NESTED, strlen(NESTED), &fp), 0);
  assert_true(fp == UINT64_C(0x5ae48386a03f2803));
  uint8_t wire[8];
  sf_avro_fingerprint_bytes(fp, wire);
  static const uint8_t want[8] = {0x03, 0x28, 0x3f, 0xa0,
                                  0x86, 0x83, 0xe4, 0x5a};
  assert_memory_equal(wire, want, 8);
  assert_int_equal(sf_avro_schema_fingerprint("\"int\"", 5, &fp), 0);
  assert_true(fp == UINT64_C(0x7275d51a3f395c8f));
}

static void test_canonical_form_rejects(void **state) {
  (void)state;
  char *out = NULL;
  uint64_t fp = 0;
  static const char *const bad[] = {
      "{",
      "",
      "42",
      "{\"type\": \"record\"}",
      "{\"type\": \"record\", \"name\": \"R\"}",
      "{\"type\": \"enum\", \"name\": \"E\"}",
      "{\"type\": \"fixed\", \"name\": \"F\", \"size\": \"4\"}",
      "{\"type\": \"array\"}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(sf_avro_canonical_form(bad[i], strlen(bad[i]), &out),
                     SF_ESCHEMA);
    assert_null(out);
    assert_int_equal(sf_avro_schema_fingerprint(bad[i], strlen(bad[i]), &fp),
                     SF_ESCHEMA);
  }
  /* nesting deeper than the bound is refused, not recursed into */
  char deep[1024] = "";
  for (int i = 0; i < 100; i++)
    strcat(deep, "[");
  strcat(deep, "\"int\"");
  for (int i = 0; i < 100; i++)
    strcat(deep, "]");
  assert_int_equal(sf_avro_schema_fingerprint(deep, strlen(deep), &fp),
                   SF_ESCHEMA);
}

static bool utf8(const char *s) {
  return sf_avro_utf8_valid((const uint8_t *)s, strlen(s));
}

static void test_utf8(void **state) {
  (void)state;
  assert_true(utf8(""));
  assert_true(utf8("plain"));
  assert_true(utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6"));
  assert_false(utf8("\xc0\xaf"));         /* overlong '/' */
  assert_false(utf8("\xe0\x80\xaf"));     /* overlong, 3 bytes */
  assert_false(utf8("\xed\xa0\x80"));     /* surrogate U+D800 */
  assert_false(utf8("\xf4\x90\x80\x80")); /* above U+10FFFF */
  assert_false(utf8("\xe2\x82"));         /* truncated */
  assert_false(utf8("\x80"));             /* lone continuation */
  assert_false(utf8("\xff"));
}

static sf_avro_walk_t *walk_of(const char *json) {
  avro_schema_t s = NULL;
  assert_int_equal(avro_schema_from_json_length(json, strlen(json), &s), 0);
  sf_avro_walk_t *w = NULL;
  assert_int_equal(sf_avro_walk_new(s, &w), 0);
  assert_non_null(w);
  avro_schema_decref(s); /* the walk does not keep the schema */
  return w;
}

#define CHECK(w, rc, ...)                                             \
  do {                                                                \
    static const uint8_t b_[] = {__VA_ARGS__};                        \
    assert_int_equal(sf_avro_walk_check(w, b_, sizeof(b_), 100), rc); \
  } while (0)

static void test_walk_primitives(void **state) {
  (void)state;
  sf_avro_walk_t *w = walk_of("\"long\"");
  CHECK(w, 0, 0x02);
  CHECK(w, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
  CHECK(w, SF_EPARSE, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0x02);                     /* the 10th byte carries more than bit 63 */
  CHECK(w, SF_ETRUNCATED, 0x80);   /* unfinished varint */
  CHECK(w, SF_EPARSE, 0x02, 0x00); /* trailing byte */
  assert_int_equal(sf_avro_walk_check(w, (const uint8_t *)"", 0, 100),
                   SF_ETRUNCATED);
  sf_avro_walk_destroy(w);

  w = walk_of("\"int\"");
  CHECK(w, 0, 0xfe, 0xff, 0xff, 0xff, 0x0f);         /* INT32_MAX */
  CHECK(w, SF_EPARSE, 0x80, 0x80, 0x80, 0x80, 0x10); /* 2^31 */
  sf_avro_walk_destroy(w);

  w = walk_of("\"boolean\"");
  CHECK(w, 0, 0x01);
  CHECK(w, SF_EPARSE, 0x02);
  sf_avro_walk_destroy(w);

  w = walk_of("\"double\"");
  CHECK(w, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f);
  CHECK(w, SF_ETRUNCATED, 0, 0, 0, 0, 0, 0, 0xf0);
  sf_avro_walk_destroy(w);

  w = walk_of("{\"type\": \"fixed\", \"name\": \"F\", \"size\": 4}");
  CHECK(w, 0, 1, 2, 3, 4);
  CHECK(w, SF_ETRUNCATED, 1, 2, 3);
  sf_avro_walk_destroy(w);
}

static void test_walk_strings(void **state) {
  (void)state;
  sf_avro_walk_t *w = walk_of("\"string\"");
  CHECK(w, 0, 0x06, 'a', 'b', 'c');
  CHECK(w, 0, 0x00); /* "" */
  CHECK(w, SF_ETRUNCATED, 0x06, 'a');
  CHECK(w, SF_ETRUNCATED, 0xfe, 0xff, 0xff, 0xff, 0x0f, 'a'); /* 2 GiB */
  CHECK(w, SF_EPARSE, 0x01);                                  /* length -1 */
  CHECK(w, SF_EPARSE, 0x02, 0x00);                            /* an embedded NUL */
  CHECK(w, SF_EPARSE, 0x04, 0xc0, 0xaf);                      /* overlong UTF-8 */
  sf_avro_walk_destroy(w);

  w = walk_of("\"bytes\"");
  CHECK(w, 0, 0x04, 0x00, 0xff); /* bytes may hold anything */
  CHECK(w, SF_ETRUNCATED, 0x04, 0x00);
  sf_avro_walk_destroy(w);
}

static void test_walk_indexes(void **state) {
  (void)state;
  sf_avro_walk_t *w = walk_of("[\"null\", \"string\"]");
  CHECK(w, 0, 0x00);
  CHECK(w, 0, 0x02, 0x02, 'x');
  CHECK(w, SF_EPARSE, 0x04); /* branch 2 */
  CHECK(w, SF_EPARSE, 0x01); /* branch -1 */
  sf_avro_walk_destroy(w);

  w = walk_of("{\"type\": \"enum\", \"name\": \"E\", \"symbols\": [\"A\", "
              "\"B\"]}");
  CHECK(w, 0, 0x02);
  CHECK(w, SF_EPARSE, 0x04);
  CHECK(w, SF_EPARSE, 0x01);
  sf_avro_walk_destroy(w);
}

static void test_walk_blocks(void **state) {
  (void)state;
  sf_avro_walk_t *w = walk_of("{\"type\": \"array\", \"items\": \"long\"}");
  CHECK(w, 0, 0x00);                                     /* empty */
  CHECK(w, 0, 0x04, 0x02, 0x04, 0x00);                   /* [1, 2] */
  CHECK(w, 0, 0x03, 0x04, 0x02, 0x04, 0x00);             /* block of -2 items, 2 bytes */
  CHECK(w, SF_EPARSE, 0x03, 0x06, 0x02, 0x04, 0x00);     /* size says 3 */
  CHECK(w, SF_ETRUNCATED, 0x03, 0x40, 0x02, 0x04, 0x00); /* size past end */
  CHECK(w, SF_ETRUNCATED, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0x02, 0x00);
  CHECK(w, SF_ETRUNCATED, 0x04, 0x02);         /* second item missing */
  CHECK(w, SF_ETRUNCATED, 0x04, 0x02, 0x04);   /* no end of blocks */
  CHECK(w, SF_EPARSE, 0x01, 0x00, 0x02, 0x00); /* -1 item in 0 bytes */
  /* the item bound counts across blocks */
  static const uint8_t three[] = {0x04, 0x02, 0x04, 0x02, 0x06, 0x00};
  assert_int_equal(sf_avro_walk_check(w, three, sizeof(three), 3), 0);
  assert_int_equal(sf_avro_walk_check(w, three, sizeof(three), 2),
                   SF_ETOOBIG);
  sf_avro_walk_destroy(w);

  w = walk_of("{\"type\": \"map\", \"values\": \"int\"}");
  CHECK(w, 0, 0x02, 0x02, 'k', 0x02, 0x00);
  CHECK(w, SF_EPARSE, 0x02, 0x02, 0x00, 0x02, 0x00); /* NUL in a key */
  CHECK(w, SF_ETRUNCATED, 0x02, 0x02, 'k');
  sf_avro_walk_destroy(w);
}

static void test_walk_records(void **state) {
  (void)state;
  sf_avro_walk_t *w = walk_of(
      "{\"type\": \"record\", \"name\": \"Node\", \"fields\": ["
      "{\"name\": \"v\", \"type\": \"int\"},"
      "{\"name\": \"next\", \"type\": [\"null\", \"Node\"]}]}");
  CHECK(w, 0, 0x02, 0x00);
  CHECK(w, 0, 0x02, 0x02, 0x04, 0x00);
  CHECK(w, SF_ETRUNCATED, 0x02, 0x02, 0x04);
  /* 100 levels of recursion: refused at the depth bound, not overflowing */
  uint8_t deep[202];
  for (int i = 0; i < 100; i++) {
    deep[2 * i] = 0x02;
    deep[2 * i + 1] = 0x02;
  }
  deep[200] = 0x02;
  deep[201] = 0x00;
  assert_int_equal(sf_avro_walk_check(w, deep, sizeof(deep), 100), SF_EPARSE);
  assert_int_equal(sf_avro_walk_check(w, deep + 180, 22, 100), 0);
  sf_avro_walk_destroy(w);
}

static void test_walk_bad_schemas(void **state) {
  (void)state;
  avro_schema_t s = avro_schema_fixed("Big", SF_AVRO_MAX_FIXED + 1);
  assert_non_null(s);
  sf_avro_walk_t *w = NULL;
  assert_int_equal(sf_avro_walk_new(s, &w), SF_ESCHEMA);
  assert_null(w);
  avro_schema_decref(s);
  assert_int_equal(sf_avro_walk_new(NULL, &w), SF_ESCHEMA);
  sf_avro_walk_destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc64),
      cmocka_unit_test(test_canonical_form),
      cmocka_unit_test(test_canonical_form_rejects),
      cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_walk_primitives),
      cmocka_unit_test(test_walk_strings),
      cmocka_unit_test(test_walk_indexes),
      cmocka_unit_test(test_walk_blocks),
      cmocka_unit_test(test_walk_records),
      cmocka_unit_test(test_walk_bad_schemas),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Tests for common/src/avro_resolve.c on small schemas: an added field
 * takes its default (of every kind), a removed one is dropped, promotions,
 * union branches and enum symbols the reader lacks (refused when used, not
 * before), pairs that do not resolve, bad defaults, and the reader's
 * defaults for encoding. The resolution of real envelope versions is tested
 * in test_event.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf/avro_resolve.h"
#include "sf/err.h"

/* One reader schema with its defaults, and a writer schema. */
typedef struct pair {
  avro_schema_t ws, rs;
  sf_avro_reader_t *defs;
  avro_value_iface_t *wi, *ri;
  avro_value_t w, r;
} pair_t;

static avro_schema_t schema_of(const char *json) {
  avro_schema_t s = NULL;
  assert_int_equal(avro_schema_from_json_length(json, strlen(json), &s), 0);
  return s;
}

/* Returns sf_avro_plan_new's code; on 0 *plan and the values are ready. */
static int pair_open(pair_t *p, const char *writer, const char *reader,
                     sf_avro_plan_t **plan) {
  memset(p, 0, sizeof(*p));
  p->ws = schema_of(writer);
  p->rs = schema_of(reader);
  assert_int_equal(sf_avro_reader_new(reader, strlen(reader), &p->defs), 0);
  int rc = sf_avro_plan_new(p->defs, p->ws, p->rs, plan);
  if (rc) {
    assert_null(*plan);
    return rc;
  }
  p->wi = avro_generic_class_from_schema(p->ws);
  p->ri = avro_generic_class_from_schema(p->rs);
  assert_non_null(p->wi);
  assert_non_null(p->ri);
  assert_int_equal(avro_generic_value_new(p->wi, &p->w), 0);
  assert_int_equal(avro_generic_value_new(p->ri, &p->r), 0);
  return 0;
}

static void pair_close(pair_t *p, sf_avro_plan_t *plan) {
  sf_avro_plan_destroy(plan);
  if (p->w.self)
    avro_value_decref(&p->w);
  if (p->r.self)
    avro_value_decref(&p->r);
  if (p->wi)
    avro_value_iface_decref(p->wi);
  if (p->ri)
    avro_value_iface_decref(p->ri);
  sf_avro_reader_destroy(p->defs);
  avro_schema_decref(p->ws);
  avro_schema_decref(p->rs);
}

static void field(avro_value_t *rec, const char *name, avro_value_t *out) {
  assert_int_equal(avro_value_get_by_name(rec, name, out, NULL), 0);
}

#define W_REC                                             \
  "{\"type\": \"record\", \"name\": \"R\", \"fields\": [" \
  "{\"name\": \"a\", \"type\": \"int\"},"                 \
  "{\"name\": \"gone\", \"type\": \"string\"},"           \
  "{\"name\": \"t\", \"type\": \"bytes\"}]}"

#define R_REC                                                                  \
  "{\"type\": \"record\", \"name\": \"R\", \"fields\": ["                      \
  "{\"name\": \"t\", \"type\": \"string\"},"                                   \
  "{\"name\": \"a\", \"type\": \"double\"},"                                   \
  "{\"name\": \"s\", \"type\": \"string\", \"default\": \"pcs\"},"             \
  "{\"name\": \"n\", \"type\": [\"null\", \"int\"], \"default\": null},"       \
  "{\"name\": \"l\", \"type\": {\"type\": \"array\", \"items\": \"long\"}, "   \
  "\"default\": [4, 5]},"                                                      \
  "{\"name\": \"m\", \"type\": {\"type\": \"map\", \"values\": \"boolean\"}, " \
  "\"default\": {\"k\": true}},"                                               \
  "{\"name\": \"e\", \"type\": {\"type\": \"enum\", \"name\": \"E\", "         \
  "\"symbols\": [\"lo\", \"hi\"]}, \"default\": \"hi\"},"                      \
  "{\"name\": \"sub\", \"type\": {\"type\": \"record\", \"name\": \"Sub\", "   \
  "\"fields\": [{\"name\": \"x\", \"type\": \"int\", \"default\": 9}]}, "      \
  "\"default\": {}}]}"

static void test_added_and_removed_fields(void **state) {
  (void)state;
  pair_t p;
  sf_avro_plan_t *plan = NULL;
  assert_int_equal(pair_open(&p, W_REC, R_REC, &plan), 0);
  avro_value_t f, g;
  field(&p.w, "a", &f);
  assert_int_equal(avro_value_set_int(&f, 7), 0);
  field(&p.w, "gone", &f);
  assert_int_equal(avro_value_set_string(&f, "bye"), 0);
  field(&p.w, "t", &f);
  assert_int_equal(avro_value_set_bytes(&f, "txt", 3), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), 0);

  const char *s;
  size_t n;
  double d;
  int32_t i32;
  int64_t i64;
  int b, disc;
  field(&p.r, "t", &f); /* bytes promoted to string */
  assert_int_equal(avro_value_get_string(&f, &s, &n), 0);
  assert_string_equal(s, "txt");
  field(&p.r, "a", &f); /* int promoted to double */
  assert_int_equal(avro_value_get_double(&f, &d), 0);
  assert_true(d == 7.0);
  field(&p.r, "s", &f);
  assert_int_equal(avro_value_get_string(&f, &s, &n), 0);
  assert_string_equal(s, "pcs");
  field(&p.r, "n", &f);
  assert_int_equal(avro_value_get_discriminant(&f, &disc), 0);
  assert_int_equal(disc, 0);
  field(&p.r, "l", &f);
  assert_int_equal(avro_value_get_size(&f, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(avro_value_get_by_index(&f, 1, &g, NULL), 0);
  assert_int_equal(avro_value_get_long(&g, &i64), 0);
  assert_int_equal(i64, 5);
  field(&p.r, "m", &f);
  assert_int_equal(avro_value_get_by_name(&f, "k", &g, NULL), 0);
  assert_int_equal(avro_value_get_boolean(&g, &b), 0);
  assert_true(b);
  field(&p.r, "e", &f);
  assert_int_equal(avro_value_get_enum(&f, &b), 0);
  assert_int_equal(b, 1);
  field(&p.r, "sub", &f); /* a record default leaving x out takes x's own */
  field(&f, "x", &g);
  assert_int_equal(avro_value_get_int(&g, &i32), 0);
  assert_int_equal(i32, 9);

  /* "pcs" (4) + "hi" (3): what defaults may add to a decoded datum */
  assert_int_equal(sf_avro_reader_default_text_bytes(p.defs), 7);

  /* bytes with a NUL cannot become a C string */
  assert_int_equal(avro_value_reset(&p.r), 0);
  field(&p.w, "t", &f);
  assert_int_equal(avro_value_set_bytes(&f, "a\0b", 3), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), SF_EPARSE);
  assert_int_equal(avro_value_reset(&p.r), 0);
  assert_int_equal(avro_value_set_bytes(&f, "\xc0\xaf", 2), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), SF_EPARSE);
  pair_close(&p, plan);
}

static void test_unions_and_enums(void **state) {
  (void)state;
  pair_t p;
  sf_avro_plan_t *plan = NULL;
  /* a writer branch the reader lacks: the plan compiles, the datum fails */
  assert_int_equal(pair_open(&p, "[\"null\", \"string\", \"long\"]",
                             "[\"null\", \"string\"]", &plan),
                   0);
  avro_value_t b, rb;
  int disc;
  const char *s;
  size_t n;
  assert_int_equal(avro_value_set_branch(&p.w, 1, &b), 0);
  assert_int_equal(avro_value_set_string(&b, "x"), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), 0);
  assert_int_equal(avro_value_get_discriminant(&p.r, &disc), 0);
  assert_int_equal(disc, 1);
  assert_int_equal(avro_value_reset(&p.r), 0);
  assert_int_equal(avro_value_set_branch(&p.w, 2, &b), 0);
  assert_int_equal(avro_value_set_long(&b, 3), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), SF_ESCHEMA);
  pair_close(&p, plan);

  /* a plain writer read as a reader union takes the branch it matches */
  assert_int_equal(pair_open(&p, "\"string\"", "[\"null\", \"long\", \"bytes\"]",
                             &plan),
                   0);
  assert_int_equal(avro_value_set_string(&p.w, "ab"), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), 0);
  assert_int_equal(avro_value_get_discriminant(&p.r, &disc), 0);
  assert_int_equal(disc, 2);
  assert_int_equal(avro_value_get_current_branch(&p.r, &rb), 0);
  const void *buf;
  assert_int_equal(avro_value_get_bytes(&rb, &buf, &n), 0);
  assert_int_equal(n, 2);
  pair_close(&p, plan);

  /* an enum symbol the reader lacks */
  assert_int_equal(
      pair_open(&p,
                "{\"type\": \"enum\", \"name\": \"E\", \"symbols\": [\"a\", "
                "\"b\", \"c\"]}",
                "{\"type\": \"enum\", \"name\": \"E\", \"symbols\": [\"c\", "
                "\"a\"]}",
                &plan),
      0);
  assert_int_equal(avro_value_set_enum(&p.w, 0), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), 0);
  assert_int_equal(avro_value_get_enum(&p.r, &disc), 0);
  assert_int_equal(disc, 1); /* by name, not by index */
  assert_int_equal(avro_value_set_enum(&p.w, 1), 0);
  assert_int_equal(sf_avro_plan_exec(plan, &p.w, &p.r), SF_ESCHEMA);
  (void)s;
  pair_close(&p, plan);
}

static void expect_no_plan(const char *writer, const char *reader) {
  pair_t p;
  sf_avro_plan_t *plan = NULL;
  assert_int_equal(pair_open(&p, writer, reader, &plan), SF_ESCHEMA);
  pair_close(&p, NULL);
}

#define REC1(f) "{\"type\": \"record\", \"name\": \"R\", \"fields\": [" f "]}"

static void test_does_not_resolve(void **state) {
  (void)state;
  expect_no_plan("\"long\"", "\"int\""); /* no demotion */
  expect_no_plan("\"double\"", "\"float\"");
  expect_no_plan("\"string\"", "\"long\"");
  expect_no_plan("\"int\"", "[\"null\", \"string\"]");
  expect_no_plan("{\"type\": \"fixed\", \"name\": \"F\", \"size\": 4}",
                 "{\"type\": \"fixed\", \"name\": \"F\", \"size\": 8}");
  expect_no_plan(REC1("{\"name\": \"a\", \"type\": \"int\"}"),
                 "{\"type\": \"record\", \"name\": \"Other\", \"fields\": "
                 "[{\"name\": \"a\", \"type\": \"int\"}]}");
  /* a new reader field without a default, or with one that does not fit */
  expect_no_plan(REC1("{\"name\": \"a\", \"type\": \"int\"}"),
                 REC1("{\"name\": \"a\", \"type\": \"int\"},"
                      "{\"name\": \"b\", \"type\": \"int\"}"));
  expect_no_plan(REC1("{\"name\": \"a\", \"type\": \"int\"}"),
                 REC1("{\"name\": \"a\", \"type\": \"int\"},"
                      "{\"name\": \"b\", \"type\": \"int\", \"default\": "
                      "\"x\"}"));
  expect_no_plan(REC1("{\"name\": \"a\", \"type\": \"int\"}"),
                 REC1("{\"name\": \"a\", \"type\": \"int\"},"
                      "{\"name\": \"b\", \"type\": \"int\", \"default\": "
                      "4294967296}"));
  expect_no_plan(REC1("{\"name\": \"a\", \"type\": \"int\"}"),
                 REC1("{\"name\": \"a\", \"type\": \"int\"},"
                      "{\"name\": \"b\", \"type\": [\"null\", \"int\"], "
                      "\"default\": 1}")); /* of the first branch */
  expect_no_plan(REC1("{\"name\": \"a\", \"type\": \"int\"}"),
                 REC1("{\"name\": \"a\", \"type\": \"int\"},"
                      "{\"name\": \"b\", \"type\": \"bytes\", \"default\": "
                      "\"\\u00e9\"}")); /* bytes defaults are ASCII here */
}

static void test_reader_defaults(void **state) {
  (void)state;
  sf_avro_reader_t *d = NULL;
  assert_int_equal(sf_avro_reader_new("{", 1, &d), SF_ESCHEMA);
  assert_null(d);
  const char *twice =
      "[" REC1("") ", {\"type\": \"record\", \"name\": \"x.R\", \"fields\": "
                   "[]}]";
  assert_int_equal(sf_avro_reader_new(twice, strlen(twice), &d), SF_ESCHEMA);
  assert_null(d);
  const char *nofields = "{\"type\": \"record\", \"name\": \"R\"}";
  assert_int_equal(sf_avro_reader_new(nofields, strlen(nofields), &d),
                   SF_ESCHEMA);

  /* fill_defaults sets the fields that have one and leaves the others */
  avro_schema_t s = schema_of(R_REC);
  assert_int_equal(sf_avro_reader_new(R_REC, strlen(R_REC), &d), 0);
  avro_value_iface_t *i = avro_generic_class_from_schema(s);
  avro_value_t v, f;
  assert_int_equal(avro_generic_value_new(i, &v), 0);
  field(&v, "a", &f);
  assert_int_equal(avro_value_set_double(&f, 2.5), 0);
  assert_int_equal(sf_avro_reader_fill_defaults(d, &v), 0);
  const char *str;
  size_t n;
  double x;
  field(&v, "s", &f);
  assert_int_equal(avro_value_get_string(&f, &str, &n), 0);
  assert_string_equal(str, "pcs");
  field(&v, "a", &f);
  assert_int_equal(avro_value_get_double(&f, &x), 0);
  assert_true(x == 2.5);
  avro_value_decref(&v);
  avro_value_iface_decref(i);
  avro_schema_decref(s);
  sf_avro_reader_destroy(d);
  sf_avro_reader_destroy(NULL);
  sf_avro_plan_destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_added_and_removed_fields),
      cmocka_unit_test(test_unions_and_enums),
      cmocka_unit_test(test_does_not_resolve),
      cmocka_unit_test(test_reader_defaults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

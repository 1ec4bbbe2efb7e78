/* Tests for common/src/event.c: the CRC-64-AVRO fingerprint, round trips of
 * every event type, encode-time validation, and above all the decoder's
 * behaviour on hostile input (truncation at every length, crafted lengths
 * and counts, bad indexes, random byte flips). Crafted inputs are written by
 * hand with a tiny Avro writer below, as a third-party producer would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sf/err.h"
#include "sf/event.h"

/* The fingerprint of schemas/envelope.avsc, computed independently with
 *   python3 -c "import json, fastavro.schema as s; \
 *     c = s.to_parsing_canonical_form(json.load(open('schemas/envelope.avsc'))); \
 *     print(s.fingerprint(c, 'CRC-64-AVRO'))"
 * which prints the little-endian wire bytes efea7ea6760da80c (fastavro
 * 1.13.1). Changing the schema's canonical form changes it: that is a new
 * schema version and must be deliberate (docs/events.md). */
#define ENVELOPE_FP UINT64_C(0x0ca80d76a67eeaef)
static const uint8_t envelope_fp_wire[8] = {0xef, 0xea, 0x7e, 0xa6,
                                            0x76, 0x0d, 0xa8, 0x0c};

#define ID_EVENT "0190f5c4-7b1e-7c3a-8a9b-0123456789ab"
#define ID_CMD "0190f5c4-7b1e-7c3a-8a9b-0123456789ac"
#define ID_STORE "0190f5c4-7b1e-7c3a-8a9b-000000000001"
#define ID_STORE2 "0190f5c4-7b1e-7c3a-8a9b-000000000002"
#define ID_PROD "0190f5c4-7b1e-7c3a-8a9b-0000000000a1"
#define ID_PROD2 "0190f5c4-7b1e-7c3a-8a9b-0000000000a2"
#define ID_USER "0190f5c4-7b1e-7c3a-8a9b-0000000000f1"
#define ID_XFER "0190f5c4-7b1e-7c3a-8a9b-0000000000e1"
#define ID_ORDER "0190f5c4-7b1e-7c3a-8a9b-0000000000d1"

static const sf_order_line_t two_lines[2] = {{ID_PROD, 3, 10, 3, 4},
                                              {ID_PROD2, 1, 1, 1, 1}};

/* A complete event of type t, every optional field set when full. */
static void sample(sf_event_t *e, sf_event_type_t t, bool full) {
  sf_event_init(e);
  strcpy(e->event_id, ID_EVENT);
  strcpy(e->command_id, ID_CMD);
  e->type = t;
  e->occurred_at_us = INT64_C(1795705200123456);
  e->stream_version = 7;
  if (full) {
    strcpy(e->actor, ID_USER);
    e->idempotency_key = "key-1";
    e->correlation_id = "req-42";
  }
  switch (t) {
  case SF_EV_PRODUCT_CREATED:
  case SF_EV_PRODUCT_UPDATED:
  case SF_EV_PRODUCT_DISCONTINUED:
    strcpy(e->product_id, ID_PROD);
    if (t == SF_EV_PRODUCT_CREATED || full) {
      e->product.sku = t == SF_EV_PRODUCT_CREATED ? "SKU-1" : NULL;
      e->product.name = "Widget \xc3\xa9"; /* UTF-8 survives */
      e->product.price = "19.99";
      e->product.has_reorder_level = full;
      e->product.reorder_level = full ? 5 : 0;
      e->product.category = full ? "tools" : NULL;
    }
    if (t == SF_EV_PRODUCT_DISCONTINUED)
      memset(&e->product, 0, sizeof(e->product));
    break;
  case SF_EV_STORE_OPENED:
  case SF_EV_STORE_UPDATED:
  case SF_EV_STORE_CLOSED:
    strcpy(e->store_id, ID_STORE);
    if (t == SF_EV_STORE_OPENED || (t == SF_EV_STORE_UPDATED && full)) {
      e->store.name = "Main street";
      e->store.location = "Lyon";
      e->store.manager_id = full ? ID_USER : NULL;
    }
    break;
  case SF_EV_STOCK_MOVED:
  case SF_EV_TRANSFER_OUT:
  case SF_EV_TRANSFER_IN:
    strcpy(e->store_id, ID_STORE);
    strcpy(e->product_id, ID_PROD);
    e->stock.movement = t == SF_EV_STOCK_MOVED ? SF_MOVE_ADJUSTMENT : 0;
    e->stock.quantity = t == SF_EV_STOCK_MOVED ? -4 : 4;
    e->stock.delta = t == SF_EV_TRANSFER_IN ? 4 : -4;
    e->stock.on_hand = 96;
    e->stock.reserved = 2;
    if (t != SF_EV_STOCK_MOVED) {
      strcpy(e->stock.transfer_id, ID_XFER);
      strcpy(e->stock.counterpart_store_id, ID_STORE2);
    }
    if (full) {
      e->stock.reason = t == SF_EV_STOCK_MOVED ? "damaged" : NULL;
      e->stock.reference = "REF-9";
    }
    break;
  default:
    strcpy(e->store_id, ID_STORE);
    strcpy(e->order.order_id, ID_ORDER);
    e->order.lines = two_lines;
    e->order.n_lines = 2;
    e->order.reference = full ? "PO-77" : NULL;
    break;
  }
}

static void assert_opt_str(const char *a, const char *b) {
  if (!a || !b)
    assert_true(a == b);
  else
    assert_string_equal(a, b);
}

static void assert_same(const sf_event_t *a, const sf_event_t *b) {
  assert_string_equal(a->event_id, b->event_id);
  assert_int_equal(a->type, b->type);
  assert_true(a->occurred_at_us == b->occurred_at_us);
  assert_string_equal(a->store_id, b->store_id);
  assert_string_equal(a->product_id, b->product_id);
  assert_true(a->stream_version == b->stream_version);
  assert_string_equal(a->actor, b->actor);
  assert_string_equal(a->command_id, b->command_id);
  assert_opt_str(a->idempotency_key, b->idempotency_key);
  assert_opt_str(a->correlation_id, b->correlation_id);
  switch (a->type) {
  case SF_EV_PRODUCT_CREATED:
  case SF_EV_PRODUCT_UPDATED:
    assert_opt_str(a->product.sku, b->product.sku);
    assert_opt_str(a->product.name, b->product.name);
    assert_opt_str(a->product.category, b->product.category);
    assert_opt_str(a->product.price, b->product.price);
    assert_true(a->product.reorder_level == b->product.reorder_level);
    /* ProductCreated always carries a reorder level (0 when not given) */
    assert_int_equal(a->product.has_reorder_level ||
                         a->type == SF_EV_PRODUCT_CREATED,
                     b->product.has_reorder_level);
    break;
  case SF_EV_STORE_OPENED:
  case SF_EV_STORE_UPDATED:
    assert_opt_str(a->store.name, b->store.name);
    assert_opt_str(a->store.location, b->store.location);
    assert_opt_str(a->store.manager_id, b->store.manager_id);
    break;
  case SF_EV_STOCK_MOVED:
  case SF_EV_TRANSFER_OUT:
  case SF_EV_TRANSFER_IN:
    assert_int_equal(a->stock.movement, b->stock.movement);
    assert_true(a->stock.quantity == b->stock.quantity);
    assert_true(a->stock.delta == b->stock.delta);
    assert_true(a->stock.on_hand == b->stock.on_hand);
    assert_true(a->stock.reserved == b->stock.reserved);
    assert_opt_str(a->stock.reason, b->stock.reason);
    assert_opt_str(a->stock.reference, b->stock.reference);
    assert_string_equal(a->stock.transfer_id, b->stock.transfer_id);
    assert_string_equal(a->stock.counterpart_store_id,
                        b->stock.counterpart_store_id);
    break;
  case SF_EV_ORDER_PLACED:
  case SF_EV_ORDER_FULFILLED:
  case SF_EV_ORDER_CANCELLED:
    assert_string_equal(a->order.order_id, b->order.order_id);
    assert_int_equal(a->order.n_lines, b->order.n_lines);
    for (size_t i = 0; i < a->order.n_lines; i++) {
      assert_string_equal(a->order.lines[i].product_id,
                          b->order.lines[i].product_id);
      assert_true(a->order.lines[i].quantity == b->order.lines[i].quantity);
    }
    assert_opt_str(a->order.reference, b->order.reference);
    break;
  default:
    break;
  }
}

static int setup(void **state) {
  sf_event_codec_t *c = NULL;
  if (sf_event_codec_new(&c) != 0)
    return -1;
  *state = c;
  return 0;
}

static int teardown(void **state) {
  sf_event_codec_destroy(*state);
  return 0;
}

/* ---- a minimal Avro writer for crafted input ------------------------- */

typedef struct wbuf {
  uint8_t b[65536];
  size_t n;
} wbuf_t;

static void w_raw(wbuf_t *w, const void *p, size_t n) {
  assert_true(w->n + n <= sizeof(w->b));
  memcpy(w->b + w->n, p, n);
  w->n += n;
}

static void w_long(wbuf_t *w, int64_t x) {
  uint64_t u = ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
  do {
    uint8_t byte = (uint8_t)(u & 0x7f);
    u >>= 7;
    if (u)
      byte |= 0x80;
    w_raw(w, &byte, 1);
  } while (u);
}

static void w_str(wbuf_t *w, const char *s) {
  w_long(w, (int64_t)strlen(s));
  w_raw(w, s, strlen(s));
}

static void w_header(wbuf_t *w) {
  static const uint8_t magic[2] = {0xC3, 0x01};
  w->n = 0;
  w_raw(w, magic, 2);
  w_raw(w, envelope_fp_wire, 8);
}

/* Header and envelope of an order event up to the payload branch index. */
static void w_order_prefix(wbuf_t *w, const char *type, int branch) {
  w_header(w);
  w_str(w, ID_EVENT);
  w_str(w, type);
  w_long(w, 1000);
  w_long(w, 1);
  w_str(w, ID_STORE); /* store_id */
  w_long(w, 0);       /* product_id null */
  w_long(w, 1);       /* stream_version */
  w_long(w, 0);       /* actor null */
  w_str(w, ID_CMD);
  w_long(w, 0); /* idempotency_key null */
  w_long(w, 0); /* correlation_id null */
  w_long(w, 0); /* request_hash null */
  w_long(w, branch);
  w_str(w, ID_ORDER);
}

/* One order line: product, quantity and the after-values (on_hand 5,
 * reserved 2, version 1: one byte each). */
static void w_line(wbuf_t *w, const char *product, int64_t quantity) {
  w_str(w, product);
  w_long(w, quantity);
  w_long(w, 5);
  w_long(w, 2);
  w_long(w, 1);
}

static int decode(sf_event_codec_t *c, const wbuf_t *w) {
  sf_event_t e;
  int rc = sf_event_decode(c, w->b, w->n, &e);
  sf_event_clear(&e);
  return rc;
}

/* ---- tests ------------------------------------------------------------ */

static void test_names(void **state) {
  (void)state;
  assert_string_equal(sf_event_type_name(SF_EV_PRODUCT_CREATED),
                      "ProductCreated");
  assert_string_equal(sf_event_type_name(SF_EV_ORDER_CANCELLED),
                      "OrderCancelled");
  assert_null(sf_event_type_name(SF_EV__COUNT));
  assert_null(sf_event_type_name((sf_event_type_t)-1));
  assert_string_equal(sf_movement_name(SF_MOVE_RETURN), "return");
  assert_null(sf_movement_name(SF_MOVE__COUNT));
  sf_movement_t m = SF_MOVE_RECEIPT;
  assert_int_equal(sf_movement_parse("count", &m), 0);
  assert_int_equal(m, SF_MOVE_COUNT);
  assert_int_equal(sf_movement_parse("Count", &m), SF_EINVAL);
  assert_int_equal(sf_movement_parse("", &m), SF_EINVAL);
  assert_int_equal(sf_movement_parse(NULL, &m), SF_EINVAL);
}

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

static void test_fingerprint(void **state) {
  sf_event_codec_t *c = *state;
  assert_true(sf_event_codec_fingerprint(c) == ENVELOPE_FP);
  sf_event_t e;
  sample(&e, SF_EV_STORE_CLOSED, false);
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(sf_event_encode(c, &e, &buf, &len), 0);
  assert_true(len > 10);
  assert_int_equal(buf[0], 0xC3);
  assert_int_equal(buf[1], 0x01);
  assert_memory_equal(buf + 2, envelope_fp_wire, 8);
  free(buf);
}

static void round_trip(sf_event_codec_t *c, sf_event_type_t t, bool full) {
  sf_event_t in, out;
  sample(&in, t, full);
  uint8_t *buf = NULL, *buf2 = NULL;
  size_t len = 0, len2 = 0;
  assert_int_equal(sf_event_encode(c, &in, &buf, &len), 0);
  assert_int_equal(sf_event_decode(c, buf, len, &out), 0);
  assert_same(&in, &out);
  /* re-encoding the decoded event gives the same bytes */
  assert_int_equal(sf_event_encode(c, &out, &buf2, &len2), 0);
  assert_int_equal(len, len2);
  assert_memory_equal(buf, buf2, len);
  sf_event_clear(&out);
  assert_null(out.mem_);
  free(buf);
  free(buf2);
}

static void test_round_trip_all(void **state) {
  for (int t = 0; t < SF_EV__COUNT; t++) {
    round_trip(*state, (sf_event_type_t)t, true);
    round_trip(*state, (sf_event_type_t)t, false);
  }
}

static void test_round_trip_movements(void **state) {
  sf_event_codec_t *c = *state;
  for (int m = 0; m < SF_MOVE__COUNT; m++) {
    sf_event_t in, out;
    sample(&in, SF_EV_STOCK_MOVED, true);
    in.stock.movement = (sf_movement_t)m;
    in.stock.quantity = m == SF_MOVE_COUNT ? 0 : 5;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sf_event_encode(c, &in, &buf, &len), 0);
    assert_int_equal(sf_event_decode(c, buf, len, &out), 0);
    assert_same(&in, &out);
    sf_event_clear(&out);
    free(buf);
  }
}

static void test_absent_optionals(void **state) {
  sf_event_codec_t *c = *state;
  sf_event_t in, out;
  sample(&in, SF_EV_PRODUCT_UPDATED, false);
  in.product.name = NULL;
  in.product.price = NULL;

  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(sf_event_encode(c, &in, &buf, &len), 0);
  assert_int_equal(sf_event_decode(c, buf, len, &out), 0);
  assert_null(out.product.name);
  assert_null(out.product.category);
  assert_null(out.product.price);
  assert_null(out.product.sku);
  assert_false(out.product.has_reorder_level);
  assert_null(out.idempotency_key);
  assert_null(out.correlation_id);
  assert_string_equal(out.actor, "");
  assert_string_equal(out.store_id, "");
  sf_event_clear(&out);
  free(buf);
}

/* NULL is absent, "" is a present empty value: both survive a round trip,
 * except where the contract forbids "" (short texts: 1 to 255 bytes). */
static void test_empty_strings(void **state) {
  sf_event_codec_t *c = *state;
  sf_event_t in, out;
  sample(&in, SF_EV_STOCK_MOVED, true);
  in.stock.reason = "";
  in.stock.reference = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(sf_event_encode(c, &in, &buf, &len), 0);
  assert_int_equal(sf_event_decode(c, buf, len, &out), 0);
  assert_non_null(out.stock.reason);
  assert_string_equal(out.stock.reason, "");
  assert_null(out.stock.reference);
  sf_event_clear(&out);
  free(buf);
  in.idempotency_key = "";
  assert_int_equal(sf_event_encode(c, &in, &buf, &len), SF_EINVAL);
  in.idempotency_key = NULL;
  in.correlation_id = "";
  assert_int_equal(sf_event_encode(c, &in, &buf, &len), SF_EINVAL);
}

static void test_large_order(void **state) {
  sf_event_codec_t *c = *state;
  sf_order_line_t *lines = calloc(SF_EVENT_MAX_LINES + 1, sizeof(*lines));
  assert_non_null(lines);
  for (size_t i = 0; i <= SF_EVENT_MAX_LINES; i++) {
    strcpy(lines[i].product_id, ID_PROD);
    lines[i].quantity = (int64_t)i + 1;
  }
  sf_event_t in, out;
  sample(&in, SF_EV_ORDER_PLACED, true);
  in.order.lines = lines;
  in.order.n_lines = SF_EVENT_MAX_LINES;
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(sf_event_encode(c, &in, &buf, &len), 0);
  assert_int_equal(sf_event_decode(c, buf, len, &out), 0);
  assert_same(&in, &out);
  sf_event_clear(&out);
  free(buf);
  in.order.n_lines = SF_EVENT_MAX_LINES + 1;
  assert_int_equal(sf_event_encode(c, &in, &buf, &len), SF_EINVAL);
  assert_null(buf);
  free(lines);
}

static void expect_einval(sf_event_codec_t *c, const sf_event_t *e) {
  uint8_t *buf = (uint8_t *)"x";
  size_t len = 1;
  assert_int_equal(sf_event_encode(c, e, &buf, &len), SF_EINVAL);
  assert_null(buf);
  assert_int_equal(len, 0);
}

static void test_encode_rejects(void **state) {
  sf_event_codec_t *c = *state;
  sf_event_t e;
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  strcpy(e.event_id, "not-a-uuid");
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.command_id[0] = '\0';
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.type = SF_EV__COUNT;
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.product.sku = "";
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.product.name = NULL;
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.product.price = "19.999999";
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.product.reorder_level = -1;
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.product_id[0] = '\0';
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  strcpy(e.actor, "bob");
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.idempotency_key = "tab\there";
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_UPDATED, true);
  e.product.price = "-1";
  expect_einval(c, &e);
  sample(&e, SF_EV_STORE_OPENED, true);
  e.store.location = "";
  expect_einval(c, &e);
  sample(&e, SF_EV_STORE_UPDATED, true);
  e.store.name = "";
  expect_einval(c, &e);
  sample(&e, SF_EV_STOCK_MOVED, true);
  e.stock.on_hand = -1;
  expect_einval(c, &e);
  sample(&e, SF_EV_STOCK_MOVED, true);
  e.stock.movement = SF_MOVE_SALE;
  e.stock.quantity = 0;
  expect_einval(c, &e);
  sample(&e, SF_EV_STOCK_MOVED, true);
  e.stock.movement = SF_MOVE__COUNT;
  expect_einval(c, &e);
  sample(&e, SF_EV_STOCK_MOVED, true);
  e.store_id[0] = '\0';
  expect_einval(c, &e);
  sample(&e, SF_EV_TRANSFER_OUT, true);
  strcpy(e.stock.counterpart_store_id, ID_STORE);
  expect_einval(c, &e);
  sample(&e, SF_EV_TRANSFER_IN, true);
  e.stock.transfer_id[0] = '\0';
  expect_einval(c, &e);
  sample(&e, SF_EV_ORDER_PLACED, true);
  e.order.n_lines = 0;
  expect_einval(c, &e);
  sample(&e, SF_EV_ORDER_FULFILLED, true);
  e.order.lines = NULL;
  expect_einval(c, &e);
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.product.name = "caf\xe9"; /* Latin-1, not UTF-8 */
  expect_einval(c, &e);
  sample(&e, SF_EV_STOCK_MOVED, true);
  e.stock.reference = "\xc0\xaf"; /* overlong '/' */
  expect_einval(c, &e);
  static const sf_order_line_t bad_qty[1] = {{ID_PROD, 0, 0, 0, 1}};
  sample(&e, SF_EV_ORDER_CANCELLED, true);
  e.order.lines = bad_qty;
  e.order.n_lines = 1;
  expect_einval(c, &e);
}

static void test_encode_too_big(void **state) {
  sf_event_codec_t *c = *state;
  char *big = malloc(SF_EVENT_MAX_BYTES);
  assert_non_null(big);
  memset(big, 'n', SF_EVENT_MAX_BYTES - 1);
  big[SF_EVENT_MAX_BYTES - 1] = '\0';
  sf_event_t e;
  sample(&e, SF_EV_PRODUCT_CREATED, true);
  e.product.name = big;
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(sf_event_encode(c, &e, &buf, &len), SF_ETOOBIG);
  assert_null(buf);
  free(big);
}

/* Every strict prefix of a valid event fails cleanly as truncated. */
static void test_truncated_every_length(void **state) {
  sf_event_codec_t *c = *state;
  for (int t = 0; t < SF_EV__COUNT; t++) {
    sf_event_t e;
    sample(&e, (sf_event_type_t)t, true);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sf_event_encode(c, &e, &buf, &len), 0);
    for (size_t n = 0; n < len; n++) {
      /* a private copy so ASan sees any read past n */
      uint8_t *copy = malloc(n ? n : 1);
      assert_non_null(copy);
      memcpy(copy, buf, n);
      sf_event_t out;
      int rc = sf_event_decode(c, copy, n, &out);
      assert_int_equal(rc, SF_ETRUNCATED);
      assert_null(out.mem_);
      sf_event_clear(&out);
      free(copy);
    }
    free(buf);
  }
}

static void test_bad_header(void **state) {
  sf_event_codec_t *c = *state;
  sf_event_t e;
  uint8_t *buf = NULL;
  size_t len = 0;
  sample(&e, SF_EV_STORE_CLOSED, false);
  assert_int_equal(sf_event_encode(c, &e, &buf, &len), 0);
  buf[0] = 0xC4;
  assert_int_equal(sf_event_decode(c, buf, len, &e), SF_EPARSE);
  assert_int_equal(sf_event_decode(c, buf, 1, &e), SF_EPARSE);
  buf[0] = 0xC3;
  buf[1] = 0x02;
  assert_int_equal(sf_event_decode(c, buf, len, &e), SF_EPARSE);
  assert_int_equal(sf_event_decode(c, buf, 2, &e), SF_EPARSE);
  buf[1] = 0x01;
  buf[5] ^= 0x40; /* unknown fingerprint */
  assert_int_equal(sf_event_decode(c, buf, len, &e), SF_ESCHEMA);
  buf[5] ^= 0x40;
  assert_int_equal(sf_event_decode(c, buf, len, &e), 0);
  sf_event_clear(&e);
  /* over the size limit: rejected before anything is read */
  assert_int_equal(sf_event_decode(c, buf, SF_EVENT_MAX_BYTES + 1, &e),
                   SF_ETOOBIG);
  free(buf);
}

static void test_trailing_garbage(void **state) {
  sf_event_codec_t *c = *state;
  sf_event_t e;
  uint8_t *buf = NULL;
  size_t len = 0;
  sample(&e, SF_EV_STOCK_MOVED, true);
  assert_int_equal(sf_event_encode(c, &e, &buf, &len), 0);
  uint8_t *longer = malloc(len + 1);
  assert_non_null(longer);
  memcpy(longer, buf, len);
  longer[len] = 0;
  assert_int_equal(sf_event_decode(c, longer, len + 1, &e), SF_EPARSE);
  sf_event_clear(&e);
  free(longer);
  free(buf);
}

static void test_crafted_valid(void **state) {
  /* The hand writer itself produces decodable events, including the
   * negative block count form of arrays that other writers may use. */
  sf_event_codec_t *c = *state;
  wbuf_t w;
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, 1);
  w_line(&w, ID_PROD, 2);
  w_long(&w, 0);
  w_long(&w, 0);
  assert_int_equal(decode(c, &w), 0);

  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, -2); /* two items, then their byte size */
  w_long(&w, 2 * (1 + 36 + 1 + 3));
  w_line(&w, ID_PROD, 2);
  w_line(&w, ID_PROD2, 3);
  w_long(&w, 0);
  w_long(&w, 1);
  w_str(&w, "ref");
  sf_event_t e;
  assert_int_equal(sf_event_decode(c, w.b, w.n, &e), 0);
  assert_int_equal(e.order.n_lines, 2);
  assert_string_equal(e.order.lines[1].product_id, ID_PROD2);
  assert_true(e.order.lines[1].quantity == 3);
  assert_string_equal(e.order.reference, "ref");
  sf_event_clear(&e);

  /* the same with a wrong block byte size */
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, -2);
  w_long(&w, 2 * (1 + 36 + 1 + 3) - 1);
  w_line(&w, ID_PROD, 2);
  w_line(&w, ID_PROD2, 3);
  w_long(&w, 0);
  w_long(&w, 0);
  assert_int_equal(decode(c, &w), SF_EPARSE);
}

static void test_crafted_huge_lengths(void **state) {
  sf_event_codec_t *c = *state;
  wbuf_t w;
  /* event_id claims 2^40 bytes: must not be allocated */
  w_header(&w);
  w_long(&w, INT64_C(1) << 40);
  w_str(&w, "x");
  assert_int_equal(decode(c, &w), SF_ETRUNCATED);
  w_header(&w);
  w_long(&w, INT64_MAX);
  assert_int_equal(decode(c, &w), SF_ETRUNCATED);
  /* negative length */
  w_header(&w);
  w_long(&w, -5);
  w_raw(&w, "0123456789", 10);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  /* a varint of 11 bytes, and one whose 10th byte overflows 64 bits */
  w_header(&w);
  w_raw(&w, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x01", 11);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  w_header(&w);
  w_raw(&w, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  /* text that is not strict UTF-8, in the idempotency key */
  static const char *const bad_utf8[] = {
      "\xff", "\xc3", "\xc0\x80", "\xe0\x80\xaf", "\xed\xa0\x80",
      "\xf4\x90\x80\x80", "a\x80" "b"};
  for (size_t i = 0; i <= sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
    /* the last round uses valid 2-, 3- and 4-byte sequences */
    const char *key = i < sizeof(bad_utf8) / sizeof(bad_utf8[0])
                          ? bad_utf8[i]
                          : "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    w_header(&w);
    w_str(&w, ID_EVENT);
    w_str(&w, "StoreClosed");
    w_long(&w, 1000);
    w_long(&w, 1);
    w_str(&w, ID_STORE);
    w_long(&w, 0);
    w_long(&w, 1);
    w_long(&w, 0);
    w_str(&w, ID_CMD);
    w_long(&w, 1);
    w_str(&w, key);
    w_long(&w, 0);
    w_long(&w, 0); /* request_hash null */
    w_long(&w, SF_EV_STORE_CLOSED);
    w_str(&w, ID_STORE);
    assert_int_equal(decode(c, &w),
                     i < sizeof(bad_utf8) / sizeof(bad_utf8[0]) ? SF_EPARSE
                                                                 : 0);
  }
  /* a string with an embedded NUL */
  w_header(&w);
  w_long(&w, 3);
  w_raw(&w, "a\0b", 3);
  assert_int_equal(decode(c, &w), SF_EPARSE);
}

static void test_crafted_huge_counts(void **state) {
  sf_event_codec_t *c = *state;
  wbuf_t w;
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, INT64_C(1) << 50); /* far more items than bytes */
  w_line(&w, ID_PROD, 1);
  assert_int_equal(decode(c, &w), SF_ETRUNCATED);
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, INT64_MIN); /* -count overflows */
  assert_int_equal(decode(c, &w), SF_EPARSE);
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, -1);
  w_long(&w, INT64_C(1) << 40); /* block byte size beyond the input */
  assert_int_equal(decode(c, &w), SF_ETRUNCATED);
  /* more lines than SF_EVENT_MAX_LINES, in blocks, with all bytes present */
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  for (int b = 0; b < 2; b++) {
    w_long(&w, SF_EVENT_MAX_LINES / 2 + 1);
    for (int i = 0; i < SF_EVENT_MAX_LINES / 2 + 1; i++) {
      w_long(&w, 1); /* a 1-byte product id: the walk stops before ids are checked */
      w_raw(&w, "p", 1);
      w_long(&w, 1);
      w_long(&w, 1);
      w_long(&w, 0);
      w_long(&w, 1);
    }
  }
  w_long(&w, 0);
  w_long(&w, 0);
  assert_int_equal(decode(c, &w), SF_ETOOBIG);
}

static void test_crafted_bad_indexes(void **state) {
  sf_event_codec_t *c = *state;
  wbuf_t w;
  /* payload branch out of range, both ways */
  w_order_prefix(&w, "OrderPlaced", SF_EV__COUNT);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  w_order_prefix(&w, "OrderPlaced", -1);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  /* a nullable field with branch 2 */
  w_header(&w);
  w_str(&w, ID_EVENT);
  w_str(&w, "StoreClosed");
  w_long(&w, 1000);
  w_long(&w, 2);
  w_str(&w, ID_STORE);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  /* movement enum index 5 */
  w_header(&w);
  w_str(&w, ID_EVENT);
  w_str(&w, "StockMoved");
  w_long(&w, 1000);
  w_long(&w, 1);
  w_str(&w, ID_STORE);
  w_long(&w, 1);
  w_str(&w, ID_PROD);
  w_long(&w, 1);
  w_long(&w, 0);
  w_str(&w, ID_CMD);
  w_long(&w, 0);
  w_long(&w, 0);
  w_long(&w, 0); /* request_hash null */
  w_long(&w, SF_EV_STOCK_MOVED);
  size_t at = w.n;
  w_long(&w, SF_MOVE__COUNT);
  for (int i = 0; i < 4; i++)
    w_long(&w, 1);
  w_long(&w, 0);
  w_long(&w, 0);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  w.b[at] = 2; /* zig-zag 1: sale; now valid */
  assert_int_equal(decode(c, &w), 0);
}

static void test_crafted_semantics(void **state) {
  sf_event_codec_t *c = *state;
  wbuf_t w;
  /* event_type disagrees with the payload branch */
  w_order_prefix(&w, "OrderCancelled", SF_EV_ORDER_PLACED);
  w_long(&w, 1);
  w_line(&w, ID_PROD, 2);
  w_long(&w, 0);
  w_long(&w, 0);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  /* structurally fine, but a line id that is not a UUID */
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, 1);
  w_line(&w, "p", 2);
  w_long(&w, 0);
  w_long(&w, 0);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  /* no lines */
  w_order_prefix(&w, "OrderPlaced", SF_EV_ORDER_PLACED);
  w_long(&w, 0);
  w_long(&w, 0);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  /* an optional id that is present but empty */
  w_header(&w);
  w_str(&w, ID_EVENT);
  w_str(&w, "StoreClosed");
  w_long(&w, 1000);
  w_long(&w, 1);
  w_str(&w, ID_STORE);
  size_t at = w.n;
  w_long(&w, 1);
  w_str(&w, ""); /* product_id "" instead of null */
  w_long(&w, 1);
  w_long(&w, 0);
  w_str(&w, ID_CMD);
  w_long(&w, 0);
  w_long(&w, 0);
  w_long(&w, 0); /* request_hash null */
  w_long(&w, SF_EV_STORE_CLOSED);
  w_str(&w, ID_STORE);
  assert_int_equal(decode(c, &w), SF_EPARSE);
  w.n = at; /* the same with product_id null */
  w_long(&w, 0);
  w_long(&w, 1);
  w_long(&w, 0);
  w_str(&w, ID_CMD);
  w_long(&w, 0);
  w_long(&w, 0);
  w_long(&w, 0); /* request_hash null */
  w_long(&w, SF_EV_STORE_CLOSED);
  w_str(&w, ID_STORE);
  assert_int_equal(decode(c, &w), 0);
  /* envelope product id differs from the payload's */
  w_header(&w);
  w_str(&w, ID_EVENT);
  w_str(&w, "ProductDiscontinued");
  w_long(&w, 1000);
  w_long(&w, 0);
  w_long(&w, 1);
  w_line(&w, ID_PROD2, 1);
  w_long(&w, 0);
  w_str(&w, ID_CMD);
  w_long(&w, 0);
  w_long(&w, 0);
  w_long(&w, 0); /* request_hash null */
  w_long(&w, SF_EV_PRODUCT_DISCONTINUED);
  w_str(&w, ID_PROD);
  assert_int_equal(decode(c, &w), SF_EPARSE);
}

/* Seeded random corruption of valid events: never a crash or a leak; a
 * success must still be a valid event. */
static void test_random_flips(void **state) {
  sf_event_codec_t *c = *state;
  uint64_t seed = 0x9e3779b97f4a7c15u;
  int ok = 0;
  for (int t = 0; t < SF_EV__COUNT; t++) {
    sf_event_t e;
    sample(&e, (sf_event_type_t)t, true);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sf_event_encode(c, &e, &buf, &len), 0);
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    for (int it = 0; it < 400; it++) {
      memcpy(copy, buf, len);
      int flips = 1 + it % 4;
      for (int f = 0; f < flips; f++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        size_t pos = 10 + (size_t)(seed % (len - 10));
        copy[pos] ^= (uint8_t)(1u << ((seed >> 32) % 8));
      }
      sf_event_t out;
      int rc = sf_event_decode(c, copy, len, &out);
      assert_true(rc == 0 || rc == SF_EPARSE || rc == SF_ETRUNCATED ||
                  rc == SF_ETOOBIG);
      if (rc == 0) {
        ok++;
        assert_non_null(sf_event_type_name(out.type));
      } else {
        assert_null(out.mem_);
      }
      sf_event_clear(&out);
    }
    free(copy);
    free(buf);
  }
  assert_true(ok > 0); /* some flips land in free text and still decode */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_crc64),
      cmocka_unit_test(test_fingerprint),
      cmocka_unit_test(test_round_trip_all),
      cmocka_unit_test(test_round_trip_movements),
      cmocka_unit_test(test_absent_optionals),
      cmocka_unit_test(test_empty_strings),
      cmocka_unit_test(test_large_order),
      cmocka_unit_test(test_encode_rejects),
      cmocka_unit_test(test_encode_too_big),
      cmocka_unit_test(test_truncated_every_length),
      cmocka_unit_test(test_bad_header),
      cmocka_unit_test(test_trailing_garbage),
      cmocka_unit_test(test_crafted_valid),
      cmocka_unit_test(test_crafted_huge_lengths),
      cmocka_unit_test(test_crafted_huge_counts),
      cmocka_unit_test(test_crafted_bad_indexes),
      cmocka_unit_test(test_crafted_semantics),
      cmocka_unit_test(test_random_flips),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

/* Unit tests for services/query/qry_ws.c: Sec-WebSocket-Accept with the
 * RFC 6455 example and more keys (SHA-1 is libcrypto's), bad keys,
 * and the wslay-backed connection fed with hand-built client frames (no
 * socket: the write function records the bytes the server sends). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_ws.h"
#include "sf/err.h"

static void test_accept_key(void **state) {
  (void)state;
  char out[QRY_WS_ACCEPT_LEN + 1];
  /* RFC 6455 section 1.3 */
  assert_int_equal(qry_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  /* more keys, answers from Python's hashlib */
  assert_int_equal(qry_ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", out), 0);
  assert_string_equal(out, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
  assert_int_equal(qry_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", out), 0);
  assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
  assert_int_equal(strlen(out), QRY_WS_ACCEPT_LEN);
  static const char *const bad[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
      "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
      "AAAAAAAAAAAAAAAAAAAAAAAA",  /* 18 bytes, not 16 */
      "dGhlIHNhbXBsZSBub25jZQ!=",  /* not base64 */
      "dGhlIHNhbXBsZSBub25jZQ-_",  /* URL-safe alphabet */
      " GhlIHNhbXBsZSBub25jZQ==",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(qry_ws_accept_key(bad[i], out), SF_EINVAL);
  assert_int_equal(qry_ws_accept_key(NULL, out), SF_EINVAL);
}

/* ---- the connection, with a recording write function ---- */

typedef struct sink {
  uint8_t buf[65536];
  size_t len;
  int fail;      /* non-zero: the next writes fail */
  char text[64]; /* the last text message (qry_ws_on_text) */
  int texts;     /* text messages received */
  bool refuse;   /* the text callback fails */
} sink_t;

static int sink_write(void *ud, const uint8_t *data, size_t len) {
  sink_t *k = ud;
  if (k->fail)
    return -1;
  assert_true(k->len + len <= sizeof(k->buf));
  memcpy(k->buf + k->len, data, len);
  k->len += len;
  return 0;
}

/* A masked client frame: fin, opcode, payload (n < 126). */
static size_t client_frame(uint8_t *out, uint8_t opcode, const void *payload,
                           size_t n, bool masked) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t o = 0;
  out[o++] = (uint8_t)(0x80 | opcode);
  out[o++] = (uint8_t)((masked ? 0x80 : 0) | n);
  if (masked) {
    memcpy(out + o, key, 4);
    o += 4;
  }
  for (size_t i = 0; i < n; i++)
    out[o++] = ((const uint8_t *)payload)[i] ^ (masked ? key[i % 4] : 0);
  return o;
}

static void test_send_frames(void **state) {
  (void)state;
  sink_t *k = calloc(1, sizeof(*k));
  assert_non_null(k);
  qry_ws_t *ws = NULL;
  assert_int_equal(qry_ws_new(&ws, sink_write, k), 0);
  assert_int_equal(qry_ws_send_text(ws, "hi", 2), 0);
  assert_int_equal(k->len, 4);
  assert_memory_equal(k->buf, "\x81\x02hi", 4); /* unmasked text frame */
  k->len = 0;
  char big[300];
  memset(big, 'x', sizeof(big));
  assert_int_equal(qry_ws_send_text(ws, big, sizeof(big)), 0);
  assert_int_equal(k->len, 4 + sizeof(big)); /* 16-bit length */
  assert_memory_equal(k->buf, "\x81\x7e\x01\x2c", 4);
  k->len = 0;
  assert_int_equal(qry_ws_send_ping(ws), 0);
  assert_int_equal(k->buf[0], 0x89);
  k->len = 0;
  assert_int_equal(qry_ws_send_close(ws, 1008, "overflow"), 0);
  assert_int_equal(k->buf[0], 0x88);
  assert_int_equal(k->buf[1], 10);
  assert_memory_equal(k->buf + 2, "\x03\xf0overflow", 10);
  /* nothing after a close */
  assert_int_equal(qry_ws_send_text(ws, "late", 4), SF_ESTATE);
  qry_ws_destroy(ws);
  free(k);
}

static void test_feed_ping_message_close(void **state) {
  (void)state;
  sink_t *k = calloc(1, sizeof(*k));
  assert_non_null(k);
  qry_ws_t *ws = NULL;
  assert_int_equal(qry_ws_new(&ws, sink_write, k), 0);
  uint8_t in[256];
  /* a ping is answered with a pong carrying the same payload */
  size_t n = client_frame(in, 0x9, "abc", 3, true);
  assert_int_equal(qry_ws_feed(ws, (const char *)in, n), QRY_WS_OPEN);
  assert_int_equal(k->len, 5);
  assert_memory_equal(k->buf, "\x8a\x03"
                              "abc",
                      5);
  k->len = 0;
  /* a client message is read and dropped, even one byte at a time */
  n = client_frame(in, 0x1, "subscribe", 9, true);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(qry_ws_feed(ws, (const char *)in + i, 1), QRY_WS_OPEN);
  assert_int_equal(k->len, 0);
  /* a close frame (1000) is answered with a close, and ends the stream */
  n = client_frame(in, 0x8, "\x03\xe8", 2, true);
  assert_int_equal(qry_ws_feed(ws, (const char *)in, n), QRY_WS_CLOSED);
  assert_true(k->len >= 2);
  assert_int_equal(k->buf[0], 0x88);
  qry_ws_destroy(ws);
  free(k);
}

static void test_feed_protocol_errors(void **state) {
  (void)state;
  sink_t *k = calloc(1, sizeof(*k));
  assert_non_null(k);
  qry_ws_t *ws = NULL;
  uint8_t in[256];
  /* an unmasked client frame breaks RFC 6455: close 1002 */
  assert_int_equal(qry_ws_new(&ws, sink_write, k), 0);
  size_t n = client_frame(in, 0x1, "x", 1, false);
  assert_int_equal(qry_ws_feed(ws, (const char *)in, n), QRY_WS_CLOSED);
  assert_int_equal(k->buf[0], 0x88);
  assert_memory_equal(k->buf + 2, "\x03\xea", 2);
  qry_ws_destroy(ws);
  /* a message over the 4 KiB limit: close 1009 */
  k->len = 0;
  assert_int_equal(qry_ws_new(&ws, sink_write, k), 0);
  uint8_t hdr[8 + 100] = {0x82, 0x80 | 126, 0x20, 0x00, 1, 2, 3, 4}; /* 8192 */
  assert_int_equal(qry_ws_feed(ws, (const char *)hdr, sizeof(hdr)),
                   QRY_WS_CLOSED);
  assert_int_equal(k->buf[0], 0x88);
  assert_memory_equal(k->buf + 2, "\x03\xf1", 2);
  qry_ws_destroy(ws);
  /* the write function failing fails the connection */
  k->len = 0;
  assert_int_equal(qry_ws_new(&ws, sink_write, k), 0);
  k->fail = 1;
  assert_int_equal(qry_ws_send_text(ws, "hi", 2), SF_EIO);
  assert_int_equal(qry_ws_send_ping(ws), SF_EIO);
  n = client_frame(in, 0x9, "p", 1, true);
  assert_int_equal(qry_ws_feed(ws, (const char *)in, n), SF_EIO);
  qry_ws_destroy(ws);
  assert_int_equal(qry_ws_new(NULL, sink_write, k), SF_EINVAL);
  assert_int_equal(qry_ws_new(&ws, NULL, k), SF_EINVAL);
  free(k);
}

static int on_text(void *ud, const char *data, size_t len) {
  sink_t *k = ud;
  assert_true(len < sizeof(k->text));
  memcpy(k->text, data, len);
  k->text[len] = '\0';
  k->texts++;
  return k->refuse ? -1 : 0;
}

static void test_text_messages(void **state) {
  (void)state;
  sink_t *k = calloc(1, sizeof(*k));
  assert_non_null(k);
  qry_ws_t *ws = NULL;
  assert_int_equal(qry_ws_new(&ws, sink_write, k), 0);
  qry_ws_on_text(ws, on_text, 16);
  uint8_t in[256];
  /* delivered whole, also when fed one byte at a time */
  size_t n = client_frame(in, 0x1, "{\"op\":\"connect\"}", 16, true);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(qry_ws_feed(ws, (const char *)in + i, 1), QRY_WS_OPEN);
  assert_int_equal(k->texts, 1);
  assert_string_equal(k->text, "{\"op\":\"connect\"}");
  assert_int_equal(k->len, 0);
  /* binary frames are not text messages */
  n = client_frame(in, 0x2, "bin", 3, true);
  assert_int_equal(qry_ws_feed(ws, (const char *)in, n), QRY_WS_OPEN);
  assert_int_equal(k->texts, 1);
  /* longer than max_len: the connection is failed with 1009 */
  n = client_frame(in, 0x1, "0123456789abcdefX", 17, true);
  assert_int_equal(qry_ws_feed(ws, (const char *)in, n), QRY_WS_CLOSED);
  assert_int_equal(k->texts, 1);
  assert_true(k->len >= 4);
  assert_memory_equal(k->buf, "\x88\x02\x03\xf1", 4);
  qry_ws_destroy(ws);
  /* a refused message fails the connection (close 1011) */
  memset(k, 0, sizeof(*k));
  k->refuse = true;
  assert_int_equal(qry_ws_new(&ws, sink_write, k), 0);
  qry_ws_on_text(ws, on_text, 16);
  n = client_frame(in, 0x1, "x", 1, true);
  assert_int_equal(qry_ws_feed(ws, (const char *)in, n), QRY_WS_CLOSED);
  assert_int_equal(k->texts, 1);
  assert_memory_equal(k->buf, "\x88\x02\x03\xf3", 4);
  qry_ws_destroy(ws);
  free(k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_key),
      cmocka_unit_test(test_send_frames),
      cmocka_unit_test(test_feed_ping_message_close),
      cmocka_unit_test(test_feed_protocol_errors),
      cmocka_unit_test(test_text_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

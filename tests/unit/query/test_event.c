/* Unit tests for services/query/qry_event.c: SSE framing, serialized-once
 * events and their reference counts (the lifetime a fan-out relies on),
 * subscriber filters, and resume points. ASan/LSan check that the last
 * reference frees and no earlier one does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_event.h"
#include "sf/err.h"

#define S1 "0190f3a1-0000-7000-8000-000000000001"
#define S2 "0190f3a1-0000-7000-8000-000000000002"
#define P1 "0190f3a1-0000-7000-8000-00000000000a"
#define P2 "0190f3a1-0000-7000-8000-00000000000b"

static void test_sse_frame(void **state) {
  (void)state;
  char out[256];
  size_t n = qry_sse_frame(out, sizeof(out), 42, "change", "{\"a\":1}", 7);
  assert_string_equal(out, "id: 42\nevent: change\ndata: {\"a\":1}\n\n");
  assert_int_equal(n, strlen(out));
  /* no id for 0, no event line for NULL */
  qry_sse_frame(out, sizeof(out), 0, NULL, "x", 1);
  assert_string_equal(out, "data: x\n\n");
  /* every line of data is its own data field; CR, LF and CRLF all end one;
   * a final line ending opens no empty line */
  qry_sse_frame(out, sizeof(out), 7, "e", "a\nb\r\nc\rd\n", 9);
  assert_string_equal(out, "id: 7\nevent: e\ndata: a\ndata: b\ndata: c\n"
                           "data: d\n\n");
  qry_sse_frame(out, sizeof(out), 0, NULL, "a\n\nb", 4);
  assert_string_equal(out, "data: a\ndata: \ndata: b\n\n");
  qry_sse_frame(out, sizeof(out), 0, NULL, "", 0);
  assert_string_equal(out, "data: \n\n");
  /* too small: the needed length comes back, out stays terminated */
  char small[8];
  n = qry_sse_frame(small, sizeof(small), 42, "change", "{\"a\":1}", 7);
  assert_int_equal(n, strlen("id: 42\nevent: change\ndata: {\"a\":1}\n\n"));
  assert_true(strlen(small) < sizeof(small));
  assert_int_equal(qry_sse_frame(NULL, 0, 1, "e", "d", 1),
                   strlen("id: 1\nevent: e\ndata: d\n\n"));
}

static qry_event_t *change(int64_t id, const char *store,
                           const char *product) {
  json_t *o = json_pack("{s:I,s:s,s:s,s:i}", "id", (json_int_t)id,
                        "store_id", store, "product_id", product, "on_hand",
                        5);
  assert_non_null(o);
  qry_event_t *e = qry_event_new(QRY_EVENT_CHANGE, id, store, product, o);
  json_decref(o);
  assert_non_null(e);
  return e;
}

static void test_event_serialized_once(void **state) {
  (void)state;
  qry_event_t *e = change(9, S1, P1);
  const char *json = "{\"type\":\"change\",\"id\":9,\"store_id\":\"" S1
                     "\",\"product_id\":\"" P1 "\",\"on_hand\":5}";
  assert_string_equal(e->json, json);
  assert_int_equal(e->json_len, strlen(json));
  char want[512];
  snprintf(want, sizeof(want), "id: 9\nevent: change\ndata: %s\n\n", json);
  assert_int_equal(e->sse_len, strlen(want));
  assert_memory_equal(e->sse, want, e->sse_len);
  assert_string_equal(e->store_id, S1);
  assert_int_equal(e->kind, QRY_EVENT_CHANGE);
  qry_event_unref(e);
  /* a snapshot row has no id line; snapshot_end carries the resume id */
  json_t *o = json_pack("{s:s}", "store_id", S2);
  qry_event_t *snap = qry_event_new(QRY_EVENT_SNAPSHOT, 0, S2, P2, o);
  json_decref(o);
  assert_non_null(snap);
  assert_string_equal(snap->sse, "event: snapshot\ndata: "
                                 "{\"type\":\"snapshot\",\"store_id\":\"" S2
                                 "\"}\n\n");
  qry_event_unref(snap);
  o = json_pack("{s:I}", "last_id", (json_int_t)120);
  qry_event_t *end = qry_event_new(QRY_EVENT_SNAPSHOT_END, 120, NULL, NULL, o);
  json_decref(o);
  assert_non_null(end);
  assert_string_equal(end->sse, "id: 120\nevent: snapshot_end\ndata: "
                                "{\"type\":\"snapshot_end\",\"last_id\":120}"
                                "\n\n");
  assert_string_equal(end->store_id, "");
  qry_event_unref(end);
  /* only objects */
  json_t *arr = json_array();
  assert_null(qry_event_new(QRY_EVENT_CHANGE, 1, S1, P1, arr));
  assert_null(qry_event_new(QRY_EVENT_CHANGE, 1, S1, P1, NULL));
  json_decref(arr);
  assert_string_equal(qry_event_kind_name(QRY_EVENT_OVERFLOW), "overflow");
  assert_string_equal(qry_event_kind_name(QRY_EVENT_EXPIRED), "expired");
}

/* The fan-out pattern: the hub holds the event while it hands it to three
 * subscriber queues; each queue entry becomes a write reference; the event
 * lives until the last write completes, in any order. */
/* From a row's text: the same bytes as from the object; an empty object
 * has no stray comma; text that is not an object is refused. */
static void test_event_from_text(void **state) {
  (void)state;
  const char row[] = "{\"id\":9,\"store_id\":\"" S1 "\",\"on_hand\":5}";
  qry_event_t *t = qry_event_new_text(QRY_EVENT_CHANGE, 9, S1, P1, row,
                                      sizeof(row) - 1);
  json_t *o = json_loads(row, 0, NULL);
  qry_event_t *j = qry_event_new(QRY_EVENT_CHANGE, 9, S1, P1, o);
  json_decref(o);
  assert_non_null(t);
  assert_non_null(j);
  assert_string_equal(t->json, j->json);
  assert_int_equal(t->sse_len, j->sse_len);
  assert_memory_equal(t->sse, j->sse, t->sse_len);
  assert_string_equal(t->product_id, P1);
  qry_event_unref(t);
  qry_event_unref(j);
  qry_event_t *e = qry_event_new_text(QRY_EVENT_SNAPSHOT, 0, NULL, NULL, "{}", 2);
  assert_non_null(e);
  assert_string_equal(e->json, "{\"type\":\"snapshot\"}");
  qry_event_unref(e);
  assert_null(qry_event_new_text(QRY_EVENT_CHANGE, 1, S1, P1, "[1]", 3));
  assert_null(qry_event_new_text(QRY_EVENT_CHANGE, 1, S1, P1, "{", 1));
  assert_null(qry_event_new_text(QRY_EVENT_CHANGE, 1, S1, P1, NULL, 0));
}

static void test_event_refcount_lifetime(void **state) {
  (void)state;
  qry_event_t *e = change(1, S1, P1);
  qry_event_t *queued[3];
  for (int i = 0; i < 3; i++)
    queued[i] = qry_event_ref(e);
  assert_int_equal(e->refs, 4);
  qry_event_unref(e); /* the hub is done fanning out */
  assert_int_equal(queued[0]->refs, 3);
  /* subscriber 1 moves its entry to a write (ref), then drops the entry */
  qry_event_t *write1 = qry_event_ref(queued[1]);
  qry_event_unref(queued[1]);
  /* subscriber 0 is cut off: its queue is dropped */
  qry_event_unref(queued[0]);
  assert_int_equal(write1->refs, 2);
  /* the bytes are still readable while a write holds them */
  assert_true(strstr(write1->sse, "event: change") != NULL);
  qry_event_unref(queued[2]);
  assert_int_equal(write1->refs, 1);
  qry_event_unref(write1); /* last write done: freed (LSan would report) */
  qry_event_unref(NULL);   /* ignored */
}

static void test_filter(void **state) {
  (void)state;
  qry_event_t *a = change(1, S1, P1), *b = change(2, S1, P2),
              *c = change(3, S2, P1);
  json_t *o = json_object();
  qry_event_t *ctl = qry_event_new(QRY_EVENT_OVERFLOW, 3, NULL, NULL, o);
  json_decref(o);
  qry_filter_t f;
  assert_int_equal(qry_filter_init(&f, NULL, NULL), 0);
  assert_true(qry_filter_match(&f, a) && qry_filter_match(&f, b) &&
              qry_filter_match(&f, c));
  assert_int_equal(qry_filter_init(&f, S1, ""), 0); /* "" = no filter */
  assert_true(qry_filter_match(&f, a) && qry_filter_match(&f, b));
  assert_false(qry_filter_match(&f, c));
  assert_int_equal(qry_filter_init(&f, NULL, P1), 0);
  assert_true(qry_filter_match(&f, a) && qry_filter_match(&f, c));
  assert_false(qry_filter_match(&f, b));
  /* both, given in upper case: compared canonically */
  assert_int_equal(
      qry_filter_init(&f, "0190F3A1-0000-7000-8000-000000000001",
                      "0190F3A1-0000-7000-8000-00000000000A"),
      0);
  assert_true(qry_filter_match(&f, a));
  assert_false(qry_filter_match(&f, b));
  assert_false(qry_filter_match(&f, c));
  assert_true(qry_filter_match(&f, ctl)); /* control messages always pass */
  assert_int_equal(qry_filter_init(&f, "store-1", NULL), SF_EINVAL);
  assert_int_equal(qry_filter_init(&f, NULL, S1 "0"), SF_EINVAL);
  qry_event_unref(a);
  qry_event_unref(b);
  qry_event_unref(c);
  qry_event_unref(ctl);
}

static void test_after(void **state) {
  (void)state;
  int64_t v = -1;
  assert_int_equal(qry_after_parse("0", &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(qry_after_parse("123456", &v), 0);
  assert_int_equal(v, 123456);
  assert_int_equal(qry_after_parse("9223372036854775807", &v), 0);
  assert_int_equal(v, INT64_MAX);
  static const char *const bad[] = {"", "-1", "+1", "1.0", " 1", "1 ",
                                    "0x1", "a", "9223372036854775808",
                                    "99999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(qry_after_parse(bad[i], &v), SF_EINVAL);
  assert_int_equal(qry_after_parse(NULL, &v), SF_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sse_frame),
      cmocka_unit_test(test_event_serialized_once),
      cmocka_unit_test(test_event_from_text),
      cmocka_unit_test(test_event_refcount_lifetime),
      cmocka_unit_test(test_filter),
      cmocka_unit_test(test_after),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

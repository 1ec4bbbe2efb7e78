/* Unit tests of proj_dlq over librdkafka's built-in mock cluster: dead
 * letters keep their key and value (an empty one stays null) and carry the
 * four x- headers; a flush says whether every one was acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "../mock_kafka.h"
#include "proj_dlq.h"
#include "sf/err.h"
#include "sf/kafka.h"

#define TOPIC "t.dlq"

typedef struct fixture {
  mock_kafka_t kafka;
  const char *brokers;
  sf_log_t *log;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(mock_kafka_start(&f->kafka), 0);
  f->brokers = f->kafka.brokers;
  assert_int_equal(mock_kafka_topic(&f->kafka, TOPIC, 1), 0);
  assert_int_equal(sf_log_new(&f->log, "test", SF_LOG_ERROR, stderr), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  sf_log_destroy(f->log);
  mock_kafka_stop(&f->kafka);
  free(f);
  return 0;
}

static void assert_header(const sf_kafka_msg_t *m, const char *name,
                          const char *want) {
  const void *v = NULL;
  size_t len = 0;
  assert_int_equal(sf_kafka_msg_header(m, name, &v, &len), 0);
  assert_int_equal(len, strlen(want));
  assert_memory_equal(v, want, len);
}

static void test_dead_letters_delivered(void **state) {
  fixture_t *f = *state;
  proj_dlq_t *d = NULL;
  assert_int_equal(proj_dlq_new(&d, f->brokers, "", f->log), SF_EINVAL);
  assert_int_equal(proj_dlq_new(&d, f->brokers, TOPIC, f->log), 0);
  assert_string_equal(proj_dlq_topic(d), TOPIC);
  assert_int_equal(proj_dlq_add(d, "store-1", 7, "\x01\x02", 2,
                                "SF_EPARSE: bad event", "t.stock", 3, 42),
                   0);
  assert_int_equal(proj_dlq_add(d, NULL, 0, NULL, 0, "SF_ESCHEMA: unknown",
                                "t.catalog", 0, 7),
                   0);
  assert_int_equal(proj_dlq_flush(d, 10000), 0);
  /* nothing queued: an empty flush succeeds at once */
  assert_int_equal(proj_dlq_flush(d, 10000), 0);
  proj_dlq_destroy(d);

  sf_kafka_consumer_opts_t co = {.brokers = f->brokers};
  sf_kafka_consumer_t *c = NULL;
  assert_int_equal(sf_kafka_consumer_new(&c, &co, f->log), 0);
  sf_kafka_tp_t tp = {TOPIC, 0, SF_KAFKA_OFFSET_BEGINNING};
  assert_int_equal(sf_kafka_consumer_assign(c, &tp, 1), 0);
  sf_kafka_msg_t m[2];
  int got = 0;
  for (int i = 0; i < 100 && got < 2; i++) {
    int n = sf_kafka_consumer_poll(c, m + got, (size_t)(2 - got), 200);
    assert_true(n >= 0);
    got += n;
  }
  assert_int_equal(got, 2);
  assert_int_equal(m[0].key_len, 7);
  assert_memory_equal(m[0].key, "store-1", 7);
  assert_int_equal(m[0].value_len, 2);
  assert_memory_equal(m[0].value, "\x01\x02", 2);
  assert_header(&m[0], "x-error", "SF_EPARSE: bad event");
  assert_header(&m[0], "x-source-topic", "t.stock");
  assert_header(&m[0], "x-source-partition", "3");
  assert_header(&m[0], "x-source-offset", "42");
  assert_null(m[1].key); /* null, not empty */
  assert_null(m[1].value);
  assert_header(&m[1], "x-source-topic", "t.catalog");
  assert_header(&m[1], "x-source-offset", "7");
  for (int i = 0; i < got; i++)
    sf_kafka_msg_destroy(&m[i]);
  sf_kafka_consumer_destroy(c);
}

static void test_refused_dead_letter_fails_the_flush(void **state) {
  fixture_t *f = *state;
  proj_dlq_t *d = NULL;
  assert_int_equal(proj_dlq_new(&d, f->brokers, TOPIC, f->log), 0);
  /* the leader refuses the write for good (not retried) */
  rd_kafka_mock_push_request_errors(f->kafka.mc, MOCK_API_PRODUCE, 1,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  assert_int_equal(
      proj_dlq_add(d, "k", 1, "v", 1, "SF_EPARSE: x", "t.stock", 0, 1), 0);
  assert_int_equal(proj_dlq_flush(d, 10000), SF_EKAFKA);
  /* the tally starts afresh */
  assert_int_equal(proj_dlq_flush(d, 10000), 0);
  proj_dlq_destroy(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dead_letters_delivered, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refused_dead_letter_fails_the_flush,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

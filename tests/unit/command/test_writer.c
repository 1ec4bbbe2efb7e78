/* Unit tests of cmd_writer, one writer lane, over librdkafka's built-in
 * mock cluster: a committed unit comes back with the partition and offset
 * of each message; a stale generation never reaches Kafka; an abortable
 * failure, a broken producer (replaced, ready again) and a fence (fatal)
 * each reach the callbacks the lanes act on. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include "../mock_kafka.h"
#include "cmd_writer.h"
#include "sf/err.h"

#define TOPIC_STOCK "t.stock"
#define TOPIC_CATALOG "t.catalog"

typedef struct world {
  mock_kafka_t kafka;
  sf_log_t *log;
  uv_loop_t loop;
  cmd_writer_t *writer;
  /* what came back, on the loop thread */
  cmd_unit_t *done[16];
  int n_done;
  int ready, failed, fatal;
  int32_t partitions;
  bool recovering;
  char reason[256];
} world_t;

static void done_cb(void *ud, cmd_unit_t *u) {
  world_t *w = ud;
  assert_true(w->n_done < 16);
  w->done[w->n_done++] = u;
}
static void ready_cb(void *ud, unsigned lane, int32_t partitions) {
  world_t *w = ud;
  assert_int_equal(lane, 3);
  w->ready++;
  w->partitions = partitions;
}
static void failed_cb(void *ud, unsigned lane, const char *reason,
                      bool recovering) {
  world_t *w = ud;
  assert_int_equal(lane, 3);
  w->failed++;
  w->recovering = recovering;
  snprintf(w->reason, sizeof(w->reason), "%s", reason);
}
static void fatal_cb(void *ud, unsigned lane, const char *reason) {
  world_t *w = ud;
  assert_int_equal(lane, 3);
  w->fatal++;
  snprintf(w->reason, sizeof(w->reason), "%s", reason);
}

static void on_tick(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop until *counter reaches want or 20 s pass. */
static void run_until(world_t *w, const int *counter, int want) {
  uint64_t deadline = uv_now(&w->loop) + 20000;
  uv_timer_t tick;
  uv_timer_init(&w->loop, &tick);
  uv_timer_start(&tick, on_tick, 10, 10);
  while (*counter < want && uv_now(&w->loop) < deadline)
    uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&w->loop, UV_RUN_NOWAIT);
  assert_int_equal(*counter, want);
}

static int setup(void **state) {
  world_t *w = calloc(1, sizeof(*w));
  assert_non_null(w);
  assert_int_equal(mock_kafka_start(&w->kafka), 0);
  assert_int_equal(mock_kafka_topic(&w->kafka, TOPIC_STOCK, 6), 0);
  assert_int_equal(mock_kafka_topic(&w->kafka, TOPIC_CATALOG, 1), 0);
  assert_int_equal(sf_log_new(&w->log, "test", SF_LOG_ERROR, stderr), 0);
  assert_int_equal(uv_loop_init(&w->loop), 0);
  cmd_writer_opts_t o = {.brokers = w->kafka.brokers,
                         .transactional_id = "test-lane-3",
                         .topic_stock = TOPIC_STOCK,
                         .lane = 3,
                         .max_batch = 100,
                         .txn_timeout_ms = 3000};
  cmd_writer_cbs_t cbs = {done_cb, ready_cb, failed_cb, fatal_cb, w};
  assert_int_equal(cmd_writer_new(&w->writer, &w->loop, &o, &cbs, w->log), 0);
  run_until(w, &w->ready, 1);
  assert_int_equal(w->partitions, 6);
  *state = w;
  return 0;
}

static int teardown(void **state) {
  world_t *w = *state;
  int before = w->n_done;
  cmd_writer_destroy(w->writer);
  assert_int_equal(w->n_done, before); /* nothing was left queued */
  uv_run(&w->loop, UV_RUN_NOWAIT);
  assert_int_equal(uv_loop_close(&w->loop), 0); /* every handle closed */
  for (int i = 0; i < w->n_done; i++)
    cmd_unit_free(w->done[i]);
  sf_log_destroy(w->log);
  mock_kafka_stop(&w->kafka);
  free(w);
  return 0;
}

static void add_msg(cmd_unit_t *u, const char *topic, const char *key,
                    int32_t partition, const char *value) {
  cmd_msg_t *m = calloc(1, sizeof(*m));
  assert_non_null(m);
  m->topic = topic;
  snprintf(m->key, sizeof(m->key), "%s", key);
  m->to_partition = partition;
  m->value = (uint8_t *)strdup(value);
  m->value_len = strlen(value);
  snprintf(m->ce_id, sizeof(m->ce_id), "id-%s", value);
  snprintf(m->ce_type, sizeof(m->ce_type), "StockAdjusted");
  snprintf(m->ce_time, sizeof(m->ce_time), "2026-12-06T00:00:00Z");
  /* appended: a unit's messages commit in order */
  cmd_msg_t **tail = &u->msgs;
  while (*tail)
    tail = &(*tail)->next;
  *tail = m;
  u->n_msgs++;
}

static cmd_unit_t *new_unit(uint64_t generation) {
  cmd_unit_t *u = calloc(1, sizeof(*u));
  assert_non_null(u);
  u->generation = generation;
  return u;
}

/* Submits a one-message stock unit and waits for it. */
static cmd_unit_t *commit_one(world_t *w, uint64_t gen, const char *value) {
  cmd_unit_t *u = new_unit(gen);
  add_msg(u, TOPIC_STOCK, "store-a", 2, value);
  int want = w->n_done + 1;
  cmd_writer_submit(w->writer, u);
  run_until(w, &w->n_done, want);
  assert_ptr_equal(w->done[want - 1], u);
  return u;
}

static void test_commit_gives_offsets(void **state) {
  world_t *w = *state;
  cmd_writer_accept(w->writer, 1);
  cmd_unit_t *u = new_unit(1);
  add_msg(u, TOPIC_STOCK, "store-a", 2, "a");
  add_msg(u, TOPIC_STOCK, "store-b", -1, "b"); /* the partitioner's */
  add_msg(u, TOPIC_CATALOG, "catalog", 0, "c");
  u->wait_visible = true; /* the stable offset must pass it */
  cmd_writer_submit(w->writer, u);
  run_until(w, &w->n_done, 1);
  assert_ptr_equal(w->done[0], u);
  assert_int_equal(u->err, 0);
  assert_int_equal(u->batch_units, 1);
  cmd_msg_t *m = u->msgs;
  assert_int_equal(m->err, 0);
  assert_int_equal(m->partition, 2);
  assert_int_equal(m->offset, 0);
  m = m->next;
  assert_int_equal(m->err, 0);
  assert_true(m->partition >= 0 && m->partition < 6);
  assert_true(m->offset >= 0);
  m = m->next;
  assert_int_equal(m->err, 0);
  assert_int_equal(m->partition, 0);
  assert_int_equal(m->offset, 0);

  /* the next unit follows in the same partition */
  cmd_unit_t *v = commit_one(w, 1, "d");
  assert_int_equal(v->err, 0);
  assert_int_equal(v->msgs->offset, 1);
  assert_true(v->batch_id > u->batch_id);

  /* a unit decided against another state never reaches Kafka */
  cmd_unit_t *s = commit_one(w, 7, "stale");
  assert_int_equal(s->err, SF_EUNAVAILABLE);
  assert_int_equal(s->msgs->err, 0); /* never sent */
  assert_int_equal(w->failed + w->fatal, 0);

  cmd_writer_stats_t st;
  cmd_writer_stats(w->writer, &st);
  assert_int_equal(st.batches, 2);
  assert_int_equal(st.batch_units, 2);
  assert_int_equal(st.batch_msgs, 4);
  assert_int_equal(st.failed_batches, 0);
}

/* A batch that fails for the error err injected on request api: its unit
 * answers 503, the lane reports it recovering, a new producer becomes
 * ready, nothing is accepted until the lanes say so, then writes go on. */
static void failure_replaces_producer(world_t *w, int api,
                                      rd_kafka_resp_err_t err) {
  cmd_writer_accept(w->writer, 1);
  rd_kafka_mock_push_request_errors(w->kafka.mc, api, 1, err);
  cmd_unit_t *u = commit_one(w, 1, "x");
  assert_int_equal(u->err, SF_EUNAVAILABLE);
  run_until(w, &w->failed, 1);
  assert_true(w->recovering);
  assert_non_null(strstr(w->reason, "lane 3"));
  run_until(w, &w->ready, 2); /* replaced */
  assert_int_equal(w->partitions, 6);
  cmd_unit_t *v = commit_one(w, 1, "y");
  assert_int_equal(v->err, SF_EUNAVAILABLE);
  cmd_writer_accept(w->writer, 2);
  cmd_unit_t *z = commit_one(w, 2, "z");
  assert_int_equal(z->err, 0);
  cmd_writer_stats_t st;
  cmd_writer_stats(w->writer, &st);
  assert_int_equal(st.failed_batches, 1);
  assert_int_equal(st.recoveries, 1);
  assert_int_equal(w->fatal, 0);
}

/* The coordinator refuses the partition: the batch is aborted, and the
 * producer is replaced even so (a new epoch: nothing of the aborted
 * transaction can be taken for a retry of the next one). */
static void test_abortable_failure(void **state) {
  failure_replaces_producer(*state, MOCK_API_ADD_PARTITIONS_TO_TXN,
                            RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
}

/* A fatal error that is not a fence: a new producer, ready again. */
static void test_broken_producer_replaced(void **state) {
  failure_replaces_producer(*state, MOCK_API_END_TXN,
                            RD_KAFKA_RESP_ERR_INVALID_TXN_STATE);
}

static void test_fenced_is_fatal(void **state) {
  world_t *w = *state;
  cmd_writer_accept(w->writer, 1);
  /* another instance holds a newer epoch of our id (a fence of a young
   * transaction: not the coordinator's own timeout) */
  rd_kafka_mock_push_request_errors(w->kafka.mc, MOCK_API_END_TXN, 1,
                                    RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
  cmd_unit_t *u = commit_one(w, 1, "x");
  assert_int_equal(u->err, SF_EUNAVAILABLE);
  run_until(w, &w->fatal, 1);
  assert_non_null(strstr(w->reason, "FENCED"));
  assert_int_equal(w->failed, 0);
  assert_int_equal(w->ready, 1); /* never replaced */
}

/* The pause before a lane's next batch: the linger, or the rest of the
 * gap after the last commit when longer; nothing after an idle spell. */
static void test_pause_after_commit(void **state) {
  (void)state;
  const double eps = 1e-9;
  /* no commit yet: the linger only */
  assert_true(cmd_writer_pause(0, 2000, 0, 5.0) == 0);
  assert_true(fabs(cmd_writer_pause(300, 2000, 0, 5.0) - 0.0003) < eps);
  /* 0.5 ms after a commit, a 2 ms gap leaves 1.5 ms */
  assert_true(fabs(cmd_writer_pause(0, 2000, 10.0, 10.0005) - 0.0015) < eps);
  /* a longer linger wins */
  assert_true(fabs(cmd_writer_pause(5000, 2000, 10.0, 10.0005) - 0.005) <
              eps);
  /* past the gap (an idle lane): nothing */
  assert_true(cmd_writer_pause(0, 2000, 10.0, 10.5) <= 0);
  /* gap 0: the old behaviour */
  assert_true(cmd_writer_pause(0, 0, 10.0, 10.0) <= 0);
}

static void test_commit_buckets(void **state) {
  (void)state;
  /* each bound belongs to its own bucket (le), the next value to the next */
  assert_int_equal(cmd_writer_commit_bucket(0.0001), 0);
  assert_int_equal(cmd_writer_commit_bucket(0.002), 0);
  assert_int_equal(cmd_writer_commit_bucket(0.0021), 1);
  assert_int_equal(cmd_writer_commit_bucket(0.021), 4); /* the 20 ms retry */
  assert_int_equal(cmd_writer_commit_bucket(5), CMD_COMMIT_BUCKETS - 1);
  assert_int_equal(cmd_writer_commit_bucket(6), CMD_COMMIT_BUCKETS);
  for (size_t i = 1; i < CMD_COMMIT_BUCKETS; i++)
    assert_true(cmd_commit_bounds[i - 1] < cmd_commit_bounds[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_commit_gives_offsets, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_abortable_failure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken_producer_replaced, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_fenced_is_fatal, setup, teardown),
      cmocka_unit_test(test_pause_after_commit),
      cmocka_unit_test(test_commit_buckets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

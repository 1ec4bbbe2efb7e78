/* Unit tests of cmd_bus, the bus intake, over librdkafka's built-in mock
 * cluster (one broker per test) and the write pipeline over a sink of the
 * test's own that holds the committed units until the test hands them back.
 * The test publishes StockCommands as a warehouse system would, reads the
 * results topic, and asks the intake group's committed offset through a
 * client of its own that never joins the group: a command's result and its
 * answer, the commit only after the result is acknowledged and never past
 * an unanswered earlier command, a result the broker refuses, malformed
 * payloads, redelivery answered once, refusals by the rules, the stop
 * with commands in flight (what wrote nothing is left for the next start),
 * a command that comes before the state (instances: it waits, neither
 * answered nor committed past, and is applied once the state is there),
 * and the intake that takes no more than max_inflight commands at a time.
 * The loop runs on the test thread until a condition holds; the bounds are
 * there only so that nothing hangs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../mock_kafka.h"
#include "cmd_bus.h"
#include "held_units.h"
#include "sf/command.h"
#include "sf/err.h"
#include "sf/kafka.h"

#define T_COMMANDS "t.commands"
#define T_RESULTS "t.results"
#define GROUP "t-intake"
#define STORE "0190a1b2-0000-7000-8000-0000000000a1"
#define STORE_UNKNOWN "0190a1b2-0000-7000-8000-0000000000a9"
#define PRODUCT "0190a1b2-0000-7000-8000-0000000000b1"
#define PRODUCT_UNKNOWN "0190a1b2-0000-7000-8000-0000000000b9"
#define CMD1 "0190a1b2-0000-7000-8000-0000000000c1"
#define CMD2 "0190a1b2-0000-7000-8000-0000000000c2"
#define CMD3 "0190a1b2-0000-7000-8000-0000000000c3"
#define CMD4 "0190a1b2-0000-7000-8000-0000000000c4"
#define CMD5 "0190a1b2-0000-7000-8000-0000000000c5"
#define ON_HAND 10 /* the stock of PRODUCT at STORE in every test */
#define MAX_RESULTS 16
#define BOUND_MS 20000
#define QUIET_MS 1000 /* five of the bus's 200 ms retries */
#define SMALL_INFLIGHT 2

typedef struct result {
  char key[128];
  json_t *json; /* {command_id, status, body, correlation_id, source} */
} result_t;

typedef struct world {
  mock_kafka_t kafka;
  sf_log_t *log;
  uv_loop_t loop;
  cmd_settings_t cfg;
  cmd_pipeline_t *pl;
  cmd_bus_t *bus;
  uint64_t fp;
  sf_kafka_producer_t *publisher; /* the warehouse systems' */
  sf_kafka_consumer_t *reader;    /* the results topic, from the start */
  rd_kafka_t *group;              /* asks the intake group's offsets */
  size_t max_inflight;            /* the bus's, at every start */
  held_units_t held;              /* the sink's */
  /* the results read so far */
  result_t results[MAX_RESULTS];
  size_t n_results;
  int64_t results_next; /* the next offset of the results topic */
  /* cmd_bus_stats, refreshed while the loop runs */
  size_t received, malformed, commits_blocked;
} world_t;

/* ---- the sink ---- */

static void sink_submit(void *ud, cmd_unit_t *u) {
  world_t *w = ud;
  held_units_add(&w->held, u);
}

static void sink_resync(void *ud, const char *reason) {
  (void)ud;
  fail_msg("unexpected resync: %s", reason);
}

/* ---- Kafka: commands in, results out, the group's offsets ---- */

static void publish_raw(world_t *w, const char *key, const void *value,
                        size_t len) {
  char why[256] = "";
  assert_int_equal(sf_kafka_producer_send(w->publisher, T_COMMANDS, 0, key,
                                          strlen(key), value, len, NULL, 0,
                                          NULL, NULL, why, sizeof(why)),
                   0);
  assert_int_equal(sf_kafka_producer_await(w->publisher, BOUND_MS), 0);
}

/* A StockCommand of id on STORE's PRODUCT unless store or product say
 * otherwise. */
static sf_command_t command(const char *id, const char *store,
                            sf_movement_t movement, int64_t quantity) {
  sf_command_t c;
  memset(&c, 0, sizeof(c));
  snprintf(c.command_id, sizeof(c.command_id), "%s", id);
  snprintf(c.store_id, sizeof(c.store_id), "%s", store);
  snprintf(c.product_id, sizeof(c.product_id), "%s", PRODUCT);
  c.movement = movement;
  c.quantity = quantity;
  return c;
}

/* Encodes c (Avro single-object, schemas/command.avsc) into buf. */
static size_t encode(world_t *w, const sf_command_t *c, uint8_t *buf,
                     size_t cap) {
  size_t len = 0;
  assert_int_equal(sf_command_encode(c, w->fp, buf, cap, &len), 0);
  return len;
}

/* Publishes c on the commands topic keyed by its store, as the warehouse
 * and point-of-sale systems do. */
static void publish(world_t *w, const sf_command_t *c) {
  uint8_t buf[4096];
  size_t len = encode(w, c, buf, sizeof(buf));
  publish_raw(w, c->store_id, buf, len);
}

/* Reads the results there are, waiting up to timeout_ms for each. */
static void read_results(world_t *w, int timeout_ms) {
  sf_kafka_msg_t m;
  while (sf_kafka_consumer_poll(w->reader, &m, 1, timeout_ms) == 1) {
    assert_true(w->n_results < MAX_RESULTS);
    result_t *r = &w->results[w->n_results++];
    assert_true(m.key_len < sizeof(r->key));
    if (m.key_len)
      memcpy(r->key, m.key, m.key_len);
    const void *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(sf_kafka_msg_header(&m, "content-type", &ct, &ct_len), 0);
    assert_int_equal(ct_len, 16);
    assert_memory_equal(ct, "application/json", 16);
    json_error_t jerr;
    r->json = json_loadb(m.value, m.value_len, 0, &jerr);
    assert_non_null(r->json);
    w->results_next = m.offset + 1;
    sf_kafka_msg_destroy(&m);
  }
}

/* The intake group's committed offset of the commands partition, or
 * RD_KAFKA_OFFSET_INVALID when none. */
static int64_t committed(world_t *w) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  assert_non_null(l);
  rd_kafka_topic_partition_list_add(l, T_COMMANDS, 0);
  assert_int_equal(rd_kafka_committed(w->group, l, BOUND_MS),
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(l->elems[0].err, RD_KAFKA_RESP_ERR_NO_ERROR);
  int64_t off = l->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(l);
  return off;
}

/* ---- the loop ---- */

static void on_tick(uv_timer_t *t) { uv_stop(t->loop); }

static void refresh(world_t *w) {
  read_results(w, 0);
  if (w->bus) {
    cmd_bus_stats_t s;
    cmd_bus_stats(w->bus, &s);
    w->received = (size_t)s.received;
    w->malformed = (size_t)s.malformed;
    w->commits_blocked = (size_t)s.commits_blocked;
  }
}

/* Runs the loop, reading results, until *counter reaches want (counter
 * NULL: never) or ms pass. */
static void run_loop(world_t *w, const size_t *counter, size_t want,
                     uint64_t ms) {
  uv_update_time(&w->loop);
  uint64_t deadline = uv_now(&w->loop) + ms;
  uv_timer_t tick;
  uv_timer_init(&w->loop, &tick);
  uv_timer_start(&tick, on_tick, 10, 10);
  refresh(w);
  while ((!counter || *counter < want) && uv_now(&w->loop) < deadline) {
    uv_run(&w->loop, UV_RUN_DEFAULT);
    refresh(w);
  }
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&w->loop, UV_RUN_NOWAIT);
}

/* Runs the loop for ms: time enough for the bus to do what it must not (take
 * one command too many, answer or commit too early). */
static void run_for(world_t *w, uint64_t ms) { run_loop(w, NULL, 0, ms); }

/* Runs the loop until *counter reaches want (or the bound passes: then the
 * assertion fails). */
static void run_until(world_t *w, const size_t *counter, size_t want) {
  run_loop(w, counter, want, BOUND_MS);
  assert_int_equal(*counter, want);
}

/* Waits until the group's committed offset is want. */
static void wait_committed(world_t *w, int64_t want) {
  int64_t off = committed(w);
  for (int waited = 0; off != want && waited < BOUND_MS; waited += 20) {
    uv_sleep(20);
    off = committed(w);
  }
  assert_int_equal(off, want);
}

/* Stops the bus (cmd_bus_destroy: its thread has published, awaited and
 * committed everything it had when this returns), then reads every result
 * up to the end of the results topic. */
static void destroy_bus_and_drain(world_t *w) {
  cmd_bus_destroy(w->bus);
  w->bus = NULL;
  uv_run(&w->loop, UV_RUN_NOWAIT); /* its handles close */
  int64_t low = 0, high = 0;
  assert_int_equal(
      sf_kafka_watermarks(w->reader, T_RESULTS, 0, BOUND_MS, &low, &high), 0);
  for (int waited = 0; w->results_next < high && waited < BOUND_MS;
       waited += 100)
    read_results(w, 100);
  assert_int_equal(w->results_next, high);
}

static void start_bus(world_t *w) {
  cmd_bus_opts_t o = {.brokers = w->kafka.brokers,
                      .topic_commands = T_COMMANDS,
                      .topic_results = T_RESULTS,
                      .group_id = GROUP,
                      .max_inflight = w->max_inflight};
  assert_int_equal(cmd_bus_new(&w->bus, &w->loop, w->pl, &o, w->log), 0);
}

/* ---- the results ---- */

static json_t *field(const world_t *w, size_t i, const char *name) {
  assert_true(i < w->n_results);
  return json_object_get(w->results[i].json, name);
}

static int status_of(const world_t *w, size_t i) {
  json_t *s = field(w, i, "status");
  assert_true(json_is_integer(s));
  return (int)json_integer_value(s);
}

/* A string member of the result's answer ("" when absent). */
static const char *body_str(const world_t *w, size_t i, const char *name) {
  const char *s = json_string_value(json_object_get(field(w, i, "body"), name));
  return s ? s : "";
}

static const char *command_id_of(const world_t *w, size_t i) {
  json_t *id = field(w, i, "command_id");
  return json_is_string(id) ? json_string_value(id) : "";
}

static int64_t source_offset_of(const world_t *w, size_t i) {
  json_t *src = field(w, i, "source");
  assert_string_equal(json_string_value(json_object_get(src, "topic")),
                      T_COMMANDS);
  assert_int_equal(json_integer_value(json_object_get(src, "partition")), 0);
  return (int64_t)json_integer_value(json_object_get(src, "offset"));
}

/* ---- the world ---- */

static void fold(cmd_state_t *s, const sf_event_t *e) {
  cmd_apply_result_t r;
  assert_int_equal(cmd_state_apply(s, e, &r), 0);
  assert_int_equal(r, CMD_APPLY_APPLIED);
}

/* A state with STORE open, PRODUCT in the catalog and ON_HAND of it. */
static cmd_state_t *new_state(void) {
  cmd_state_t *s = NULL;
  assert_int_equal(cmd_state_new(&s), 0);
  sf_event_t e;
  sf_event_init(&e);
  assert_int_equal(
      cmd_decide_store_open(s, STORE, "Lyon", "Part-Dieu", NULL, &e), CMD_OK);
  fold(s, &e);
  sf_event_init(&e);
  assert_int_equal(cmd_decide_product_create(s, PRODUCT, "SKU-1", "Widget",
                                             NULL, "1.50", 3, &e),
                   CMD_OK);
  fold(s, &e);
  sf_event_init(&e);
  cmd_movement_cmd_t m = {STORE, PRODUCT, SF_MOVE_RECEIPT, ON_HAND,
                          NULL, NULL, -1};
  assert_int_equal(cmd_decide_movement(s, &m, &e), CMD_OK);
  fold(s, &e);
  return s;
}

/* A world whose pipeline is instance 0 of instances, with new_state's
 * state or (with_state false) none yet, and whose bus takes up to
 * max_inflight commands at a time. */
/* new_state's, as a rebuild with instances leaves it: the position of the
 * one stock partition recorded, so the partition count (1) is known and
 * instance 0 of 2 owns STORE. */
static cmd_state_t *new_state_one_partition(void) {
  cmd_state_t *s = new_state();
  assert_int_equal(cmd_state_set_log_next(s, false, 0, 0), 0);
  return s;
}

static int setup_world(void **st, bool with_state, unsigned instances,
                       size_t max_inflight) {
  world_t *w = calloc(1, sizeof(*w));
  assert_non_null(w);
  assert_int_equal(mock_kafka_start(&w->kafka), 0);
  assert_int_equal(mock_kafka_topic(&w->kafka, T_COMMANDS, 1), 0);
  assert_int_equal(mock_kafka_topic(&w->kafka, T_RESULTS, 1), 0);
  assert_int_equal(sf_log_new(&w->log, "test", SF_LOG_ERROR, stderr), 0);
  assert_int_equal(uv_loop_init(&w->loop), 0);
  assert_int_equal(sf_command_fingerprint(&w->fp), 0);

  w->cfg.topic_catalog = "t.catalog";
  w->cfg.topic_stock = "t.stock";
  w->cfg.idem_retention_s = 3600;
  cmd_pipeline_sink_t sink = {sink_submit, sink_resync, NULL, w};
  assert_int_equal(cmd_pipeline_new(&w->pl, &w->cfg, NULL, NULL, &sink, w->log),
                   0);
  if (instances > 1) {
    cmd_instances_t ins = {0, instances, ""};
    cmd_pipeline_set_instances(w->pl, &ins);
  }
  if (with_state)
    cmd_pipeline_set_state(w->pl, new_state(), 1);

  const char *ps[][2] = {{"bootstrap.servers", w->kafka.brokers},
                         {"client.id", "test-publisher"},
                         {"linger.ms", "1"}};
  char why[512] = "";
  assert_int_equal(sf_kafka_producer_new(&w->publisher, ps, 3, NULL, w->log,
                                         why, sizeof(why)),
                   0);

  sf_kafka_consumer_opts_t ro = {.brokers = w->kafka.brokers,
                                 .client_id = "test-results"};
  assert_int_equal(sf_kafka_consumer_new(&w->reader, &ro, w->log), 0);
  sf_kafka_tp_t tp = {T_RESULTS, 0, SF_KAFKA_OFFSET_BEGINNING};
  assert_int_equal(sf_kafka_consumer_assign(w->reader, &tp, 1), 0);

  rd_kafka_conf_t *gc = rd_kafka_conf_new();
  assert_int_equal(rd_kafka_conf_set(gc, "bootstrap.servers",
                                     w->kafka.brokers, why, sizeof(why)),
                   RD_KAFKA_CONF_OK);
  assert_int_equal(rd_kafka_conf_set(gc, "group.id", GROUP, why, sizeof(why)),
                   RD_KAFKA_CONF_OK);
  assert_int_equal(
      rd_kafka_conf_set(gc, "enable.auto.commit", "false", why, sizeof(why)),
      RD_KAFKA_CONF_OK);
  assert_int_equal(rd_kafka_conf_set(gc, "log_level", "3", why, sizeof(why)),
                   RD_KAFKA_CONF_OK);
  w->group = rd_kafka_new(RD_KAFKA_CONSUMER, gc, why, sizeof(why));
  assert_non_null(w->group);

  w->max_inflight = max_inflight;
  start_bus(w);
  *st = w;
  return 0;
}

static int setup(void **st) { return setup_world(st, true, 1, 8); }

/* Instance 0 of 2 before its first rebuild: no state, so no stock
 * partition count, so no owner known for any store. */
static int setup_no_state_yet(void **st) {
  return setup_world(st, false, 2, 8);
}

static int setup_small_inflight(void **st) {
  return setup_world(st, true, 1, SMALL_INFLIGHT);
}

static int teardown(void **st) {
  world_t *w = *st;
  /* the pipeline answers every held unit before the bus goes, as the
   * lanes do at a stop */
  held_units_cancel(&w->held, w->pl);
  cmd_bus_destroy(w->bus);
  uv_run(&w->loop, UV_RUN_NOWAIT);
  cmd_pipeline_destroy(w->pl);
  assert_int_equal(uv_loop_close(&w->loop), 0); /* every handle closed */
  rd_kafka_destroy(w->group);
  sf_kafka_consumer_destroy(w->reader);
  sf_kafka_producer_destroy(w->publisher);
  for (size_t i = 0; i < w->n_results; i++)
    json_decref(w->results[i].json);
  sf_log_destroy(w->log);
  mock_kafka_stop(&w->kafka);
  free(w);
  return 0;
}

/* ---- the tests ---- */

static void test_command_answered_then_committed(void **st) {
  world_t *w = *st;
  sf_command_t c = command(CMD1, STORE, SF_MOVE_RECEIPT, 5);
  c.has_correlation_id = true;
  snprintf(c.correlation_id, sizeof(c.correlation_id), "corr-1");
  c.has_reference = true;
  snprintf(c.reference, sizeof(c.reference), "PO-7");
  publish(w, &c);

  /* decided and handed to the sink; no result and no commit before the
   * answer */
  run_until(w, &w->held.submitted, 1);
  assert_int_equal(w->held.units[0]->n_msgs, 1);
  assert_string_equal(w->held.units[0]->msgs->topic, "t.stock");
  assert_string_equal(w->held.units[0]->msgs->key, STORE);
  assert_int_equal(w->received, 1);
  assert_int_equal(w->n_results, 0);
  assert_int_equal(committed(w), RD_KAFKA_OFFSET_INVALID);

  held_units_finish(&w->held, w->pl, 0, 41);
  run_until(w, &w->n_results, 1);
  assert_string_equal(w->results[0].key, STORE);
  assert_int_equal(status_of(w, 0), 201);
  assert_string_equal(command_id_of(w, 0), CMD1);
  assert_string_equal(json_string_value(field(w, 0, "correlation_id")),
                      "corr-1");
  assert_int_equal(source_offset_of(w, 0), 0);
  /* the same answer as POST /v1/stores/{id}/transactions */
  assert_string_equal(body_str(w, 0, "store_id"), STORE);
  assert_string_equal(body_str(w, 0, "product_id"), PRODUCT);
  assert_string_equal(body_str(w, 0, "type"), "receipt");
  assert_string_equal(body_str(w, 0, "reference"), "PO-7");
  assert_string_equal(body_str(w, 0, "position"), "stock-0-41");
  assert_int_equal(json_integer_value(
                       json_object_get(field(w, 0, "body"), "on_hand")),
                   ON_HAND + 5);

  /* past the command, once its result is out */
  wait_committed(w, 1);
  cmd_bus_stats_t s;
  cmd_bus_stats(w->bus, &s);
  assert_int_equal(s.received, 1);
  assert_int_equal(s.malformed, 0);
  assert_int_equal(s.results, 1);
  assert_int_equal(w->held.submitted, 1);
}

static void test_malformed_answered_400_intake_goes_on(void **st) {
  world_t *w = *st;
  /* not Avro at all */
  const char garbage[] = "{\"not\": \"a StockCommand\"}";
  publish_raw(w, "k-garbage", garbage, sizeof(garbage) - 1);
  /* a StockCommand behind another schema's fingerprint */
  sf_command_t c = command(CMD2, STORE, SF_MOVE_RECEIPT, 1);
  uint8_t buf[4096];
  size_t len = encode(w, &c, buf, sizeof(buf));
  buf[5] ^= 0x40;
  publish_raw(w, "k-schema", buf, len);
  /* one cut short */
  buf[5] ^= 0x40;
  publish_raw(w, "k-short", buf, len / 2);
  /* no value at all (a tombstone) */
  publish_raw(w, "k-null", NULL, 0);
  /* then a valid one */
  sf_command_t ok = command(CMD3, STORE, SF_MOVE_SALE, 2);
  publish(w, &ok);

  run_until(w, &w->held.submitted, 1);
  run_until(w, &w->n_results, 4);
  const char *keys[] = {"k-garbage", "k-schema", "k-short", "k-null"};
  const int why[] = {SF_EPARSE, SF_ESCHEMA, SF_ETRUNCATED, SF_ETRUNCATED};
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal(w->results[i].key, keys[i]);
    assert_int_equal(status_of(w, i), 400);
    assert_true(json_is_null(field(w, i, "command_id")));
    assert_string_equal(body_str(w, i, "code"), "malformed_command");
    assert_non_null(strstr(body_str(w, i, "detail"), sf_strerror(why[i])));
    assert_int_equal(source_offset_of(w, i), (int64_t)i);
  }
  assert_int_equal(w->malformed, 4);
  assert_int_equal(w->received, 5);

  held_units_finish(&w->held, w->pl, 0, 7);
  run_until(w, &w->n_results, 5);
  assert_int_equal(status_of(w, 4), 201);
  assert_string_equal(command_id_of(w, 4), CMD3);
  assert_string_equal(body_str(w, 4, "type"), "sale");
  wait_committed(w, 5);
}

static void test_redelivery_applied_once(void **st) {
  world_t *w = *st;
  sf_command_t c = command(CMD1, STORE, SF_MOVE_SALE, 4);
  /* delivered twice while the first delivery is still committing: the
   * second waits for the first's answer */
  publish(w, &c);
  publish(w, &c);
  run_until(w, &w->received, 2);
  run_until(w, &w->held.submitted, 1);
  held_units_finish(&w->held, w->pl, 0, 3);
  run_until(w, &w->n_results, 2);
  /* and once more after the answer: replayed at once */
  publish(w, &c);
  run_until(w, &w->n_results, 3);
  char *first = json_dumps(field(w, 0, "body"), JSON_COMPACT | JSON_SORT_KEYS);
  assert_non_null(first);
  assert_string_equal(body_str(w, 0, "position"), "stock-0-3");
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(status_of(w, i), 201);
    assert_string_equal(command_id_of(w, i), CMD1);
    assert_int_equal(source_offset_of(w, i), (int64_t)i);
    char *body =
        json_dumps(field(w, i, "body"), JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(body);
    assert_string_equal(body, first);
    free(body);
  }
  free(first);
  /* the same command id for another command: refused, nothing written */
  sf_command_t other = command(CMD1, STORE, SF_MOVE_SALE, 5);
  publish(w, &other);
  run_until(w, &w->n_results, 4);
  assert_int_equal(status_of(w, 3), 422);
  assert_string_equal(body_str(w, 3, "code"), "idempotency_key_reused");

  assert_int_equal(w->held.submitted, 1); /* applied once */
  cmd_pipeline_stats_t ps;
  cmd_pipeline_stats(w->pl, &ps);
  assert_int_equal(ps.accepted, 1);
  assert_int_equal(ps.replayed, 2);
  cmd_stock_row_t row;
  cmd_state_stock(cmd_pipeline_state(w->pl), STORE, PRODUCT, &row);
  assert_int_equal(row.on_hand, ON_HAND - 4);
  wait_committed(w, 4);
}

static void test_refused_by_the_rules(void **st) {
  world_t *w = *st;
  sf_command_t oversell = command(CMD1, STORE, SF_MOVE_SALE, ON_HAND + 1);
  sf_command_t no_store = command(CMD2, STORE_UNKNOWN, SF_MOVE_RECEIPT, 1);
  sf_command_t no_product = command(CMD3, STORE, SF_MOVE_RECEIPT, 1);
  snprintf(no_product.product_id, sizeof(no_product.product_id), "%s",
           PRODUCT_UNKNOWN);
  sf_command_t invalid = command(CMD4, STORE, SF_MOVE_RECEIPT, 0);
  publish(w, &oversell);
  publish(w, &no_store);
  publish(w, &no_product);
  publish(w, &invalid);
  run_until(w, &w->n_results, 4);
  const struct {
    const char *id, *key, *code;
    int status;
  } want[] = {{CMD1, STORE, "insufficient_stock", 409},
              {CMD2, STORE_UNKNOWN, "not_found", 404},
              {CMD3, STORE, "not_found", 404},
              {CMD4, STORE, "validation_failed", 422}};
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal(command_id_of(w, i), want[i].id);
    assert_string_equal(w->results[i].key, want[i].key);
    assert_int_equal(status_of(w, i), want[i].status);
    assert_string_equal(body_str(w, i, "code"), want[i].code);
  }
  assert_non_null(strstr(body_str(w, 1, "detail"), STORE_UNKNOWN));
  assert_non_null(strstr(body_str(w, 2, "detail"), PRODUCT_UNKNOWN));
  assert_int_equal(w->held.submitted, 0); /* nothing reached the sink */
  cmd_stock_row_t row;
  cmd_state_stock(cmd_pipeline_state(w->pl), STORE, PRODUCT, &row);
  assert_int_equal(row.on_hand, ON_HAND);
  wait_committed(w, 4);
}

static void test_commit_waits_for_earlier_commands(void **st) {
  world_t *w = *st;
  sf_command_t c1 = command(CMD1, STORE, SF_MOVE_RECEIPT, 1);
  publish(w, &c1);
  run_until(w, &w->held.submitted, 1); /* offset 0, not answered yet */
  /* a later command refused at once: its result goes out first */
  sf_command_t c2 = command(CMD2, STORE, SF_MOVE_SALE, ON_HAND + 5);
  publish(w, &c2);
  run_until(w, &w->n_results, 1);
  assert_string_equal(command_id_of(w, 0), CMD2);
  assert_int_equal(source_offset_of(w, 0), 1);
  /* once the thread takes the next command it has done the commit that
   * followed that result: still nothing, the first is unanswered */
  sf_command_t c3 = command(CMD3, STORE, SF_MOVE_SALE, ON_HAND + 6);
  publish(w, &c3);
  run_until(w, &w->received, 3);
  assert_int_equal(committed(w), RD_KAFKA_OFFSET_INVALID);
  run_until(w, &w->n_results, 2);
  assert_string_equal(command_id_of(w, 1), CMD3);
  /* the first answered: past all three */
  held_units_finish(&w->held, w->pl, 0, 50);
  run_until(w, &w->n_results, 3);
  assert_string_equal(command_id_of(w, 2), CMD1);
  wait_committed(w, 3);
}

static void test_result_not_acknowledged_not_committed(void **st) {
  world_t *w = *st;
  sf_command_t c = command(CMD1, STORE, SF_MOVE_RECEIPT, 5);
  publish(w, &c);
  run_until(w, &w->held.submitted, 1);
  /* the broker refuses the result for good (nothing else produces now) */
  rd_kafka_mock_push_request_errors(w->kafka.mc, MOCK_API_PRODUCE, 1,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  held_units_finish(&w->held, w->pl, 0, 9);
  /* the metrics say the intake commits nothing more until a restart */
  run_until(w, &w->commits_blocked, 1);
  /* the bus's thread has tried, awaited and committed what it could */
  destroy_bus_and_drain(w);
  assert_int_equal(w->n_results, 0);
  assert_int_equal(committed(w), RD_KAFKA_OFFSET_INVALID);
  /* so the command comes again at the next start: answered from its
   * first answer, not applied twice, and now committed */
  start_bus(w);
  run_until(w, &w->n_results, 1);
  assert_int_equal(status_of(w, 0), 201);
  assert_string_equal(command_id_of(w, 0), CMD1);
  assert_string_equal(body_str(w, 0, "position"), "stock-0-9");
  assert_int_equal(w->held.submitted, 1);
  wait_committed(w, 1);
}

/* Two receipts, CMD1 then CMD2, held by the sink; then the intake stops
 * with both in flight. */
static void stop_with_two_in_flight(world_t *w) {
  sf_command_t c1 = command(CMD1, STORE, SF_MOVE_RECEIPT, 1);
  sf_command_t c2 = command(CMD2, STORE, SF_MOVE_RECEIPT, 2);
  publish(w, &c1);
  publish(w, &c2);
  run_until(w, &w->held.submitted, 2);
  cmd_bus_stop_intake(w->bus);
}

static void test_stop_with_commands_in_flight(void **st) {
  world_t *w = *st;
  stop_with_two_in_flight(w);
  /* not taken any more: left for the next start */
  sf_command_t c3 = command(CMD3, STORE, SF_MOVE_RECEIPT, 3);
  publish(w, &c3);
  /* the answers of what is in flight still go out, while the bus lives
   * and as it goes */
  held_units_finish(&w->held, w->pl, 0, 20);
  run_until(w, &w->n_results, 1);
  assert_int_equal(w->held.submitted, 2);
  held_units_finish(&w->held, w->pl, 0, 21);
  destroy_bus_and_drain(w);
  assert_int_equal(w->n_results, 2);
  assert_string_equal(command_id_of(w, 0), CMD1);
  assert_string_equal(command_id_of(w, 1), CMD2);
  assert_int_equal(status_of(w, 0), 201);
  assert_int_equal(status_of(w, 1), 201);
  assert_int_equal(w->held.submitted, 2);
  assert_int_equal(committed(w), 2); /* past the answered two only */

  /* the next start takes the group's offset: the third, and only it */
  start_bus(w);
  run_until(w, &w->held.submitted, 3);
  assert_int_equal(w->received, 1);
  held_units_finish(&w->held, w->pl, 0, 22);
  run_until(w, &w->n_results, 3);
  assert_string_equal(command_id_of(w, 2), CMD3);
  assert_int_equal(source_offset_of(w, 2), 2);
  wait_committed(w, 3);
}

static void test_stop_leaves_what_was_not_written(void **st) {
  world_t *w = *st;
  stop_with_two_in_flight(w);
  /* the first commits; the second never does: the lanes fail what they
   * still hold at a stop, and the pipeline answers it 503 */
  held_units_finish(&w->held, w->pl, 0, 30);
  held_units_finish(&w->held, w->pl, SF_ECANCELED, 0);
  destroy_bus_and_drain(w);
  /* no final 503 for a command that was not applied: its offset stays
   * uncommitted */
  assert_int_equal(w->n_results, 1);
  assert_string_equal(command_id_of(w, 0), CMD1);
  assert_int_equal(status_of(w, 0), 201);
  assert_int_equal(committed(w), 1);

  /* the next start (after the rebuild a restart makes: a fresh state
   * stands in for it) applies it */
  cmd_pipeline_set_state(w->pl, new_state(), 2);
  start_bus(w);
  run_until(w, &w->held.submitted, 3);
  held_units_finish(&w->held, w->pl, 0, 31);
  run_until(w, &w->n_results, 2);
  assert_string_equal(command_id_of(w, 1), CMD2);
  assert_int_equal(status_of(w, 1), 201);
  assert_string_equal(body_str(w, 1, "position"), "stock-0-31");
  wait_committed(w, 2);
}

static void test_command_waits_for_the_state(void **st) {
  world_t *w = *st;
  sf_command_t c = command(CMD1, STORE, SF_MOVE_RECEIPT, 5);
  publish(w, &c);
  /* a malformed one without a key names no store: instance 0 answers it
   * at once, so the thread has a result to commit after */
  const char garbage[] = "not a StockCommand";
  publish_raw(w, "", garbage, sizeof(garbage) - 1);
  run_until(w, &w->n_results, 1);
  assert_int_equal(status_of(w, 0), 400);
  assert_int_equal(source_offset_of(w, 0), 1);

  /* the first waits for the state through several retries: not decided,
   * not answered (no 503, no skip), not committed past */
  run_for(w, QUIET_MS);
  assert_int_equal(w->received, 2);
  assert_int_equal(w->held.submitted, 0);
  assert_int_equal(w->n_results, 1);
  assert_int_equal(committed(w), RD_KAFKA_OFFSET_INVALID);

  /* the state comes: decided, answered once, committed past both */
  cmd_pipeline_set_state(w->pl, new_state_one_partition(), 1);
  run_until(w, &w->held.submitted, 1);
  held_units_finish(&w->held, w->pl, 0, 60);
  run_until(w, &w->n_results, 2);
  assert_string_equal(command_id_of(w, 1), CMD1);
  assert_int_equal(status_of(w, 1), 201);
  assert_int_equal(source_offset_of(w, 1), 0);
  assert_string_equal(body_str(w, 1, "position"), "stock-0-60");
  wait_committed(w, 2);
  destroy_bus_and_drain(w);
  assert_int_equal(w->n_results, 2);
  assert_int_equal(w->received, 2);
  assert_int_equal(w->held.submitted, 1);
  cmd_stock_row_t row;
  cmd_state_stock(cmd_pipeline_state(w->pl), STORE, PRODUCT, &row);
  assert_int_equal(row.on_hand, ON_HAND + 5);
}

static void test_intake_takes_at_most_max_inflight(void **st) {
  world_t *w = *st;
  const char *ids[] = {CMD1, CMD2, CMD3, CMD4, CMD5};
  const size_t n = sizeof(ids) / sizeof(ids[0]);
  for (size_t i = 0; i < n; i++) {
    sf_command_t c = command(ids[i], STORE, SF_MOVE_RECEIPT, (int64_t)i + 1);
    publish(w, &c);
  }
  /* the sink holds every unit: the intake takes SMALL_INFLIGHT commands,
   * then one more each time one of them is answered */
  for (size_t answered = 0; answered < n; answered++) {
    size_t taken = answered + SMALL_INFLIGHT;
    if (taken > n)
      taken = n;
    run_until(w, &w->held.submitted, taken);
    run_for(w, QUIET_MS / 4);
    assert_int_equal(w->received, taken);
    assert_int_equal(w->held.submitted, taken);
    assert_int_equal(w->held.n, taken - answered);
    held_units_finish(&w->held, w->pl, 0, 70 + (int64_t)answered);
    run_until(w, &w->n_results, answered + 1);
  }
  /* each taken once, applied once and answered once, in order */
  wait_committed(w, (int64_t)n);
  destroy_bus_and_drain(w);
  assert_int_equal(w->n_results, n);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(command_id_of(w, i), ids[i]);
    assert_int_equal(status_of(w, i), 201);
    assert_int_equal(source_offset_of(w, i), (int64_t)i);
  }
  assert_int_equal(w->received, n);
  assert_int_equal(w->held.submitted, n);
  cmd_pipeline_stats_t ps;
  cmd_pipeline_stats(w->pl, &ps);
  assert_int_equal(ps.accepted, n);
  cmd_stock_row_t row;
  cmd_state_stock(cmd_pipeline_state(w->pl), STORE, PRODUCT, &row);
  assert_int_equal(row.on_hand, ON_HAND + 1 + 2 + 3 + 4 + 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_command_answered_then_committed,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_malformed_answered_400_intake_goes_on, setup, teardown),
      cmocka_unit_test_setup_teardown(test_redelivery_applied_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_refused_by_the_rules, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_commit_waits_for_earlier_commands,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_result_not_acknowledged_not_committed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stop_with_commands_in_flight,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_stop_leaves_what_was_not_written,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_command_waits_for_the_state,
                                      setup_no_state_yet, teardown),
      cmocka_unit_test_setup_teardown(test_intake_takes_at_most_max_inflight,
                                      setup_small_inflight, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of cmd_pipeline over an in-memory sink: no HTTP, no Kafka.
 * Commands enter as the bus intake's and the expiry sweeper's do
 * (cmd_pipeline_begin_bus / begin_system), are decided against a real
 * cmd_state, committed as units the test holds, and answered when the test
 * hands the units back: the position in the answer, the Idempotency-Key
 * replay and reuse rules, 503 while paused, stopped or after a failed
 * commit, the resync request when a fold disagrees with the decision, and
 * (instances) a bus command that waits for the tail once before a 404. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmd_pipeline.h"
#include "cmd_stock.h"
#include "held_units.h"
#include "sf/err.h"

#define STORE "0190a1b2-0000-7000-8000-0000000000a1"
#define PRODUCT "0190a1b2-0000-7000-8000-0000000000b1"

typedef struct world {
  cmd_settings_t cfg;
  sf_log_t *log;
  cmd_pipeline_t *pl;
  held_units_t held; /* the sink's */
  int resyncs;
  /* the last answer */
  int answers;
  int status;
  char body[2048];
  /* instances: the parked request (sink park) and the catch-up callbacks */
  int parks, parked, agains;
  void (*park_done)(void *, bool);
  void *park_ud;
  cmd_req_t *last_req;
} world_t;

static bool sink_park(void *ud, void (*done)(void *, bool), void *done_ud) {
  world_t *w = ud;
  assert_null(w->park_done); /* one at a time in these tests */
  w->parks++;
  w->park_done = done;
  w->park_ud = done_ud;
  return true;
}

static void parked_cb(void *ud) {
  world_t *w = ud;
  w->parked++;
}

static void again_cb(void *ud) {
  world_t *w = ud;
  w->agains++;
}

static const cmd_catch_up_cbs_t catch_up_cbs = {parked_cb, again_cb};

static void sink_submit(void *ud, cmd_unit_t *u) {
  world_t *w = ud;
  held_units_add(&w->held, u);
}

static void sink_resync(void *ud, const char *reason) {
  world_t *w = ud;
  assert_non_null(reason);
  w->resyncs++;
}

static void answer_cb(void *ud, int status, const char *body) {
  world_t *w = ud;
  w->answers++;
  w->status = status;
  snprintf(w->body, sizeof(w->body), "%s", body);
}

static int setup(void **st) {
  world_t *w = calloc(1, sizeof(*w));
  assert_non_null(w);
  w->cfg.topic_catalog = "t.catalog";
  w->cfg.topic_stock = "t.stock";
  w->cfg.idem_retention_s = 3600;
  assert_int_equal(sf_log_new(&w->log, "test", SF_LOG_OFF, stderr), 0);
  cmd_pipeline_sink_t sink = {sink_submit, sink_resync, NULL, w};
  assert_int_equal(cmd_pipeline_new(&w->pl, &w->cfg, NULL, NULL, &sink, w->log), 0);
  *st = w;
  return 0;
}

/* Makes w's pipeline instance index of 2, with a sink that parks. */
static void become_instance(world_t *w, unsigned index) {
  cmd_pipeline_destroy(w->pl);
  cmd_pipeline_sink_t sink = {sink_submit, sink_resync, sink_park, w};
  assert_int_equal(
      cmd_pipeline_new(&w->pl, &w->cfg, NULL, NULL, &sink, w->log), 0);
  cmd_instances_t ins = {index, 2, ""};
  cmd_pipeline_set_instances(w->pl, &ins);
}

static int teardown(void **st) {
  world_t *w = *st;
  /* every submitted unit must come back before the pipeline goes */
  held_units_cancel(&w->held, w->pl);
  cmd_pipeline_destroy(w->pl);
  sf_log_destroy(w->log);
  free(w);
  return 0;
}

static void give_state(world_t *w) {
  cmd_state_t *s = NULL;
  assert_int_equal(cmd_state_new(&s), 0);
  cmd_pipeline_set_state(w->pl, s, 1);
}

/* A bus command that opens STORE under key: decided, committed, held. */
static void open_store(world_t *w, const char *key, const char *hash) {
  cmd_req_t *c = cmd_pipeline_begin_bus(w->pl, key, hash, NULL, answer_cb, w);
  assert_non_null(c);
  sf_event_t e;
  cmd_pipeline_envelope(w->pl, c, &e, NULL);
  assert_string_equal(e.idempotency_key, key);
  assert_int_equal(cmd_decide_store_open(cmd_pipeline_state(w->pl), STORE,
                                         "Lyon", "Part-Dieu", NULL, &e),
                   CMD_OK);
  cmd_outgoing_t o = {&e, true, STORE};
  cmd_pipeline_commit(w->pl, c, &o, 1);
}

/* A system command deciding and committing one stock or order event. */
static void commit_one(world_t *w, sf_event_t *e, cmd_verdict_t verdict,
                       bool catalog, const char *key) {
  assert_int_equal(verdict, CMD_OK);
  cmd_outgoing_t o = {e, catalog, key};
  cmd_pipeline_commit(w->pl, w->last_req, &o, 1);
}

static cmd_req_t *system_req(world_t *w, sf_event_t *e) {
  w->last_req = cmd_pipeline_begin_system(w->pl, answer_cb, w);
  assert_non_null(w->last_req);
  cmd_pipeline_envelope(w->pl, w->last_req, e, NULL);
  return w->last_req;
}

static void no_state_answers_503(void **st) {
  world_t *w = *st;
  assert_false(cmd_pipeline_writable(w->pl));
  assert_null(cmd_pipeline_begin_bus(w->pl, "k1", "h1", NULL, answer_cb, w));
  assert_int_equal(w->answers, 1);
  assert_int_equal(w->status, 503);
  assert_non_null(strstr(w->body, "\"unavailable\""));
  /* a system command is simply not started */
  assert_null(cmd_pipeline_begin_system(w->pl, answer_cb, w));
  assert_int_equal(w->answers, 1);
  assert_int_equal(w->held.n, 0);
}

static void commit_answers_with_position_after_the_unit(void **st) {
  world_t *w = *st;
  give_state(w);
  assert_true(cmd_pipeline_writable(w->pl));
  open_store(w, "k-open", "h-open");
  /* folded at once: the next command sees the store */
  cmd_store_view_t sv;
  assert_true(cmd_state_store(cmd_pipeline_state(w->pl), STORE, &sv));
  assert_int_equal(w->held.n, 1);
  assert_int_equal(w->held.units[0]->n_msgs, 1);
  assert_string_equal(w->held.units[0]->msgs->topic, "t.catalog");
  assert_string_equal(w->held.units[0]->msgs->key, STORE);
  assert_int_equal(w->answers, 0); /* nothing before the commit */
  cmd_pipeline_stats_t s;
  cmd_pipeline_stats(w->pl, &s);
  assert_int_equal(s.pending, 1);
  held_units_finish(&w->held, w->pl, 0, 41);
  assert_int_equal(w->answers, 1);
  assert_int_equal(w->status, 201);
  assert_non_null(strstr(w->body, "\"position\":\"catalog-0-41\""));
  assert_non_null(strstr(w->body, STORE));
  cmd_pipeline_stats(w->pl, &s);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.accepted, 1);
}

static void same_key_replays_other_body_refused(void **st) {
  world_t *w = *st;
  give_state(w);
  open_store(w, "k-open", "h-open");
  /* while in flight: 409, nothing new */
  assert_null(
      cmd_pipeline_begin_bus(w->pl, "k-open", "h-open", NULL, answer_cb, w));
  assert_int_equal(w->status, 409);
  assert_non_null(strstr(w->body, "idempotency_key_in_flight"));
  held_units_finish(&w->held, w->pl, 0, 7);
  char first[2048];
  snprintf(first, sizeof(first), "%s", w->body);
  /* the same key and command: the first answer, byte for byte */
  assert_null(
      cmd_pipeline_begin_bus(w->pl, "k-open", "h-open", NULL, answer_cb, w));
  assert_int_equal(w->status, 201);
  assert_string_equal(w->body, first);
  /* the same key with another command: 422, nothing written */
  assert_null(
      cmd_pipeline_begin_bus(w->pl, "k-open", "h-other", NULL, answer_cb, w));
  assert_int_equal(w->status, 422);
  assert_non_null(strstr(w->body, "idempotency_key_reused"));
  assert_int_equal(w->held.n, 0);
  cmd_pipeline_stats_t s;
  cmd_pipeline_stats(w->pl, &s);
  assert_int_equal(s.replayed, 1);
  assert_int_equal(s.rejected, 1);
}

static void failed_commit_answers_503_and_frees_the_key(void **st) {
  world_t *w = *st;
  give_state(w);
  open_store(w, "k-fail", "h-fail");
  held_units_finish(&w->held, w->pl, SF_EKAFKA, 0);
  assert_int_equal(w->status, 503);
  assert_non_null(strstr(w->body, "did not commit"));
  cmd_pipeline_stats_t s;
  cmd_pipeline_stats(w->pl, &s);
  assert_int_equal(s.failed, 1);
  /* the key is free again: a retry is a new attempt, not a replay (the
   * lanes rebuild the state; here a fresh one stands in for it) */
  give_state(w);
  open_store(w, "k-fail", "h-fail");
  assert_int_equal(w->held.n, 1);
  held_units_finish(&w->held, w->pl, 0, 3);
  assert_int_equal(w->status, 201);
}

static void paused_and_stopped_answer_503(void **st) {
  world_t *w = *st;
  give_state(w);
  cmd_pipeline_pause(w->pl);
  assert_true(cmd_pipeline_resyncing(w->pl));
  assert_null(cmd_pipeline_begin_bus(w->pl, "k", "h", NULL, answer_cb, w));
  assert_int_equal(w->status, 503);
  assert_non_null(strstr(w->body, "rebuilding"));
  give_state(w); /* the rebuilt state: writes resume */
  assert_true(cmd_pipeline_writable(w->pl));
  cmd_pipeline_stop(w->pl, "fenced by a newer instance");
  assert_string_equal(cmd_pipeline_stopped(w->pl),
                      "fenced by a newer instance");
  assert_null(cmd_pipeline_begin_bus(w->pl, "k", "h", NULL, answer_cb, w));
  assert_int_equal(w->status, 503);
  assert_non_null(strstr(w->body, "fenced by a newer instance"));
  assert_null(cmd_pipeline_begin_system(w->pl, answer_cb, w));
  assert_int_equal(w->held.n, 0);
}

/* The lanes order units across lanes by the streams their messages name
 * (cmd_lanes.h): a stock event names its store x product, an order event
 * its order and each line's store x product, a catalog event none. */
static void messages_name_their_streams(void **st) {
  world_t *w = *st;
  give_state(w);
  open_store(w, "k-open", "h-open");
  assert_int_equal(w->held.units[0]->msgs->n_streams, 0);
  held_units_finish(&w->held, w->pl, 0, 1);
  sf_event_t e;
  const cmd_state_t *s = cmd_pipeline_state(w->pl);
  system_req(w, &e);
  commit_one(w,
             &e,
             cmd_decide_product_create(s, PRODUCT, "SKU-1", "Tea", NULL,
                                       "1.00", 0, &e),
             true, PRODUCT);
  held_units_finish(&w->held, w->pl, 0, 2);
  system_req(w, &e);
  cmd_movement_cmd_t mv = {STORE, PRODUCT, SF_MOVE_RECEIPT, 5, NULL, NULL, -1};
  commit_one(w, &e, cmd_decide_movement(s, &mv, &e), false, STORE);
  assert_int_equal(w->held.n, 1);
  const cmd_msg_t *m = w->held.units[0]->msgs;
  assert_int_equal(m->n_streams, 1);
  assert_true(m->streams[0] == cmd_stream_hash(STORE, PRODUCT));
  held_units_finish(&w->held, w->pl, 0, 3);
  system_req(w, &e);
  sf_order_line_t line = {.quantity = 2}, out[1];
  snprintf(line.product_id, sizeof(line.product_id), "%s", PRODUCT);
  bool shorts[1];
  const char *order = "0190a1b2-0000-7000-8000-0000000000c1";
  commit_one(w, &e,
             cmd_decide_order_place(s, STORE, order, &line, 1, NULL, out,
                                    shorts, &e),
             false, STORE);
  assert_int_equal(w->held.n, 1);
  m = w->held.units[0]->msgs;
  assert_int_equal(m->n_streams, 2);
  assert_true(m->streams[0] == cmd_stream_hash("order", order));
  assert_true(m->streams[1] == cmd_stream_hash(STORE, PRODUCT));
  held_units_finish(&w->held, w->pl, 0, 4);
  assert_int_equal(w->status, 201);
}

static void fold_disagreement_asks_for_a_resync(void **st) {
  world_t *w = *st;
  give_state(w);
  /* an update of a product the state has never seen: the fold refuses
   * it, as it would any decision that disagrees with the state */
  cmd_req_t *c = cmd_pipeline_begin_system(w->pl, answer_cb, w);
  assert_non_null(c);
  sf_event_t e;
  cmd_pipeline_envelope(w->pl, c, &e, NULL);
  e.type = SF_EV_PRODUCT_UPDATED;
  snprintf(e.product_id, sizeof(e.product_id), "%s", PRODUCT);
  e.stream_version = 2;
  cmd_outgoing_t o = {&e, true, PRODUCT};
  cmd_pipeline_commit(w->pl, c, &o, 1);
  assert_int_equal(w->held.n, 0); /* nothing submitted */
  assert_int_equal(w->answers, 1);
  assert_int_equal(w->status, 500);
  assert_int_equal(w->resyncs, 1);
  assert_true(cmd_pipeline_resyncing(w->pl));
  assert_false(cmd_pipeline_writable(w->pl));
}

static void expired_keys_are_forgotten(void **st) {
  world_t *w = *st;
  assert_int_equal(cmd_pipeline_expire_keys(w->pl), 0); /* no state: 0 */
  w->cfg.idem_retention_s = -1;                         /* every answer is already expired */
  give_state(w);
  open_store(w, "k-old", "h-old");
  held_units_finish(&w->held, w->pl, 0, 1);
  assert_int_equal(cmd_pipeline_expire_keys(w->pl), 1);
  /* the key is new again: another command may use it */
  cmd_req_t *c =
      cmd_pipeline_begin_bus(w->pl, "k-old", "h-new", NULL, answer_cb, w);
  assert_non_null(c);
  cmd_pipeline_invalid(w->pl, c, "answered by the test");
  assert_int_equal(w->status, 422);
}

/* A bus command under key: a receipt of 5 for STORE (which no test here
 * opens), allowed to wait for the tail when allow is true. */
static void bus_receipt(world_t *w, const char *key, bool allow) {
  cmd_req_t *c = cmd_pipeline_begin_bus(w->pl, key, "h", NULL, answer_cb, w);
  assert_non_null(c);
  if (allow)
    cmd_req_allow_catch_up(c, &catch_up_cbs);
  /* c is freed by its answer, or by the park */
  cmd_stock_movement(w->pl, c, STORE, PRODUCT, SF_MOVE_RECEIPT, 5, NULL, NULL,
                     -1);
}

/* A bus command for a store this instance has not read yet waits for the
 * tail (the sink's park) instead of a 404: nothing is answered, its key is
 * released, its origin hears parked then again, and the command started
 * anew (not allowed to park twice) is answered 404 if still unknown. */
static void bus_command_waits_for_the_tail_once(void **st) {
  world_t *w = *st;
  become_instance(w, 1); /* not the catalog's writer */
  give_state(w);
  bus_receipt(w, "k-new", true);
  assert_int_equal(w->parks, 1);
  assert_int_equal(w->parked, 1);
  assert_int_equal(w->answers, 0);
  assert_int_equal(w->agains, 0);
  cmd_idem_view_t v;
  assert_false(cmd_state_idem_get(cmd_pipeline_state(w->pl), "k-new", &v));
  w->park_done(w->park_ud, true);
  w->park_done = NULL;
  assert_int_equal(w->agains, 1);
  assert_int_equal(w->answers, 0);
  bus_receipt(w, "k-new", false); /* started anew, as cmd_bus does */
  assert_int_equal(w->parks, 1);
  assert_int_equal(w->answers, 1);
  assert_int_equal(w->status, 404);
  /* without cmd_req_allow_catch_up a bus command is answered at once */
  bus_receipt(w, "k-other", false);
  assert_int_equal(w->parks, 1);
  assert_int_equal(w->answers, 2);
  assert_int_equal(w->status, 404);
}

/* The instance that writes the catalog knows every store and product:
 * a bus command it cannot find is answered 404 without waiting. */
static void catalog_writer_does_not_wait(void **st) {
  world_t *w = *st;
  become_instance(w, 0);
  give_state(w);
  bus_receipt(w, "k0", true);
  assert_int_equal(w->parks, 0);
  assert_int_equal(w->parked, 0);
  assert_int_equal(w->answers, 1);
  assert_int_equal(w->status, 404);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(no_state_answers_503, setup, teardown),
      cmocka_unit_test_setup_teardown(
          commit_answers_with_position_after_the_unit, setup, teardown),
      cmocka_unit_test_setup_teardown(same_key_replays_other_body_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          failed_commit_answers_503_and_frees_the_key, setup, teardown),
      cmocka_unit_test_setup_teardown(paused_and_stopped_answer_503, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(messages_name_their_streams, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(fold_disagreement_asks_for_a_resync,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(expired_keys_are_forgotten, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(bus_command_waits_for_the_tail_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(catalog_writer_does_not_wait, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of cmd_lanes: partitioning compatible with the Java client,
 * the order and barriers of units over lanes, and the recovery sequence
 * (pause, drain, rebuild, resume; fatal), over an in-memory sink. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmd_lanes.h"
#include "sf/err.h"

#define TOPIC_STOCK "t.stock"
#define TOPIC_CATALOG "t.catalog"
/* murmur2 (Kafka's Utils.murmur2) % 6: "store-a" -> 0 (lane 0 of 2),
 * "0190a1b2-0000-7000-8000-000000000001" -> 3 (lane 1 of 2) */
#define KEY_LANE0 "store-a"
#define KEY_LANE1 "0190a1b2-0000-7000-8000-000000000001"

typedef struct fake_sink {
  cmd_sink_t base;
  struct world *world;
  unsigned lane;
  cmd_writer_cbs_t cbs;
  cmd_unit_t *handed[64];
  size_t n_handed;
  uint64_t accepted_gen;
  int holds;
} fake_sink_t;

typedef struct world {
  uv_loop_t loop;
  cmd_lanes_t *lanes;
  fake_sink_t *sinks[4];
  /* what came back */
  cmd_unit_t *done[64];
  size_t n_done;
  int states, resyncs, fatals, rebuilds;
  atomic_bool hold_rebuild; /* the fake rebuild waits while true */
  uint64_t generation;
} world_t;

static void fake_submit(cmd_sink_t *s, cmd_unit_t *u) {
  fake_sink_t *f = (fake_sink_t *)s;
  assert_true(f->n_handed < 64);
  f->handed[f->n_handed++] = u;
}
static void fake_hold(cmd_sink_t *s) { ((fake_sink_t *)s)->holds++; }
static void fake_accept(cmd_sink_t *s, uint64_t g) {
  ((fake_sink_t *)s)->accepted_gen = g;
}
static void fake_stats(cmd_sink_t *s, cmd_writer_stats_t *out) {
  (void)s;
  memset(out, 0, sizeof(*out));
}
static void fake_destroy(cmd_sink_t *s) {
  fake_sink_t *f = (fake_sink_t *)s;
  /* like the writer: what it still holds comes back cancelled */
  for (size_t i = 0; i < f->n_handed; i++) {
    if (!f->handed[i])
      continue;
    f->handed[i]->err = SF_ECANCELED;
    f->cbs.done(f->cbs.ud, f->handed[i]);
  }
  f->world->sinks[f->lane] = NULL;
  free(f);
}
static const cmd_sink_vt_t fake_vt = {fake_submit, fake_hold, fake_accept,
                                      fake_stats, fake_destroy};

static int fake_new_sink(void *ud, uv_loop_t *loop,
                         const cmd_writer_opts_t *wo,
                         const cmd_writer_cbs_t *cbs, sf_log_t *log,
                         cmd_sink_t **out) {
  (void)loop;
  (void)log;
  world_t *w = ud;
  fake_sink_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->base.vt = &fake_vt;
  f->world = w;
  f->lane = wo->lane;
  f->cbs = *cbs;
  w->sinks[wo->lane] = f;
  *out = &f->base;
  return 0;
}

static int fake_rebuild(void *ud, const atomic_bool *stop, cmd_state_t **out,
                        double *seconds, uint64_t *events) {
  (void)stop;
  world_t *w = ud;
  while (atomic_load(&w->hold_rebuild) && !atomic_load(stop))
    uv_sleep(1);
  w->rebuilds++; /* the loop waits for the async: no race on the count */
  *seconds = 0.001;
  *events = 7;
  return cmd_state_new(out);
}

static void done_cb(void *ud, cmd_unit_t *u) {
  world_t *w = ud;
  assert_true(w->n_done < 64);
  w->done[w->n_done++] = u;
}
static void state_cb(void *ud, cmd_state_t *state, uint64_t gen, double s,
                     uint64_t ev) {
  (void)s;
  (void)ev;
  world_t *w = ud;
  cmd_state_destroy(state);
  w->states++;
  w->generation = gen;
}
static void resync_cb(void *ud, const char *reason) {
  (void)reason;
  ((world_t *)ud)->resyncs++;
}
static void fatal_cb(void *ud, const char *reason) {
  (void)reason;
  ((world_t *)ud)->fatals++;
}

/* Runs the loop until the rebuild handed over a state (or gives up). */
static void wait_state(world_t *w, int want) {
  for (int i = 0; i < 2000 && w->states < want; i++) {
    uv_run(&w->loop, UV_RUN_NOWAIT);
    if (w->states < want)
      uv_sleep(1);
  }
  assert_int_equal(w->states, want);
}

static int setup(void **st) {
  world_t *w = calloc(1, sizeof(*w));
  assert_non_null(w);
  assert_int_equal(uv_loop_init(&w->loop), 0);
  cmd_lanes_opts_t o = {.brokers = "unused",
                        .transactional_id = "t",
                        .topic_catalog = TOPIC_CATALOG,
                        .topic_stock = TOPIC_STOCK,
                        .lanes = 2,
                        .new_sink = fake_new_sink,
                        .rebuild = fake_rebuild,
                        .seam_ud = w};
  cmd_lanes_cbs_t cbs = {done_cb, state_cb, resync_cb, fatal_cb, w};
  assert_int_equal(cmd_lanes_new(&w->lanes, &w->loop, &o, &cbs, NULL), 0);
  /* both lanes initialised their transactions; 6 stock partitions */
  w->sinks[0]->cbs.ready(w->sinks[0]->cbs.ud, 0, 6);
  assert_int_equal(w->rebuilds + w->states, 0); /* lane 1 not ready yet */
  w->sinks[1]->cbs.ready(w->sinks[1]->cbs.ud, 1, 6);
  wait_state(w, 1);
  assert_int_equal(w->generation, 1);
  assert_int_equal(w->sinks[0]->accepted_gen, 1);
  assert_int_equal(w->sinks[1]->accepted_gen, 1);
  *st = w;
  return 0;
}

static int teardown(void **st) {
  world_t *w = *st;
  cmd_lanes_destroy(w->lanes);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  for (size_t i = 0; i < w->n_done; i++)
    cmd_unit_free(w->done[i]);
  assert_int_equal(uv_loop_close(&w->loop), 0);
  free(w);
  return 0;
}

static cmd_msg_t *msg(const char *topic, const char *key) {
  cmd_msg_t *m = calloc(1, sizeof(*m));
  assert_non_null(m);
  m->topic = topic;
  snprintf(m->key, sizeof(m->key), "%s", key);
  return m;
}

/* A unit of one message per key (NULL-terminated keys, stock topic). */
static cmd_unit_t *unit(world_t *w, const char *k1, const char *k2) {
  cmd_unit_t *u = calloc(1, sizeof(*u));
  assert_non_null(u);
  u->generation = w->generation;
  u->msgs = msg(TOPIC_STOCK, k1);
  u->n_msgs = 1;
  if (k2) {
    u->msgs->next = msg(TOPIC_STOCK, k2);
    u->n_msgs = 2;
  }
  return u;
}

/* A stock unit like the pipeline's: one message per key, each naming its
 * stream (store x product) as make_msg does. k2 may be NULL. */
static cmd_unit_t *named_unit(world_t *w, const char *k1, const char *p1,
                              const char *k2, const char *p2) {
  cmd_unit_t *u = unit(w, k1, k2);
  const char *products[2] = {p1, p2};
  size_t i = 0;
  for (cmd_msg_t *m = u->msgs; m; m = m->next, i++) {
    m->streams = malloc(sizeof(*m->streams));
    assert_non_null(m->streams);
    m->streams[0] = cmd_stream_hash(m->key, products[i]);
    m->n_streams = 1;
  }
  return u;
}

static cmd_unit_t *catalog_unit(world_t *w, const char *key) {
  cmd_unit_t *u = calloc(1, sizeof(*u));
  assert_non_null(u);
  u->generation = w->generation;
  u->msgs = msg(TOPIC_CATALOG, key);
  u->n_msgs = 1;
  return u;
}

/* The sink hands a unit back as committed (or failed). */
static void finish(world_t *w, unsigned lane, size_t i, int err) {
  fake_sink_t *f = w->sinks[lane];
  cmd_unit_t *u = f->handed[i];
  assert_non_null(u);
  f->handed[i] = NULL;
  u->err = err;
  f->cbs.done(f->cbs.ud, u);
}

static void test_partition_matches_java_client(void **st) {
  (void)st;
  /* Kafka's Utils.murmur2 vectors: toPositive(murmur2(key)) % n */
  assert_int_equal(cmd_lanes_partition("kafka", 6), 4);
  assert_int_equal(cmd_lanes_partition(KEY_LANE0, 6), 0);
  assert_int_equal(cmd_lanes_partition(KEY_LANE1, 6), 3);
  assert_int_equal(cmd_lanes_partition("store-c", 6), 2);
  assert_int_equal(cmd_lanes_partition("x", 0), -1);
  assert_int_equal(cmd_lanes_of_partition(3, 2), 1);
  assert_int_equal(cmd_lanes_of_partition(4, 2), 0);
  assert_int_equal(cmd_lanes_of_partition(5, 1), 0);
}

static void test_units_go_to_their_lane_at_once(void **st) {
  world_t *w = *st;
  cmd_unit_t *a = unit(w, KEY_LANE0, NULL), *b = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, a);
  cmd_lanes_submit(w->lanes, b);
  assert_int_equal(w->sinks[0]->n_handed, 1);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  assert_ptr_equal(w->sinks[0]->handed[0], a);
  assert_int_equal(a->msgs->to_partition, 0);
  assert_int_equal(b->msgs->to_partition, 3);
  assert_false(a->wait_visible);
  finish(w, 0, 0, 0);
  finish(w, 1, 0, 0);
  assert_int_equal(w->n_done, 2);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 0);
}

static void test_cross_lane_unit_is_a_barrier(void **st) {
  world_t *w = *st;
  cmd_unit_t *a = unit(w, KEY_LANE0, NULL), *b = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, a);
  cmd_lanes_submit(w->lanes, b);
  /* a transfer from a lane-0 store to a lane-1 store */
  cmd_unit_t *x = unit(w, KEY_LANE0, KEY_LANE1);
  cmd_lanes_submit(w->lanes, x);
  /* behind it, in decision order, more work for lane 0 and lane 1 */
  cmd_unit_t *c = unit(w, KEY_LANE0, NULL), *d = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, c);
  cmd_lanes_submit(w->lanes, d);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 3);
  assert_int_equal(w->sinks[0]->n_handed, 1);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  finish(w, 0, 0, 0); /* lane 1 still has b in flight: x waits */
  assert_int_equal(w->sinks[0]->n_handed, 1);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 3);
  finish(w, 1, 0, 0); /* both idle: x goes, on lane 0, as one unit */
  assert_int_equal(w->sinks[0]->n_handed, 3);
  assert_ptr_equal(w->sinks[0]->handed[1], x);
  assert_int_equal(x->lanes, 3);
  assert_int_equal(x->msgs->next->to_partition, 3);
  /* c queues behind x in lane 0's writer; lane 1 takes nothing until x
   * is committed */
  assert_ptr_equal(w->sinks[0]->handed[2], c);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 1);
  finish(w, 0, 1, 0);
  assert_int_equal(w->sinks[1]->n_handed, 2);
  assert_ptr_equal(w->sinks[1]->handed[1], d);
  finish(w, 0, 2, 0);
  finish(w, 1, 1, 0);
  assert_int_equal(w->n_done, 5);
}

static void test_transfer_across_lanes_holds_up_no_lane(void **st) {
  world_t *w = *st;
  cmd_unit_t *a = named_unit(w, KEY_LANE0, "p1", NULL, NULL);
  cmd_unit_t *b = named_unit(w, KEY_LANE1, "p1", NULL, NULL);
  cmd_lanes_submit(w->lanes, a);
  cmd_lanes_submit(w->lanes, b);
  /* a transfer of p2 from a lane-0 store to a lane-1 store: no stream of
   * it is in flight, so it goes at once, on lane 0, while b commits */
  cmd_unit_t *x = named_unit(w, KEY_LANE0, "p2", KEY_LANE1, "p2");
  cmd_lanes_submit(w->lanes, x);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 0);
  assert_int_equal(w->sinks[0]->n_handed, 2);
  assert_ptr_equal(w->sinks[0]->handed[1], x);
  assert_int_equal(x->lane, 0);
  assert_int_equal(x->lanes, 1);                    /* not a barrier */
  assert_int_equal(x->msgs->next->to_partition, 3); /* lane 1's partition */
  /* lane 1 is not held: its next unit goes while x is in flight */
  cmd_unit_t *c = named_unit(w, KEY_LANE1, "p3", NULL, NULL);
  cmd_lanes_submit(w->lanes, c);
  assert_int_equal(w->sinks[1]->n_handed, 2);
  assert_ptr_equal(w->sinks[1]->handed[1], c);
  finish(w, 0, 0, 0);
  finish(w, 1, 0, 0);
  finish(w, 0, 1, 0);
  finish(w, 1, 1, 0);
  assert_int_equal(w->n_done, 4);
}

static void test_shared_stream_keeps_decision_order(void **st) {
  world_t *w = *st;
  /* b: a sale of p1 at the lane-1 store, in flight on lane 1 */
  cmd_unit_t *b = named_unit(w, KEY_LANE1, "p1", NULL, NULL);
  cmd_lanes_submit(w->lanes, b);
  /* x: a transfer of p1 into that store, decided after b: its second leg
   * moves b's stream, so it waits for b rather than race it on lane 0 */
  cmd_unit_t *x = named_unit(w, KEY_LANE0, "p1", KEY_LANE1, "p1");
  cmd_lanes_submit(w->lanes, x);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 1);
  assert_int_equal(w->sinks[0]->n_handed, 0);
  /* c: other work of lane 0 is not held up by x */
  cmd_unit_t *c = named_unit(w, KEY_LANE0, "p9", NULL, NULL);
  cmd_lanes_submit(w->lanes, c);
  assert_int_equal(w->sinks[0]->n_handed, 1);
  assert_ptr_equal(w->sinks[0]->handed[0], c);
  /* d: a sale of p1 at the lane-1 store, decided after x: it must not
   * pass x (its stream is x's), though lane 1 could take it */
  cmd_unit_t *d = named_unit(w, KEY_LANE1, "p1", NULL, NULL);
  cmd_lanes_submit(w->lanes, d);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 2);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  /* e: other work of lane 1 goes */
  cmd_unit_t *e = named_unit(w, KEY_LANE1, "p8", NULL, NULL);
  cmd_lanes_submit(w->lanes, e);
  assert_int_equal(w->sinks[1]->n_handed, 2);
  assert_ptr_equal(w->sinks[1]->handed[1], e);
  /* c committed while b is still in flight: the lanes look at the waiting
   * units again; x still cannot go, and d, which lane 1 could take, still
   * must not pass it */
  finish(w, 0, 0, 0);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 2);
  assert_int_equal(w->sinks[1]->n_handed, 2);
  /* b committed: x goes on lane 0; d now waits for x */
  finish(w, 1, 0, 0);
  assert_int_equal(w->sinks[0]->n_handed, 2);
  assert_ptr_equal(w->sinks[0]->handed[1], x);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 1);
  assert_int_equal(w->sinks[1]->n_handed, 2);
  /* x committed: d goes on lane 1, after x in the log of that partition */
  finish(w, 0, 1, 0);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 0);
  assert_int_equal(w->sinks[1]->n_handed, 3);
  assert_ptr_equal(w->sinks[1]->handed[2], d);
  finish(w, 1, 1, 0);
  finish(w, 1, 2, 0);
  assert_int_equal(w->n_done, 5);
}

static void test_catalog_unit_spans_every_lane(void **st) {
  world_t *w = *st;
  cmd_unit_t *a = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, a);
  cmd_unit_t *cat = catalog_unit(w, "product-1");
  cmd_lanes_submit(w->lanes, cat);
  assert_int_equal(cmd_lanes_waiting(w->lanes), 1);
  finish(w, 1, 0, 0);
  assert_int_equal(w->sinks[0]->n_handed, 1);
  assert_ptr_equal(w->sinks[0]->handed[0], cat);
  assert_true(cat->wait_visible);
  assert_int_equal(cat->msgs->to_partition, -1);
  /* a stock unit of lane 1 waits until the catalog event is readable */
  cmd_unit_t *b = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, b);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  finish(w, 0, 0, 0);
  assert_int_equal(w->sinks[1]->n_handed, 2);
  finish(w, 1, 1, 0);
}

static void test_barrier_queues_behind_its_own_lane(void **st) {
  world_t *w = *st;
  cmd_unit_t *a = unit(w, KEY_LANE0, NULL), *b = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, a);
  cmd_lanes_submit(w->lanes, b);
  cmd_unit_t *x = unit(w, KEY_LANE0, KEY_LANE1);
  cmd_lanes_submit(w->lanes, x);
  /* lane 1 idle: x goes to lane 0 behind a (same writer, same order) */
  finish(w, 1, 0, 0);
  assert_int_equal(w->sinks[0]->n_handed, 2);
  assert_ptr_equal(w->sinks[0]->handed[1], x);
  /* lane 1 is held by x; lane 0 is not: its units queue behind x */
  cmd_unit_t *c = unit(w, KEY_LANE1, NULL), *d = unit(w, KEY_LANE0, NULL);
  cmd_lanes_submit(w->lanes, c);
  cmd_lanes_submit(w->lanes, d);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  assert_int_equal(w->sinks[0]->n_handed, 3);
  assert_ptr_equal(w->sinks[0]->handed[2], d);
  finish(w, 0, 0, 0);
  finish(w, 0, 1, 0); /* x done: c goes */
  assert_int_equal(w->sinks[1]->n_handed, 2);
  finish(w, 0, 2, 0);
  finish(w, 1, 1, 0);
}

static void test_catalog_units_share_a_commit(void **st) {
  world_t *w = *st;
  cmd_unit_t *p1 = catalog_unit(w, "p1"), *p2 = catalog_unit(w, "p2");
  cmd_lanes_submit(w->lanes, p1);
  cmd_lanes_submit(w->lanes, p2);
  assert_int_equal(w->sinks[0]->n_handed, 2); /* one group commit */
  assert_int_equal(cmd_lanes_waiting(w->lanes), 0);
  cmd_unit_t *s1 = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, s1);
  assert_int_equal(w->sinks[1]->n_handed, 0);
  finish(w, 0, 0, 0);
  assert_int_equal(w->sinks[1]->n_handed, 0); /* p2 still holds lane 1 */
  finish(w, 0, 1, 0);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  finish(w, 1, 0, 0);
}

static void test_failure_pauses_drains_rebuilds_resumes(void **st) {
  world_t *w = *st;
  cmd_unit_t *a = unit(w, KEY_LANE0, NULL), *b = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, a);
  cmd_lanes_submit(w->lanes, b);
  cmd_unit_t *x = unit(w, KEY_LANE0, KEY_LANE1); /* waits behind both */
  cmd_lanes_submit(w->lanes, x);
  /* lane 0's batch fails and its producer is being replaced */
  finish(w, 0, 0, SF_EUNAVAILABLE);
  w->sinks[0]->cbs.failed(w->sinks[0]->cbs.ud, 0, "boom", true);
  assert_int_equal(w->resyncs, 1);
  assert_int_equal(w->sinks[0]->holds, 1);
  assert_int_equal(w->sinks[1]->holds, 1);
  /* the waiting unit was decided against the failed state: it fails */
  assert_int_equal(cmd_lanes_waiting(w->lanes), 0);
  assert_ptr_equal(w->done[w->n_done - 1], x);
  assert_int_equal(x->err, SF_EUNAVAILABLE);
  /* new units are refused until the rebuild */
  cmd_unit_t *late = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, late);
  assert_int_equal(late->err, SF_EUNAVAILABLE);
  assert_int_equal(w->sinks[1]->n_handed, 1);
  /* b (lane 1) still commits; the lane-0 producer comes back; only then,
   * with nothing in flight anywhere, the rebuild runs */
  finish(w, 1, 0, 0);
  uv_run(&w->loop, UV_RUN_NOWAIT);
  assert_int_equal(w->states, 1);
  w->sinks[0]->cbs.ready(w->sinks[0]->cbs.ud, 0, 6);
  wait_state(w, 2);
  assert_int_equal(w->rebuilds, 2);
  assert_int_equal(w->generation, 2);
  assert_int_equal(w->sinks[0]->accepted_gen, 2);
  assert_int_equal(w->sinks[1]->accepted_gen, 2);
  /* a unit of the old generation is refused; a new one goes */
  cmd_unit_t *stale = unit(w, KEY_LANE0, NULL);
  stale->generation = 1;
  cmd_lanes_submit(w->lanes, stale);
  assert_int_equal(stale->err, SF_EUNAVAILABLE);
  cmd_unit_t *fresh = unit(w, KEY_LANE0, NULL);
  cmd_lanes_submit(w->lanes, fresh);
  assert_ptr_equal(w->sinks[0]->handed[1], fresh);
  finish(w, 0, 1, 0);
}

/* Two lanes fail one after the other: the first failure starts a rebuild
 * (the other lane still looked ready), the second, a broken producer,
 * arrives while it runs. That rebuild may have missed the second lane's
 * batch: it is thrown away and a new one runs once the lane is back. */
static void test_second_failure_during_the_rebuild(void **st) {
  world_t *w = *st;
  atomic_store(&w->hold_rebuild, true);
  w->sinks[1]->cbs.failed(w->sinks[1]->cbs.ud, 1, "aborted", false);
  assert_int_equal(w->resyncs, 1);
  /* the rebuild thread runs now; lane 0 breaks meanwhile, and comes back
   * before that rebuild is over */
  w->sinks[0]->cbs.failed(w->sinks[0]->cbs.ud, 0, "broken", true);
  w->sinks[0]->cbs.ready(w->sinks[0]->cbs.ud, 0, 6);
  atomic_store(&w->hold_rebuild, false);
  wait_state(w, 2);
  assert_int_equal(w->rebuilds, 3); /* start, the stale one, the good one */
  assert_int_equal(w->generation, 2);
  assert_int_equal(w->sinks[0]->accepted_gen, 2);
  assert_int_equal(w->sinks[1]->accepted_gen, 2);
  cmd_unit_t *u = unit(w, KEY_LANE0, NULL);
  cmd_lanes_submit(w->lanes, u);
  assert_int_equal(w->sinks[0]->n_handed, 1);
  finish(w, 0, 0, 0);
}

static void test_resync_from_the_loop(void **st) {
  world_t *w = *st;
  cmd_lanes_resync(w->lanes, "fold failed");
  assert_int_equal(w->resyncs, 1);
  wait_state(w, 2);
  assert_int_equal(w->generation, 2);
}

static void test_fenced_lane_is_fatal_once(void **st) {
  world_t *w = *st;
  cmd_unit_t *a = unit(w, KEY_LANE0, NULL);
  cmd_lanes_submit(w->lanes, a);
  cmd_unit_t *x = unit(w, KEY_LANE1, KEY_LANE0);
  cmd_lanes_submit(w->lanes, x);
  w->sinks[1]->cbs.fatal(w->sinks[1]->cbs.ud, 1, "fenced");
  w->sinks[0]->cbs.fatal(w->sinks[0]->cbs.ud, 0, "fenced too");
  assert_int_equal(w->fatals, 1);
  assert_int_equal(x->err, SF_EUNAVAILABLE);
  cmd_unit_t *b = unit(w, KEY_LANE1, NULL);
  cmd_lanes_submit(w->lanes, b);
  assert_int_equal(b->err, SF_EUNAVAILABLE);
  /* a, still in lane 0's sink, comes back cancelled at teardown */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_partition_matches_java_client),
      cmocka_unit_test_setup_teardown(test_units_go_to_their_lane_at_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_cross_lane_unit_is_a_barrier,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_transfer_across_lanes_holds_up_no_lane, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_stream_keeps_decision_order,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_catalog_unit_spans_every_lane,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_barrier_queues_behind_its_own_lane,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_catalog_units_share_a_commit, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_failure_pauses_drains_rebuilds_resumes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_failure_during_the_rebuild,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_resync_from_the_loop, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_fenced_lane_is_fatal_once, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

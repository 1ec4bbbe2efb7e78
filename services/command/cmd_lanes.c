/* cmd_lanes: routing, barriers and recovery over N writer lanes. See
 * cmd_lanes.h for the contract. */
#include "cmd_lanes.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_rebuild.h"
#include "sf/err.h"
#include "sf/kafka.h"

typedef enum phase {
  PHASE_STARTING,   /* waiting for every lane's init_transactions */
  PHASE_DRAINING,   /* a failure: waiting for every lane to be idle+ready */
  PHASE_REBUILDING, /* the rebuild thread runs */
  PHASE_RUNNING,
  PHASE_FATAL
} phase_t;

typedef struct lane {
  cmd_sink_t *sink;
  cmd_lanes_t *owner;
  unsigned index;
  bool ready;
  uint64_t inflight; /* units handed to the sink, not yet done */
  /* barriers in flight that hold this lane (it is not their first lane):
   * how many, and whose first lane they are (all the same one) */
  unsigned held;
  unsigned holder;
  char txn_id[256];
} lane_t;

/* Streams in flight (cmd_msg_t.streams), by hash slot: how many units
 * handed to a writer move a stream of the slot, all on one lane. Two
 * streams that share a slot are ordered as one (a wait, never a reorder). */
#define STREAM_SLOTS 32768u
typedef struct stream_slot {
  uint32_t count;
  uint32_t lane;
} stream_slot_t;

struct cmd_lanes {
  sf_log_t *log; /* first member: the lanes' librdkafka opaque convention */
  uv_loop_t *loop;
  cmd_lanes_opts_t opts;
  cmd_lanes_cbs_t cbs;
  lane_t lanes[CMD_MAX_LANES];
  size_t n;
  uint64_t all_mask;
  int32_t partitions; /* of the stock topic; 0 until a lane reported it */
  phase_t phase;
  uint64_t generation;
  /* units waiting for a barrier, in decision order (linked by ->next) */
  cmd_unit_t *wait_head, *wait_tail;
  size_t n_waiting;
  uint64_t wait_mask;    /* lanes the waiting barriers touch (a superset) */
  uint64_t wait_touched; /* lanes any waiting unit touches (a superset) */
  /* with more than one lane: the streams in flight, the streams of the
   * waiting units (counts, by slot) and a scratch set for pump() */
  stream_slot_t *inflight_streams;
  uint32_t *waiting_streams;
  uint8_t *claimed_streams;
  /* the rebuild thread */
  uv_thread_t rebuild_thread;
  bool rebuild_running;
  uv_async_t rebuild_async;
  atomic_bool stop;
  cmd_state_t *rebuilt; /* set by the thread, taken by the loop */
  cmd_rebuild_stats_t rebuilt_stats;
  int rebuilt_rc;
  char reason[256];
};

/* ---- pure parts ---- */

unsigned cmd_lanes_of_partition(int32_t partition, size_t lanes) {
  if (lanes <= 1 || partition < 0)
    return 0;
  return (unsigned)((size_t)partition % lanes);
}

unsigned cmd_lanes_of_owned_partition(int32_t partition, unsigned instances,
                                      size_t lanes) {
  if (partition < 0)
    return 0;
  return cmd_lanes_of_partition(
      instances > 1 ? partition / (int32_t)instances : partition, lanes);
}

int32_t cmd_lanes_partition(const char *key, int32_t partitions) {
  /* librdkafka's own murmur2 (Java-compatible) */
  return sf_kafka_partition_for_key(key, strlen(key), partitions);
}

static int popcount64(uint64_t x) { return __builtin_popcountll(x); }

static unsigned first_lane(uint64_t mask) {
  return (unsigned)__builtin_ctzll(mask);
}

/* ---- routing and order ---- */

static bool tracks_streams(const cmd_lanes_t *l) {
  return l->inflight_streams != NULL;
}

static uint32_t slot_of(uint64_t stream) {
  return (uint32_t)(stream % STREAM_SLOTS);
}

/* Whether a stream of u is in flight on a lane other than u's. */
static bool streams_busy_elsewhere(const cmd_lanes_t *l, const cmd_unit_t *u) {
  for (const cmd_msg_t *m = u->msgs; m; m = m->next)
    for (size_t i = 0; i < m->n_streams; i++) {
      const stream_slot_t *s = &l->inflight_streams[slot_of(m->streams[i])];
      if (s->count && s->lane != u->lane)
        return true;
    }
  return false;
}

/* Counts u's streams in (on) or out of flight on u's lane. */
static void streams_inflight(cmd_lanes_t *l, const cmd_unit_t *u, bool on) {
  for (const cmd_msg_t *m = u->msgs; m; m = m->next)
    for (size_t i = 0; i < m->n_streams; i++) {
      stream_slot_t *s = &l->inflight_streams[slot_of(m->streams[i])];
      if (on) {
        s->count++;
        s->lane = u->lane;
      } else if (s->count) {
        s->count--;
      }
    }
}

/* Counts u's streams in (on) or out of the waiting units' claims. */
static void streams_waiting(cmd_lanes_t *l, const cmd_unit_t *u, bool on) {
  for (const cmd_msg_t *m = u->msgs; m; m = m->next)
    for (size_t i = 0; i < m->n_streams; i++) {
      uint32_t *c = &l->waiting_streams[slot_of(m->streams[i])];
      if (on)
        (*c)++;
      else if (*c)
        (*c)--;
    }
}

static bool streams_claimed_by_waiting(const cmd_lanes_t *l,
                                       const cmd_unit_t *u) {
  for (const cmd_msg_t *m = u->msgs; m; m = m->next)
    for (size_t i = 0; i < m->n_streams; i++)
      if (l->waiting_streams[slot_of(m->streams[i])])
        return true;
  return false;
}

/* pump()'s scratch set: the streams of the units it has passed over. */
static bool streams_claimed_in_pass(const cmd_lanes_t *l, const cmd_unit_t *u) {
  for (const cmd_msg_t *m = u->msgs; m; m = m->next)
    for (size_t i = 0; i < m->n_streams; i++) {
      uint32_t k = slot_of(m->streams[i]);
      if (l->claimed_streams[k / 8] & (1u << (k % 8)))
        return true;
    }
  return false;
}

static void claim_streams_in_pass(cmd_lanes_t *l, const cmd_unit_t *u) {
  for (const cmd_msg_t *m = u->msgs; m; m = m->next)
    for (size_t i = 0; i < m->n_streams; i++) {
      uint32_t k = slot_of(m->streams[i]);
      l->claimed_streams[k / 8] |= (uint8_t)(1u << (k % 8));
    }
}

/* Pins each stock message on its partition and says which lanes the unit
 * touches; catalog units touch every lane and wait until readable. A stock
 * unit whose messages all name their streams commits on its first
 * message's lane whatever partitions it writes: its streams, not its lanes,
 * keep it in order. */
static void route(cmd_lanes_t *l, cmd_unit_t *u) {
  uint64_t mask = 0;
  unsigned primary = 0;
  bool first = true, all_named = true;
  for (cmd_msg_t *m = u->msgs; m; m = m->next) {
    if (m->n_streams == 0)
      all_named = false;
    if (strcmp(m->topic, l->opts.topic_stock) == 0 && l->partitions > 0) {
      m->to_partition = cmd_lanes_partition(m->key, l->partitions);
      unsigned k = cmd_lanes_of_owned_partition(m->to_partition,
                                                l->opts.instances, l->n);
      if (first)
        primary = k;
      mask |= UINT64_C(1) << k;
    } else {
      m->to_partition = -1;
      mask = l->all_mask;
      u->wait_visible = true;
    }
    first = false;
  }
  if (!mask)
    mask = UINT64_C(1) << primary;
  if (tracks_streams(l) && !u->wait_visible && all_named)
    mask = UINT64_C(1) << primary;
  u->lanes = mask;
  u->lane = (mask & (UINT64_C(1) << primary)) ? primary : first_lane(mask);
}

static bool is_barrier(const cmd_unit_t *u) { return popcount64(u->lanes) > 1; }

static bool lanes_idle(const cmd_lanes_t *l, uint64_t mask) {
  for (size_t k = 0; k < l->n; k++)
    if ((mask & (UINT64_C(1) << k)) && l->lanes[k].inflight)
      return false;
  return true;
}

/* Whether u may be handed to its lane now. Its own lane must not be held
 * by a barrier of another lane. Every other lane it touches must be idle,
 * or held by a barrier committing on u's lane: then u queues behind that
 * barrier in the same writer, so order holds and consecutive barriers of
 * one lane (catalog commands) still share a group commit. */
static bool may_go(const cmd_lanes_t *l, const cmd_unit_t *u) {
  if (tracks_streams(l) && streams_busy_elsewhere(l, u))
    return false;
  for (size_t k = 0; k < l->n; k++) {
    if (!(u->lanes & (UINT64_C(1) << k)))
      continue;
    const lane_t *ln = &l->lanes[k];
    if (k == u->lane) {
      if (ln->held)
        return false;
    } else if (ln->held ? ln->holder != u->lane : ln->inflight != 0) {
      return false;
    }
  }
  return true;
}

static void hold_lanes(cmd_lanes_t *l, const cmd_unit_t *u, bool on) {
  for (size_t k = 0; k < l->n; k++) {
    if (k == u->lane || !(u->lanes & (UINT64_C(1) << k)))
      continue;
    lane_t *ln = &l->lanes[k];
    if (on) {
      ln->held++;
      ln->holder = u->lane;
    } else if (ln->held) {
      ln->held--;
    }
  }
}

static void hand_over(cmd_lanes_t *l, cmd_unit_t *u) {
  lane_t *ln = &l->lanes[u->lane];
  ln->inflight++;
  if (tracks_streams(l))
    streams_inflight(l, u, true);
  if (is_barrier(u))
    hold_lanes(l, u, true);
  ln->sink->vt->submit(ln->sink, u);
}

/* Hands over every waiting unit that may go now, in decision order. A
 * barrier goes when no earlier waiting unit touches its lanes; any other
 * unit when no earlier waiting barrier touches its lane and no earlier
 * waiting unit shares a stream with it; and either only if may_go says so.
 * A unit kept waiting by a stream never holds up its lane's other work. */
static void pump(cmd_lanes_t *l) {
  uint64_t barred = 0, touched = 0;
  bool streams = tracks_streams(l);
  if (streams && l->wait_head)
    memset(l->claimed_streams, 0, STREAM_SLOTS / 8);
  cmd_unit_t **pp = &l->wait_head, *prev = NULL;
  while (*pp) {
    cmd_unit_t *u = *pp;
    bool barrier = is_barrier(u);
    bool go = !(u->lanes & (barrier ? touched : barred)) &&
              !(streams && streams_claimed_in_pass(l, u)) && may_go(l, u);
    if (!go) {
      touched |= u->lanes;
      if (barrier)
        barred |= u->lanes;
      if (streams)
        claim_streams_in_pass(l, u);
      prev = u;
      pp = &u->next;
      continue;
    }
    *pp = u->next;
    if (l->wait_tail == u)
      l->wait_tail = prev;
    u->next = NULL;
    l->n_waiting--;
    if (streams)
      streams_waiting(l, u, false);
    hand_over(l, u);
  }
  l->wait_mask = barred;
  l->wait_touched = touched;
}

static void fail_unit(cmd_lanes_t *l, cmd_unit_t *u, int err) {
  u->err = err;
  l->cbs.done(l->cbs.ud, u);
}

static void fail_waiting(cmd_lanes_t *l, int err) {
  cmd_unit_t *u = l->wait_head;
  l->wait_head = l->wait_tail = NULL;
  l->n_waiting = 0;
  l->wait_mask = l->wait_touched = 0;
  if (tracks_streams(l))
    memset(l->waiting_streams, 0, STREAM_SLOTS * sizeof(*l->waiting_streams));
  while (u) {
    cmd_unit_t *next = u->next;
    u->next = NULL;
    fail_unit(l, u, err);
    u = next;
  }
}

/* Whether u may pass every waiting unit: as in pump(), against all of
 * them. */
static bool may_pass_waiting(const cmd_lanes_t *l, const cmd_unit_t *u) {
  if (!l->wait_head)
    return true;
  if (is_barrier(u))
    return !(u->lanes & l->wait_touched);
  return !(u->lanes & l->wait_mask) &&
         !(tracks_streams(l) && streams_claimed_by_waiting(l, u));
}

void cmd_lanes_submit(cmd_lanes_t *l, cmd_unit_t *u) {
  u->next = NULL;
  if (l->phase != PHASE_RUNNING || u->generation != l->generation) {
    fail_unit(l, u, SF_EUNAVAILABLE);
    return;
  }
  route(l, u);
  if (may_pass_waiting(l, u) && may_go(l, u)) {
    hand_over(l, u);
    return;
  }
  if (l->wait_tail)
    l->wait_tail->next = u;
  else
    l->wait_head = u;
  l->wait_tail = u;
  l->n_waiting++;
  l->wait_touched |= u->lanes;
  if (is_barrier(u))
    l->wait_mask |= u->lanes;
  if (tracks_streams(l))
    streams_waiting(l, u, true);
}

/* ---- the rebuild ---- */

static void rebuild_main(void *arg) {
  cmd_lanes_t *l = arg;
  unsigned backoff_ms = 200;
  for (;;) {
    if (atomic_load(&l->stop)) {
      l->rebuilt_rc = SF_ECANCELED;
      break;
    }
    SF_INFO(l->log, "rebuild", "rebuilding state from %s and %s",
            l->opts.topic_catalog, l->opts.topic_stock);
    cmd_state_t *state = NULL;
    cmd_rebuild_stats_t st;
    memset(&st, 0, sizeof(st));
    int rc;
    if (l->opts.rebuild)
      rc = l->opts.rebuild(l->opts.seam_ud, &l->stop, &state, &st.seconds,
                           &st.events);
    else
      rc = cmd_rebuild_run(l->opts.brokers, l->opts.topic_catalog,
                           l->opts.topic_stock, l->opts.registry_url,
                           l->opts.idem_retention_us,
                           &l->stop, l->log, &state, &st,
                           l->opts.rebuild_progress);
    if (rc == 0) {
      /* The replay's consumer buffers are freed now: give the pages back
       * so the service's RSS is the state, not the peak of the replay
       * (glibc keeps freed heap otherwise). */
      malloc_trim(0);
      SF_INFO(l->log, "rebuild", "state rebuilt in %.3f s: %llu events "
                                 "applied, %llu duplicates skipped, %llu undecodable skipped, "
                                 "%llu idempotency keys restored",
              st.seconds, (unsigned long long)st.events,
              (unsigned long long)st.duplicates,
              (unsigned long long)st.skipped,
              (unsigned long long)st.idempotency_keys);
      l->rebuilt = state;
      l->rebuilt_stats = st;
      l->rebuilt_rc = 0;
      break;
    }
    if (rc == SF_ECANCELED) {
      l->rebuilt_rc = rc;
      break;
    }
    SF_ERROR(l->log, "rebuild", "rebuild failed: %s; retrying in %u ms",
             sf_err_name(rc), backoff_ms);
    for (unsigned t = 0; t < backoff_ms && !atomic_load(&l->stop); t += 50)
      uv_sleep(50);
    if (backoff_ms < 5000)
      backoff_ms *= 2;
  }
  uv_async_send(&l->rebuild_async);
}

static void start_rebuild(cmd_lanes_t *l) {
  l->phase = PHASE_REBUILDING;
  l->rebuilt = NULL;
  if (uv_thread_create(&l->rebuild_thread, rebuild_main, l)) {
    l->phase = PHASE_FATAL;
    SF_ERROR(l->log, "lanes", "cannot start the rebuild thread");
    l->cbs.fatal(l->cbs.ud, "cannot start the rebuild thread");
    return;
  }
  l->rebuild_running = true;
}

static void maybe_rebuild(cmd_lanes_t *l);

static void rebuild_done_cb(uv_async_t *h) {
  cmd_lanes_t *l = h->data;
  if (!l->rebuild_running)
    return;
  uv_thread_join(&l->rebuild_thread);
  l->rebuild_running = false;
  cmd_state_t *state = l->rebuilt;
  l->rebuilt = NULL;
  if (l->phase != PHASE_REBUILDING || !state) {
    /* A lane failed while the log was read (it may have missed that
     * lane's last batch): that state is not the truth. Read it again once
     * every lane is idle and ready (now, or when the lane comes back). */
    cmd_state_destroy(state);
    if (l->phase == PHASE_DRAINING)
      SF_INFO(l->log, "lanes", "a lane failed during the rebuild: "
                               "rebuilding again once every lane is ready");
    maybe_rebuild(l);
    return;
  }
  l->phase = PHASE_RUNNING;
  l->generation++;
  for (size_t k = 0; k < l->n; k++)
    l->lanes[k].sink->vt->accept(l->lanes[k].sink, l->generation);
  l->cbs.state(l->cbs.ud, state, l->generation, l->rebuilt_stats.seconds,
               l->rebuilt_stats.events);
}

static bool all_ready(const cmd_lanes_t *l) {
  for (size_t k = 0; k < l->n; k++)
    if (!l->lanes[k].ready)
      return false;
  return true;
}

/* In DRAINING: rebuild once every lane is idle with a working producer. */
static void maybe_rebuild(cmd_lanes_t *l) {
  if ((l->phase == PHASE_DRAINING || l->phase == PHASE_STARTING) &&
      all_ready(l) && lanes_idle(l, l->all_mask) && !l->rebuild_running) {
    if (l->phase == PHASE_DRAINING)
      SF_INFO(l->log, "lanes", "every lane is idle and ready: rebuilding the "
                               "state, then writes resume");
    start_rebuild(l);
  }
}

/* Pauses writes for a rebuild: every lane stops accepting and fails what
 * it has queued; the units waiting here fail too. */
static void pause_writes(cmd_lanes_t *l, const char *reason) {
  if (l->phase == PHASE_FATAL)
    return;
  bool was_running = l->phase == PHASE_RUNNING;
  if (l->phase == PHASE_RUNNING || l->phase == PHASE_REBUILDING)
    l->phase = PHASE_DRAINING;
  if (was_running) {
    snprintf(l->reason, sizeof(l->reason), "%s", reason);
    l->cbs.resync(l->cbs.ud, reason);
  }
  for (size_t k = 0; k < l->n; k++)
    l->lanes[k].sink->vt->hold(l->lanes[k].sink);
  fail_waiting(l, SF_EUNAVAILABLE);
  maybe_rebuild(l);
}

void cmd_lanes_resync(cmd_lanes_t *l, const char *reason) {
  SF_ERROR(l->log, "lanes", "resync asked (%s): failing the queued commands "
                            "and rebuilding the state from the log",
           reason);
  pause_writes(l, reason);
}

/* ---- the writers' callbacks ---- */

static void lane_done_cb(void *ud, cmd_unit_t *u) {
  cmd_lanes_t *l = ud;
  lane_t *ln = &l->lanes[u->lane < l->n ? u->lane : 0];
  if (ln->inflight)
    ln->inflight--;
  if (tracks_streams(l))
    streams_inflight(l, u, false);
  if (is_barrier(u))
    hold_lanes(l, u, false);
  l->cbs.done(l->cbs.ud, u);
  if (l->phase == PHASE_RUNNING)
    pump(l);
  else
    maybe_rebuild(l);
}

static void lane_ready_cb(void *ud, unsigned lane, int32_t partitions) {
  cmd_lanes_t *l = ud;
  if (lane >= l->n)
    return;
  l->lanes[lane].ready = true;
  if (partitions > 0) {
    if (l->partitions && l->partitions != partitions)
      SF_WARN(l->log, "lanes", "lane %u sees %d partitions of %s, the lanes "
                               "route over %d",
              lane, (int)partitions, l->opts.topic_stock,
              (int)l->partitions);
    else
      l->partitions = partitions;
  }
  maybe_rebuild(l);
}

static void lane_failed_cb(void *ud, unsigned lane, const char *reason,
                           bool recovering) {
  cmd_lanes_t *l = ud;
  if (lane < l->n && recovering)
    l->lanes[lane].ready = false;
  SF_WARN(l->log, "lanes", "lane %u failed (%s): writes pause%s", lane,
          reason, recovering ? " until its new producer is initialised and "
                               "the state rebuilt"
                             : " until the state is rebuilt");
  pause_writes(l, reason);
}

static void lane_fatal_cb(void *ud, unsigned lane, const char *reason) {
  cmd_lanes_t *l = ud;
  if (l->phase == PHASE_FATAL)
    return;
  l->phase = PHASE_FATAL;
  SF_ERROR(l->log, "lanes", "lane %u cannot go on (%s): this instance stops "
                            "writing",
           lane, reason);
  for (size_t k = 0; k < l->n; k++)
    l->lanes[k].sink->vt->hold(l->lanes[k].sink);
  fail_waiting(l, SF_EUNAVAILABLE);
  l->cbs.fatal(l->cbs.ud, reason);
}

/* ---- lifecycle ---- */

static void lanes_free(cmd_lanes_t *l);

int cmd_lanes_new(cmd_lanes_t **out, uv_loop_t *loop,
                  const cmd_lanes_opts_t *opts, const cmd_lanes_cbs_t *cbs,
                  sf_log_t *log) {
  if (opts->lanes < 1 || opts->lanes > CMD_MAX_LANES)
    return SF_EINVAL;
  cmd_lanes_t *l = calloc(1, sizeof(*l));
  if (!l)
    return SF_ENOMEM;
  l->log = log;
  l->loop = loop;
  l->opts = *opts;
  l->cbs = *cbs;
  l->n = opts->lanes;
  l->all_mask = l->n == 64 ? UINT64_MAX : (UINT64_C(1) << l->n) - 1;
  l->phase = PHASE_STARTING;
  if (l->n > 1) { /* one lane keeps decision order by itself */
    l->inflight_streams = calloc(STREAM_SLOTS, sizeof(*l->inflight_streams));
    l->waiting_streams = calloc(STREAM_SLOTS, sizeof(*l->waiting_streams));
    l->claimed_streams = calloc(STREAM_SLOTS / 8, 1);
    if (!l->inflight_streams || !l->waiting_streams || !l->claimed_streams) {
      lanes_free(l);
      return SF_ENOMEM;
    }
  }
  atomic_init(&l->stop, false);
  if (uv_async_init(loop, &l->rebuild_async, rebuild_done_cb)) {
    lanes_free(l);
    return SF_EINTERNAL;
  }
  l->rebuild_async.data = l;
  cmd_writer_cbs_t wcbs = {lane_done_cb, lane_ready_cb, lane_failed_cb,
                           lane_fatal_cb, l};
  for (size_t k = 0; k < l->n; k++) {
    lane_t *ln = &l->lanes[k];
    ln->owner = l;
    ln->index = (unsigned)k;
    if (k == 0)
      snprintf(ln->txn_id, sizeof(ln->txn_id), "%s", opts->transactional_id);
    else
      snprintf(ln->txn_id, sizeof(ln->txn_id), "%s-%zu",
               opts->transactional_id, k);
    cmd_writer_opts_t wo = {
        .brokers = opts->brokers,
        .transactional_id = ln->txn_id,
        .topic_stock = opts->topic_stock,
        .lane = (unsigned)k,
        .max_batch = opts->max_batch,
        .linger_us = opts->linger_us,
        .commit_gap_us = opts->commit_gap_us,
        .kafka_debug = opts->kafka_debug,
        .txn_timeout_ms = opts->txn_timeout_ms,
    };
    int rc;
    if (opts->new_sink) {
      rc = opts->new_sink(opts->seam_ud, loop, &wo, &wcbs, log, &ln->sink);
    } else {
      cmd_writer_t *w = NULL;
      rc = cmd_writer_new(&w, loop, &wo, &wcbs, log);
      if (!rc)
        ln->sink = cmd_writer_sink(w);
    }
    if (rc) {
      SF_ERROR(log, "lanes", "starting lane %zu: %s", k, sf_err_name(rc));
      l->n = k; /* destroy what started */
      cmd_lanes_destroy(l);
      return rc;
    }
  }
  SF_INFO(log, "lanes", "%zu writer lane(s): stock partition p is written by "
                        "lane (p / %u) mod %zu (transactional ids %s%s)",
          l->n, opts->instances > 1 ? opts->instances : 1, l->n,
          opts->transactional_id, l->n > 1 ? ", <id>-1, ..." : "");
  *out = l;
  return 0;
}

size_t cmd_lanes_count(const cmd_lanes_t *l) { return l ? l->n : 0; }

size_t cmd_lanes_waiting(const cmd_lanes_t *l) {
  return l ? l->n_waiting : 0;
}

void cmd_lanes_stats(cmd_lanes_t *l, cmd_writer_stats_t *sum,
                     cmd_writer_stats_t *per_lane) {
  memset(sum, 0, sizeof(*sum));
  for (size_t k = 0; l && k < l->n; k++) {
    cmd_writer_stats_t s;
    l->lanes[k].sink->vt->stats(l->lanes[k].sink, &s);
    if (per_lane)
      per_lane[k] = s;
    sum->batches += s.batches;
    sum->batch_units += s.batch_units;
    sum->batch_msgs += s.batch_msgs;
    sum->failed_batches += s.failed_batches;
    sum->recoveries += s.recoveries;
    sum->commit_seconds_sum += s.commit_seconds_sum;
    for (size_t b = 0; b < CMD_COMMIT_BUCKETS; b++)
      sum->commit_buckets[b] += s.commit_buckets[b];
  }
}

static void lanes_free(cmd_lanes_t *l) {
  free(l->inflight_streams);
  free(l->waiting_streams);
  free(l->claimed_streams);
  free(l);
}

static void rebuild_async_closed_cb(uv_handle_t *h) { lanes_free(h->data); }

void cmd_lanes_destroy(cmd_lanes_t *l) {
  if (!l)
    return;
  atomic_store(&l->stop, true);
  l->phase = PHASE_FATAL; /* nothing new is handed over */
  if (l->rebuild_running) {
    uv_thread_join(&l->rebuild_thread);
    l->rebuild_running = false;
    cmd_state_destroy(l->rebuilt);
    l->rebuilt = NULL;
  }
  fail_waiting(l, SF_ECANCELED);
  /* each writer finishes its batch and fails what it has queued */
  for (size_t k = 0; k < l->n; k++) {
    if (l->lanes[k].sink)
      l->lanes[k].sink->vt->destroy(l->lanes[k].sink);
    l->lanes[k].sink = NULL;
  }
  uv_close((uv_handle_t *)&l->rebuild_async, rebuild_async_closed_cb);
}

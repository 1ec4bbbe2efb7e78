/* proj_worker: the consume -> apply thread (see proj_worker.h).
 *
 * Why a thread with blocking calls rather than the loop: a batch is
 * sequential by nature (poll, decode, one transaction, then the next poll
 * from where it ended), so non-blocking I/O would buy no overlap, only
 * callbacks. The loop thread stays free for /healthz, /readyz and /metrics,
 * which must answer even while a batch waits on PostgreSQL.
 *
 * Exactly-once: offsets live in projector_offsets, written in the batch's
 * transaction; the assign callback (run inside sf_kafka_consumer_poll, so
 * on this thread) seeks to them. A batch that fails is retried from the
 * messages kept in memory, so the consumer never has to seek backwards. If
 * the retries outlast max.poll.interval.ms the consumer leaves the group and
 * rejoins at the next poll; the new assignment re-reads the stored offsets,
 * which by then include the batch. */
#include "proj_worker.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proj_batch.h"
#include "proj_pg.h"
#include "sf/err.h"
#include "sf/event.h"
#include "sf/kafka.h"

#define MOD "projector"
#define IDLE_POLL_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STATS_DEFAULT_MS 10000

struct proj_worker {
  proj_worker_opts_t o;
  proj_status_t *st; /* borrowed */
  sf_log_t *log;     /* borrowed */
  atomic_bool stop;
  pthread_t thread;
  bool started;
  int exit_rc;

  sf_event_codec_t *codec;
  sf_kafka_consumer_t *consumer; /* closed by the thread as it ends */
  proj_pg_t *pg;

  /* the batch in hand; msgs[0..n) are owned until released */
  sf_kafka_msg_t *msgs;
  sf_event_t *events;
  proj_input_t *inputs;
  size_t n;
  proj_plan_t plan;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool stopping(proj_worker_t *w) {
  return atomic_load_explicit(&w->stop, memory_order_relaxed);
}

/* Sleeps ms in short slices; returns false when a stop was requested. */
static bool nap(proj_worker_t *w, int ms) {
  int64_t until = now_ms() + ms;
  while (!stopping(w)) {
    int64_t left = until - now_ms();
    if (left <= 0)
      return true;
    if (left > 50)
      left = 50;
    struct timespec ts = {0, (long)left * 1000000L};
    nanosleep(&ts, NULL);
  }
  return false;
}

static int next_backoff(int ms) {
  return ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
}

/* "inventory.stock[3]@17, inventory.stock[4]@beginning" into buf; without
 * offsets, just "inventory.stock[3], ...". */
static void describe_tps(char *buf, size_t cap, const sf_kafka_tp_t *tps,
                         size_t n, bool offsets) {
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && len < cap; i++) {
    int k;
    if (!offsets)
      k = snprintf(buf + len, cap - len, "%s%s[%d]", i ? ", " : "",
                   tps[i].topic, (int)tps[i].partition);
    else if (tps[i].offset >= 0)
      k = snprintf(buf + len, cap - len, "%s%s[%d]@%" PRId64, i ? ", " : "",
                   tps[i].topic, (int)tps[i].partition, tps[i].offset);
    else
      k = snprintf(buf + len, cap - len, "%s%s[%d]@beginning", i ? ", " : "",
                   tps[i].topic, (int)tps[i].partition);
    if (k < 0)
      break;
    len += (size_t)k;
  }
}

/* "inventory.stock[3] 100..120" per partition of the plan, into buf. */
static void describe_batch(char *buf, size_t cap, const proj_plan_t *p) {
  size_t len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < p->n_offsets && len < cap; i++) {
    const proj_offset_t *o = &p->offsets[i];
    int k = snprintf(buf + len, cap - len, "%s%s[%d] %" PRId64 "..%" PRId64,
                     i ? ", " : "", o->topic, (int)o->partition, o->first,
                     o->last);
    if (k < 0)
      break;
    len += (size_t)k;
  }
}

/* Assignment: seek every partition to its stored next offset. Without the
 * stored offsets we cannot start anywhere safely, so this retries until
 * PostgreSQL answers or a stop is requested (then the batch loop applies
 * nothing). */
static void on_assign_cb(void *ud, sf_kafka_tp_t *tps, size_t n) {
  proj_worker_t *w = ud;
  int backoff = BACKOFF_MIN_MS;
  for (;;) {
    proj_pg_error_t err;
    if (proj_pg_load_offsets(w->pg, tps, n, &err) == 0) {
      proj_status_set_pg(w->st, true);
      break;
    }
    proj_status_set_pg(w->st, false);
    SF_ERROR(w->log, MOD,
             "assignment: cannot read stored offsets (%s: SQLSTATE %s: %s); "
             "retrying in %d ms",
             err.stmt, err.sqlstate[0] ? err.sqlstate : "-", err.message,
             backoff);
    if (!nap(w, backoff))
      return; /* stopping: nothing will be applied */
    backoff = next_backoff(backoff);
  }
  char desc[2048];
  describe_tps(desc, sizeof desc, tps, n, true);
  SF_INFO(w->log, MOD, "assigned %zu partition(s), starting at: %s", n,
          n ? desc : "(none)");
  proj_status_set_assigned(w->st, true);
}

static void on_revoke_cb(void *ud, const sf_kafka_tp_t *tps, size_t n) {
  proj_worker_t *w = ud;
  char desc[2048];
  describe_tps(desc, sizeof desc, tps, n, false);
  SF_INFO(w->log, MOD, "revoked %zu partition(s): %s", n, n ? desc : "(none)");
  proj_status_set_assigned(w->st, false);
}

int proj_worker_new(proj_worker_t **out, const proj_worker_opts_t *opts,
                    proj_status_t *st, sf_log_t *log) {
  if (!out || !opts || !st || !opts->brokers || !opts->group ||
      !opts->topic_catalog || !opts->topic_stock || !opts->pg_dsn ||
      opts->batch_max < 1 || opts->batch_wait_ms < 0)
    return SF_EINVAL;
  int rc = SF_ENOMEM;
  proj_worker_t *w = calloc(1, sizeof *w);
  if (!w)
    return SF_ENOMEM;
  w->o = *opts;
  if (w->o.stats_interval_ms <= 0)
    w->o.stats_interval_ms = STATS_DEFAULT_MS;
  w->st = st;
  w->log = log;
  atomic_init(&w->stop, false);
  proj_plan_init(&w->plan);

  w->msgs = calloc(opts->batch_max, sizeof *w->msgs);
  w->events = calloc(opts->batch_max, sizeof *w->events);
  w->inputs = calloc(opts->batch_max, sizeof *w->inputs);
  if (!w->msgs || !w->events || !w->inputs)
    goto fail_arrays;
  rc = sf_event_codec_new(&w->codec);
  if (rc) {
    SF_ERROR(log, MOD, "cannot create the event codec: %s", sf_strerror(rc));
    goto fail_arrays;
  }
  rc = proj_pg_new(&w->pg, opts->pg_dsn, opts->group, log);
  if (rc)
    goto fail_pg;
  sf_kafka_consumer_opts_t co = {
      .brokers = opts->brokers,
      .group_id = opts->group,
      .client_id = "stockflow-projector",
      .on_assign = on_assign_cb,
      .on_revoke = on_revoke_cb,
      .cb_ud = w,
  };
  rc = sf_kafka_consumer_new(&w->consumer, &co, log);
  if (rc) {
    SF_ERROR(log, MOD, "cannot create the consumer: %s", sf_strerror(rc));
    goto fail_consumer;
  }
  *out = w;
  return 0;

fail_consumer:
  proj_pg_destroy(w->pg);
fail_pg:
  sf_event_codec_destroy(w->codec);
fail_arrays:
  free(w->inputs);
  free(w->events);
  free(w->msgs);
  free(w);
  return rc;
}

/* Releases the batch in hand (messages and decoded events). */
static void release_batch(proj_worker_t *w) {
  for (size_t i = 0; i < w->n; i++) {
    sf_event_clear(&w->events[i]);
    sf_kafka_msg_destroy(&w->msgs[i]);
  }
  w->n = 0;
}

/* Polls one batch into w->msgs: returns once batch_max messages are in,
 * batch_wait_ms after the first one, or on stop. *t0 gets the time of the
 * first message. Returns 0 or SF_EKAFKA_FATAL. */
static int fill_batch(proj_worker_t *w, int64_t *t0) {
  int64_t deadline = 0;
  while (w->n < w->o.batch_max && !stopping(w)) {
    int timeout = IDLE_POLL_MS;
    if (w->n > 0) {
      int64_t left = deadline - now_ms();
      if (left <= 0)
        break;
      timeout = (int)left;
    }
    int k = sf_kafka_consumer_poll(w->consumer, w->msgs + w->n,
                                   w->o.batch_max - w->n, timeout);
    if (k < 0) {
      if (k == SF_EKAFKA_FATAL)
        return k;
      SF_WARN(w->log, MOD, "poll: %s", sf_strerror(k));
      if (w->n == 0)
        continue;
      break;
    }
    if (k > 0 && w->n == 0) {
      *t0 = now_ms();
      deadline = *t0 + w->o.batch_wait_ms;
    }
    w->n += (size_t)k;
  }
  return 0;
}

/* Decodes the batch and builds its plan; logs every message that will not
 * be applied. Returns 0 or SF_ENOMEM. */
static int plan_batch(proj_worker_t *w) {
  for (size_t i = 0; i < w->n; i++) {
    const sf_kafka_msg_t *m = &w->msgs[i];
    sf_event_t *e = &w->events[i];
    proj_input_t *in = &w->inputs[i];
    *in = (proj_input_t){m->topic, m->partition, m->offset, NULL};
    int rc = SF_EPARSE;
    if (m->value && m->value_len > 0)
      rc = sf_event_decode(w->codec, m->value, m->value_len, e);
    else
      sf_event_init(e);
    if (rc == 0)
      in->ev = e;
    else
      SF_ERROR(w->log, MOD,
               "poison message %s[%d]@%" PRId64 " (%zu bytes): %s, skipped",
               m->topic, (int)m->partition, m->offset, m->value_len,
               sf_err_name(rc));
  }
  int rc = proj_plan_build(&w->plan, w->o.group, w->inputs, w->n);
  if (rc)
    return rc;
  for (size_t i = 0; i < w->n; i++) {
    const proj_input_t *in = &w->inputs[i];
    if (w->plan.verdicts[i] == PROJ_INVALID)
      SF_ERROR(w->log, MOD,
               "invalid event %s[%d]@%" PRId64 " (%s %s): %s, skipped",
               in->topic, (int)in->partition, in->offset,
               sf_event_type_name(in->ev->type), in->ev->event_id,
               w->plan.why[i]);
    else if (w->plan.verdicts[i] == PROJ_SKIPPED)
      SF_DEBUG(w->log, MOD, "event %s[%d]@%" PRId64 " of type %s not handled",
               in->topic, (int)in->partition, in->offset,
               sf_event_type_name(in->ev->type));
    else if (w->plan.verdicts[i] == PROJ_DUPLICATE)
      SF_DEBUG(w->log, MOD, "duplicate event %s[%d]@%" PRId64 " (%s)",
               in->topic, (int)in->partition, in->offset, in->ev->event_id);
  }
  return 0;
}

/* Applies the plan until it commits. Returns 0, or SF_ECANCELED when a stop
 * came first (the transaction was rolled back; nothing of the batch is
 * stored, so it is consumed again at the next start). */
static int apply_batch(proj_worker_t *w) {
  int backoff = BACKOFF_MIN_MS;
  for (;;) {
    proj_pg_error_t err;
    if (proj_pg_apply(w->pg, &w->plan, &err) == 0) {
      proj_status_set_pg(w->st, true);
      return 0;
    }
    proj_status_batch_failed(w->st);
    proj_status_set_pg(w->st, proj_pg_connected(w->pg));
    char desc[1024];
    describe_batch(desc, sizeof desc, &w->plan);
    SF_ERROR(w->log, MOD,
             "batch of %zu message(s) (%s) failed at %s: SQLSTATE %s: %s; "
             "rolled back, retrying in %d ms",
             w->n, desc, err.stmt, err.sqlstate[0] ? err.sqlstate : "-",
             err.message, backoff);
    if (!nap(w, backoff))
      return SF_ECANCELED;
    backoff = next_backoff(backoff);
  }
}

/* Connects to PostgreSQL, retrying until it answers or a stop comes. */
static bool connect_pg(proj_worker_t *w) {
  int backoff = BACKOFF_MIN_MS;
  for (;;) {
    proj_pg_error_t err;
    if (proj_pg_connect(w->pg, &err) == 0) {
      proj_status_set_pg(w->st, true);
      SF_INFO(w->log, MOD, "connected to postgresql");
      return true;
    }
    proj_status_set_pg(w->st, false);
    SF_ERROR(w->log, MOD, "postgresql: %s: %s; retrying in %d ms", err.stmt,
             err.message, backoff);
    if (!nap(w, backoff))
      return false;
    backoff = next_backoff(backoff);
  }
}

static int run(proj_worker_t *w) {
  if (!connect_pg(w))
    return 0;
  const char *topics[] = {w->o.topic_catalog, w->o.topic_stock};
  int rc = sf_kafka_consumer_subscribe(w->consumer, topics, 2);
  if (rc) {
    SF_ERROR(w->log, MOD, "cannot subscribe to %s and %s: %s", topics[0],
             topics[1], sf_strerror(rc));
    return rc;
  }
  SF_INFO(w->log, MOD, "consuming %s and %s as group %s (batches of up to %zu "
          "messages, %d ms)", topics[0], topics[1], w->o.group,
          w->o.batch_max, w->o.batch_wait_ms);

  int64_t stats_at = now_ms();
  uint64_t stats_events = proj_status_events_applied(w->st);
  while (!stopping(w)) {
    int64_t t0 = 0;
    rc = fill_batch(w, &t0);
    if (rc) {
      SF_ERROR(w->log, MOD, "consumer failed: %s", sf_strerror(rc));
      break;
    }
    if (w->n > 0 && !stopping(w)) {
      rc = plan_batch(w);
      if (rc) {
        SF_ERROR(w->log, MOD, "cannot plan a batch of %zu: %s", w->n,
                 sf_strerror(rc));
        break;
      }
      if (apply_batch(w) == 0) {
        double secs = (double)(now_ms() - t0) / 1000.0;
        if (proj_status_batch_committed(w->st, &w->plan, secs))
          SF_WARN(w->log, MOD, "metrics: out of memory for partition gauges");
        SF_DEBUG(w->log, MOD, "batch of %zu committed in %.3f s", w->n, secs);
      }
    }
    release_batch(w);

    int64_t now = now_ms();
    if (now - stats_at >= w->o.stats_interval_ms) {
      uint64_t total = proj_status_events_applied(w->st);
      double secs = (double)(now - stats_at) / 1000.0;
      SF_INFO(w->log, MOD,
              "applied %" PRIu64 " event(s) in the last %.1f s (%.0f/s), %"
              PRIu64 " in total",
              total - stats_events, secs, (double)(total - stats_events) / secs,
              total);
      stats_at = now;
      stats_events = total;
    }
  }
  release_batch(w);
  return rc;
}

static void *thread_main(void *arg) {
  proj_worker_t *w = arg;
  int rc = run(w);
  /* Close here so the consumer is only ever used from this thread; the
   * revoke callback runs inside the close. */
  sf_kafka_consumer_destroy(w->consumer);
  w->consumer = NULL;
  proj_status_set_assigned(w->st, false);
  w->exit_rc = rc;
  SF_INFO(w->log, MOD, "worker stopped%s%s", rc ? ": " : "",
          rc ? sf_strerror(rc) : "");
  if (w->o.on_exit)
    w->o.on_exit(w->o.on_exit_ud, rc);
  return NULL;
}

int proj_worker_start(proj_worker_t *w) {
  if (pthread_create(&w->thread, NULL, thread_main, w) != 0) {
    SF_ERROR(w->log, MOD, "cannot start the worker thread");
    return SF_EINTERNAL;
  }
  w->started = true;
  return 0;
}

void proj_worker_stop(proj_worker_t *w) {
  atomic_store_explicit(&w->stop, true, memory_order_relaxed);
}

int proj_worker_join(proj_worker_t *w) {
  if (!w->started)
    return 0;
  pthread_join(w->thread, NULL);
  w->started = false;
  return w->exit_rc;
}

void proj_worker_destroy(proj_worker_t *w) {
  if (!w)
    return;
  release_batch(w);
  sf_kafka_consumer_destroy(w->consumer);
  proj_pg_destroy(w->pg);
  sf_event_codec_destroy(w->codec);
  proj_plan_free(&w->plan);
  free(w->inputs);
  free(w->events);
  free(w->msgs);
  free(w);
}

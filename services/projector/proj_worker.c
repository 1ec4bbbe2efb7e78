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
 * which by then include the batch.
 *
 * Dead letters go out before the batch's transaction and are awaited; once
 * delivered they are not produced again for the same batch when only the
 * PostgreSQL part has to be retried. */
#include "proj_worker.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proj_batch.h"
#include "proj_dlq.h"
#include "proj_intake.h"
#include "proj_pg.h"
#include "sf/err.h"
#include "sf/event.h"
#include "sf/kafka.h"

#define MOD "projector"
#define IDLE_POLL_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STATS_DEFAULT_MS 10000
#define PRUNE_DEFAULT_MS 60000
#define LAG_DEFAULT_MS 5000
#define WATERMARK_TIMEOUT_MS 1000
#define DLQ_FLUSH_MS 20000
#define TOPIC_MAX 256

/* A partition of the current assignment. */
typedef struct owned_tp {
  char topic[TOPIC_MAX];
  int32_t partition;
  int64_t start; /* the stored offset it was assigned at (or BEGINNING) */
} owned_tp_t;

struct proj_worker {
  proj_worker_opts_t o;
  proj_status_t *st; /* borrowed */
  sf_log_t *log;     /* borrowed */
  atomic_bool stop;
  pthread_t thread;
  bool started;
  int exit_rc;

  sf_kafka_consumer_t *consumer; /* closed by the thread as it ends */
  proj_pg_t *pg;
  proj_dlq_t *dlq;
  proj_intake_t in; /* the batch in hand */

  owned_tp_t *owned; /* the assignment, for the lag gauges */
  size_t n_owned;
};

static bool stopping(proj_worker_t *w) {
  return atomic_load_explicit(&w->stop, memory_order_relaxed);
}

static bool stop_cb(void *ud) { return stopping(ud); }

/* Sleeps ms in short slices; returns false when a stop was requested. */
static bool nap(proj_worker_t *w, int ms) {
  int64_t until = proj_now_ms() + ms;
  while (!stopping(w)) {
    int64_t left = until - proj_now_ms();
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

/* Remembers the assignment (topics copied) for the lag gauges. */
static void remember_assignment(proj_worker_t *w, const sf_kafka_tp_t *tps,
                                size_t n) {
  free(w->owned);
  w->owned = NULL;
  w->n_owned = 0;
  if (n == 0)
    return;
  w->owned = calloc(n, sizeof *w->owned);
  if (!w->owned) {
    SF_WARN(w->log, MOD, "out of memory: no lag gauges for this assignment");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    snprintf(w->owned[i].topic, sizeof w->owned[i].topic, "%s", tps[i].topic);
    w->owned[i].partition = tps[i].partition;
    w->owned[i].start = tps[i].offset;
  }
  w->n_owned = n;
}

/* Assignment: seek every partition to its stored next offset. Without the
 * stored offsets we cannot start anywhere safely, so this retries until
 * PostgreSQL answers or a stop is requested (then the batch loop applies
 * nothing). Runs on every assignment, so a second instance taking over a
 * partition starts from what the first one committed. */
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
  remember_assignment(w, tps, n);
  proj_status_set_assigned(w->st, true);
}

static void on_revoke_cb(void *ud, const sf_kafka_tp_t *tps, size_t n) {
  proj_worker_t *w = ud;
  char desc[2048];
  describe_tps(desc, sizeof desc, tps, n, false);
  SF_INFO(w->log, MOD, "revoked %zu partition(s): %s", n, n ? desc : "(none)");
  remember_assignment(w, NULL, 0);
  proj_status_clear_lag(w->st);
  proj_status_set_assigned(w->st, false);
}

int proj_worker_new(proj_worker_t **out, const proj_worker_opts_t *opts,
                    proj_status_t *st, sf_log_t *log) {
  if (!out || !opts || !st || !opts->brokers || !opts->group ||
      !opts->topic_catalog || !opts->topic_stock || !opts->topic_dlq ||
      !opts->pg_dsn || opts->batch_max < 1 || opts->batch_wait_ms < 0)
    return SF_EINVAL;
  proj_worker_t *w = calloc(1, sizeof *w);
  if (!w)
    return SF_ENOMEM;
  w->o = *opts;
  if (w->o.stats_interval_ms <= 0)
    w->o.stats_interval_ms = STATS_DEFAULT_MS;
  if (w->o.prune_interval_ms <= 0)
    w->o.prune_interval_ms = PRUNE_DEFAULT_MS;
  if (w->o.lag_interval_ms <= 0)
    w->o.lag_interval_ms = LAG_DEFAULT_MS;
  w->st = st;
  w->log = log;
  atomic_init(&w->stop, false);

  int rc = proj_intake_init(&w->in, opts->batch_max, opts->registry_url);
  if (rc) {
    SF_ERROR(log, MOD, "cannot set up the batch buffers: %s", sf_strerror(rc));
    goto fail_intake;
  }
  proj_pg_opts_t po = {.dsn = opts->pg_dsn,
                       .group = opts->group,
                       .schema = NULL,
                       .change_log = true};
  rc = proj_pg_new(&w->pg, &po, log);
  if (rc)
    goto fail_pg;
  rc = proj_dlq_new(&w->dlq, opts->brokers, opts->topic_dlq, log);
  if (rc) {
    SF_ERROR(log, MOD, "cannot create the dead-letter producer: %s",
             sf_strerror(rc));
    goto fail_dlq;
  }
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
  proj_dlq_destroy(w->dlq);
fail_dlq:
  proj_pg_destroy(w->pg);
fail_pg:
  proj_intake_free(&w->in);
fail_intake:
  free(w);
  return rc;
}

/* Produces the batch's dead letters and waits for their acknowledgement.
 * Returns the number delivered (>= 0) or a negative code. */
static int send_dead_letters(proj_worker_t *w) {
  size_t n = 0;
  for (size_t i = 0; i < w->in.n; i++) {
    if (!proj_intake_is_dead(&w->in, i))
      continue;
    const sf_kafka_msg_t *m = &w->in.msgs[i];
    char why[256];
    proj_intake_error(&w->in, i, why, sizeof why);
    int rc = proj_dlq_add(w->dlq, m->key, m->key_len, m->value, m->value_len,
                          why, m->topic, m->partition, m->offset);
    if (rc) {
      (void)proj_dlq_flush(w->dlq, DLQ_FLUSH_MS); /* settle what was queued */
      return rc;
    }
    n++;
  }
  if (n == 0)
    return 0;
  int rc = proj_dlq_flush(w->dlq, DLQ_FLUSH_MS);
  if (rc)
    return rc;
  SF_WARN(w->log, MOD, "%zu message(s) dead-lettered to %s", n,
          proj_dlq_topic(w->dlq));
  return (int)n;
}

/* Applies the batch until it commits: dead letters first (once), then the
 * PostgreSQL transaction. Returns 0, or SF_ECANCELED when a stop came first
 * (nothing of the batch is stored, so it is consumed again at the next
 * start; its dead letters may then be written twice). */
static int apply_batch(proj_worker_t *w, proj_pg_result_t *res) {
  int backoff = BACKOFF_MIN_MS;
  bool dead_done = w->in.plan.n_by_verdict[PROJ_POISON] +
                       w->in.plan.n_by_verdict[PROJ_INVALID] ==
                   0;
  char desc[1024];
  for (;;) {
    if (!dead_done) {
      int k = send_dead_letters(w);
      if (k >= 0) {
        dead_done = true;
        proj_status_add_dead_letters(w->st, (size_t)k);
      } else {
        proj_status_dlq_failed(w->st);
        describe_batch(desc, sizeof desc, &w->in.plan);
        SF_ERROR(w->log, MOD,
                 "batch of %zu message(s) (%s): dead letters not delivered "
                 "to %s (%s); retrying in %d ms",
                 w->in.n, desc, proj_dlq_topic(w->dlq), sf_strerror(k),
                 backoff);
        if (!nap(w, backoff))
          return SF_ECANCELED;
        backoff = next_backoff(backoff);
        continue;
      }
    }
    proj_pg_error_t err;
    if (proj_pg_apply(w->pg, &w->in.plan, res, &err) == 0) {
      proj_status_set_pg(w->st, true);
      return 0;
    }
    proj_status_batch_failed(w->st);
    proj_status_set_pg(w->st, proj_pg_connected(w->pg));
    describe_batch(desc, sizeof desc, &w->in.plan);
    SF_ERROR(w->log, MOD,
             "batch of %zu message(s) (%s) failed at %s: SQLSTATE %s: %s; "
             "rolled back, retrying in %d ms",
             w->in.n, desc, err.stmt, err.sqlstate[0] ? err.sqlstate : "-",
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

/* Lag of every assigned partition: high watermark (the last stable offset
 * under read_committed) minus the consumer's position, which between
 * batches is the next offset to apply. Before anything was consumed from a
 * partition the position is unknown; the offset it was assigned at (or the
 * low watermark for "beginning") stands in. */
static void refresh_lag(proj_worker_t *w) {
  for (size_t i = 0; i < w->n_owned && !stopping(w); i++) {
    const owned_tp_t *o = &w->owned[i];
    int64_t low, high, pos;
    if (sf_kafka_watermarks(w->consumer, o->topic, o->partition,
                            WATERMARK_TIMEOUT_MS, &low, &high)) {
      proj_status_set_lag(w->st, o->topic, o->partition, -1);
      continue;
    }
    if (sf_kafka_position(w->consumer, o->topic, o->partition, &pos))
      pos = o->start >= 0 ? o->start : low;
    int64_t lag = high - pos;
    SF_DEBUG(w->log, MOD, "lag of %s[%d]: low %" PRId64 ", high %" PRId64 ", position %" PRId64, o->topic, (int)o->partition, low, high,
             pos);
    proj_status_set_lag(w->st, o->topic, o->partition, lag > 0 ? lag : 0);
  }
}

static void prune_changes(proj_worker_t *w) {
  if (w->o.retention_s <= 0)
    return;
  proj_pg_error_t err;
  int64_t deleted = 0, through = 0;
  if (proj_pg_prune(w->pg, w->o.retention_s, &deleted, &through, &err)) {
    SF_WARN(w->log, MOD,
            "change log retention failed at %s: SQLSTATE %s: %s (next try "
            "in %d ms)",
            err.stmt, err.sqlstate[0] ? err.sqlstate : "-", err.message,
            w->o.prune_interval_ms);
    return;
  }
  proj_status_pruned(w->st, deleted, through);
  if (deleted > 0)
    SF_INFO(w->log, MOD,
            "change log retention: deleted %" PRId64
            " row(s) older than %lld s, pruned through id %" PRId64,
            deleted, w->o.retention_s, through);
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
  SF_INFO(w->log, MOD,
          "consuming %s and %s as group %s (batches of up to %zu "
          "messages, %d ms; dead letters to %s)",
          topics[0], topics[1], w->o.group, w->o.batch_max, w->o.batch_wait_ms,
          w->o.topic_dlq);

  int64_t stats_at = proj_now_ms(), lag_at = 0, prune_at = proj_now_ms();
  uint64_t stats_events = proj_status_events_applied(w->st);
  while (!stopping(w)) {
    int64_t t0 = 0;
    rc = proj_intake_fill(&w->in, w->consumer, w->o.batch_wait_ms,
                          IDLE_POLL_MS, stop_cb, w, &t0, w->log);
    if (rc) {
      SF_ERROR(w->log, MOD, "consumer failed: %s", sf_strerror(rc));
      break;
    }
    if (w->in.n > 0 && !stopping(w) &&
        proj_intake_learn(&w->in, stop_cb, w, w->log) == 0) {
      rc = proj_intake_plan(&w->in, w->o.group, w->log);
      if (rc) {
        SF_ERROR(w->log, MOD, "cannot plan a batch of %zu: %s", w->in.n,
                 sf_strerror(rc));
        break;
      }
      proj_pg_result_t res;
      if (apply_batch(w, &res) == 0) {
        double secs = (double)(proj_now_ms() - t0) / 1000.0;
        if (proj_status_batch_committed(w->st, &w->in.plan, secs))
          SF_WARN(w->log, MOD, "metrics: out of memory for partition gauges");
        proj_status_add_changes(w->st, res.changes);
        SF_DEBUG(w->log, MOD,
                 "batch of %zu committed in %.3f s (%zu change(s), up to id "
                 "%" PRId64 ")",
                 w->in.n, secs, res.changes, res.max_change);
      }
    }
    proj_intake_release(&w->in);
    rc = 0;

    int64_t now = proj_now_ms();
    if (now - lag_at >= w->o.lag_interval_ms) {
      refresh_lag(w);
      lag_at = proj_now_ms();
    }
    if (now - prune_at >= w->o.prune_interval_ms) {
      prune_changes(w);
      prune_at = proj_now_ms();
    }
    if (now - stats_at >= w->o.stats_interval_ms) {
      uint64_t total = proj_status_events_applied(w->st);
      double secs = (double)(now - stats_at) / 1000.0;
      SF_INFO(w->log, MOD,
              "applied %" PRIu64 " event(s) in the last %.1f s (%.0f/s), %" PRIu64
              " in total",
              total - stats_events, secs, (double)(total - stats_events) / secs,
              total);
      stats_at = now;
      stats_events = total;
    }
  }
  proj_intake_release(&w->in);
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
  proj_intake_release(&w->in);
  sf_kafka_consumer_destroy(w->consumer);
  proj_dlq_destroy(w->dlq);
  proj_pg_destroy(w->pg);
  proj_intake_free(&w->in);
  free(w->owned);
  free(w);
}

/* cmd_writer: one writer lane: group commit over a transactional producer,
 * on its own thread (a commit blocks, the loop must not), with the producer
 * replaced when it breaks. See cmd_writer.h for the contract. Kafka is
 * reached through sf_kafka's transactional producer, which serves delivery
 * reports on this thread, so a batch sees every report before it commits;
 * its outcomes (retry, abortable, broken, fenced) drive the recovery
 * below. */
#include "cmd_writer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sf/err.h"
#include "sf/kafka.h"

typedef enum outbox_kind {
  OUT_DONE,
  OUT_READY,
  OUT_FAILED,
  OUT_FATAL
} outbox_kind_t;

typedef struct outbox {
  struct outbox *next;
  outbox_kind_t kind;
  cmd_unit_t *unit;
  int32_t partitions;
  bool recovering;
  char reason[256];
} outbox_t;

struct cmd_writer {
  cmd_sink_t base; /* first member: the sink vtable */
  uv_loop_t *loop;
  sf_log_t *log;
  cmd_writer_opts_t opts;
  cmd_writer_cbs_t cbs;
  uv_thread_t thread;
  bool thread_started;
  uv_mutex_t mu;
  uv_cond_t cv;
  atomic_bool stop;
  uv_async_t async;
  /* guarded by mu */
  cmd_unit_t *queue_head, *queue_tail;
  uint64_t accept_gen; /* 0: accepting nothing (after a failure) */
  outbox_t *out_head, *out_tail;
  cmd_writer_stats_t stats;
  uint64_t next_batch_id;
  /* writer thread only */
  sf_kafka_producer_t *producer;
  sf_kafka_lso_t *watch; /* read_committed offsets for wait_visible (lazy) */
  double txn_started;    /* monotonic seconds of the open transaction's begin */
  double committed_at;   /* when the last commit returned; 0: none yet */
};

/* The producer's transaction.timeout.ms: the coordinator aborts (and bumps
 * the epoch of) a transaction left open longer. */
#define TXN_COORDINATOR_TIMEOUT_MS 10000

const double cmd_commit_bounds[CMD_COMMIT_BUCKETS] = {
    0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5};

size_t cmd_writer_commit_bucket(double seconds) {
  size_t i = 0;
  while (i < CMD_COMMIT_BUCKETS && seconds > cmd_commit_bounds[i])
    i++;
  return i;
}

uint64_t cmd_stream_hash(const char *a, const char *b) {
  /* FNV-1a, 64 bits, over a, a separator, b */
  uint64_t h = UINT64_C(14695981039346656037);
  for (const char *s = a; s && *s; s++)
    h = (h ^ (uint8_t)*s) * UINT64_C(1099511628211);
  h = (h ^ (uint8_t)'/') * UINT64_C(1099511628211);
  for (const char *s = b; s && *s; s++)
    h = (h ^ (uint8_t)*s) * UINT64_C(1099511628211);
  return h;
}

void cmd_msg_free(cmd_msg_t *m) {
  if (!m)
    return;
  free(m->streams);
  free(m->value);
  free(m);
}

void cmd_unit_free(cmd_unit_t *u) {
  if (!u)
    return;
  cmd_msg_t *m = u->msgs;
  while (m) {
    cmd_msg_t *next = m->next;
    cmd_msg_free(m);
    m = next;
  }
  free(u);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps up to ms, waking early on stop. */
static void nap(cmd_writer_t *w, unsigned ms) {
  for (unsigned slept = 0; slept < ms && !atomic_load(&w->stop); slept += 50)
    uv_sleep(50);
}

/* ---- the outbox: writer thread -> loop thread ---- */

static void post(cmd_writer_t *w, outbox_t *o) {
  uv_mutex_lock(&w->mu);
  if (w->out_tail)
    w->out_tail->next = o;
  else
    w->out_head = o;
  w->out_tail = o;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
}

/* Out of memory for a notice is fatal to the process: the loop would wait
 * forever for an answer. This is the one OOM policy of the writer. */
static outbox_t *outbox_new(outbox_kind_t kind) {
  outbox_t *o = calloc(1, sizeof(*o));
  if (!o)
    abort();
  o->kind = kind;
  return o;
}

static void post_unit(cmd_writer_t *w, cmd_unit_t *u, int err) {
  u->err = err;
  outbox_t *o = outbox_new(OUT_DONE);
  o->unit = u;
  post(w, o);
}

static void post_reason(cmd_writer_t *w, outbox_kind_t kind,
                        const char *reason, bool recovering) {
  outbox_t *o = outbox_new(kind);
  /* bounded copy: reasons are truncated, never overflow */
  size_t n = strnlen(reason, sizeof(o->reason) - 1);
  memcpy(o->reason, reason, n);
  o->reason[n] = '\0';
  o->recovering = recovering;
  post(w, o);
}

static void dispatch(cmd_writer_t *w, outbox_t *o) {
  switch (o->kind) {
  case OUT_DONE:
    w->cbs.done(w->cbs.ud, o->unit);
    break;
  case OUT_READY:
    w->cbs.ready(w->cbs.ud, w->opts.lane, o->partitions);
    break;
  case OUT_FAILED:
    w->cbs.failed(w->cbs.ud, w->opts.lane, o->reason, o->recovering);
    break;
  case OUT_FATAL:
    w->cbs.fatal(w->cbs.ud, w->opts.lane, o->reason);
    break;
  }
  free(o);
}

static void drain_outbox(cmd_writer_t *w) {
  uv_mutex_lock(&w->mu);
  outbox_t *o = w->out_head;
  w->out_head = w->out_tail = NULL;
  uv_mutex_unlock(&w->mu);
  while (o) {
    outbox_t *next = o->next;
    dispatch(w, o);
    o = next;
  }
}

static void async_cb(uv_async_t *h) { drain_outbox(h->data); }

/* ---- Kafka ---- */

/* A message's delivery report (on the writer thread, inside the producer's
 * send, await, commit or abort). */
static void delivered_cb(void *ud, int err, int32_t partition, int64_t offset,
                         const char *errstr) {
  cmd_msg_t *msg = ud;
  (void)errstr;
  if (err) {
    msg->err = SF_EKAFKA;
  } else {
    msg->err = 0;
    msg->partition = partition;
    msg->offset = offset;
  }
}

static sf_kafka_producer_t *make_producer(cmd_writer_t *w) {
  char errstr[512];
  char timeout[32], txn_timeout[32];
  snprintf(timeout, sizeof(timeout), "%d", w->opts.txn_timeout_ms);
  snprintf(txn_timeout, sizeof(txn_timeout), "%d", TXN_COORDINATOR_TIMEOUT_MS);
  /* the producer adds transactional.id, enable.idempotence=true and
   * acks=all */
  const char *settings[][2] = {
      {"bootstrap.servers", w->opts.brokers},
      {"client.id", "stockflow-command"},
      {"partitioner", "murmur2_random"},
      {"linger.ms", "0"},
      {"compression.type", "lz4"},
      {"transaction.timeout.ms", txn_timeout},
      {"message.timeout.ms", timeout},
      {"queue.buffering.max.messages", "1000000"},
      /* Small requests on loopback or a LAN must not wait for Nagle, and a
       * transaction that starts while the coordinator still completes the
       * previous one (CONCURRENT_TRANSACTIONS) should be retried at once,
       * not after 100 ms: together they halved the time per transaction
       * here (sf-kafka-limit: flush 34 -> 18 ms, docs/benchmarks.md). */
      {"socket.nagle.disable", "true"},
      {"retry.backoff.ms", "5"},
      /* A broker that went away is retried quickly once it is back. */
      {"reconnect.backoff.ms", "50"},
      {"reconnect.backoff.max.ms", "1000"},
      /* last: left out when empty */
      {"debug", w->opts.kafka_debug},
  };
  size_t n = sizeof(settings) / sizeof(settings[0]);
  if (!w->opts.kafka_debug || !*w->opts.kafka_debug)
    n--;
  sf_kafka_producer_t *p = NULL;
  if (sf_kafka_producer_new(&p, settings, n,
                            w->opts.transactional_id, w->log, errstr,
                            sizeof(errstr)))
    SF_ERROR(w->log, "kafka", "lane %u: creating producer: %s", w->opts.lane,
             errstr);
  return p;
}

static bool outcome_fatal(sf_kafka_txn_outcome_t o) {
  return o == SF_KAFKA_TXN_BROKEN || o == SF_KAFKA_TXN_FENCED;
}

/* Writes the reason of a transactional call that did not succeed and logs
 * it; returns o. */
static sf_kafka_txn_outcome_t txn_note(cmd_writer_t *w,
                                       sf_kafka_txn_outcome_t o,
                                       const char *what, const char *why,
                                       char *reason, size_t cap) {
  if (o == SF_KAFKA_TXN_OK)
    return o;
  snprintf(reason, cap, "lane %u: %s: %s", w->opts.lane, what, why);
  SF_LOG(w->log, o == SF_KAFKA_TXN_RETRY ? SF_LOG_WARN : SF_LOG_ERROR,
         "kafka", "%s%s", reason, outcome_fatal(o) ? " [fatal]" : "");
  return o;
}

/* The CloudEvents Kafka binding headers of m (values borrowed from m). */
static size_t make_headers(const cmd_msg_t *m, sf_kafka_header_t h[7]) {
  size_t n = 0;
#define HDR(name, value) \
  h[n++] = (sf_kafka_header_t){(name), (value), strlen(value)}
  HDR("ce_specversion", "1.0");
  HDR("ce_id", m->ce_id);
  HDR("ce_type", m->ce_type);
  HDR("ce_source", "/stockflow/command");
  HDR("ce_time", m->ce_time);
  if (m->ce_subject[0])
    HDR("ce_subject", m->ce_subject);
  HDR("content-type", "application/avro");
#undef HDR
  return n;
}

/* Result of one batch. */
typedef enum batch_result {
  BATCH_OK,
  BATCH_BROKEN, /* failed (aborted or worse): the producer is replaced */
  BATCH_FENCED  /* another instance took our transactional id */
} batch_result_t;

/* After a fatal error: was it a fence by another instance? librdkafka
 * reports every fence as fatal (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH ->
 * _FENCED), also the one the coordinator causes itself when it aborts a
 * transaction that stayed open past transaction.timeout.ms (the broker was
 * away, or this process was stopped). A transaction younger than that
 * timeout cannot have been aborted by the coordinator: someone else ran
 * init_transactions with our id. */
static batch_result_t fatal_kind(cmd_writer_t *w, char *reason, size_t cap) {
  char fatal[256] = "";
  sf_kafka_txn_outcome_t o =
      sf_kafka_producer_fatal(w->producer, fatal, sizeof(fatal));
  double age_ms = (now_s() - w->txn_started) * 1000.0;
  if (fatal[0])
    snprintf(reason, cap, "lane %u: %s", w->opts.lane, fatal);
  if (o == SF_KAFKA_TXN_FENCED && age_ms < 0.9 * TXN_COORDINATOR_TIMEOUT_MS)
    return BATCH_FENCED;
  return BATCH_BROKEN;
}

/* Produces every message of units in one transaction and commits. */
static batch_result_t run_batch(cmd_writer_t *w, cmd_unit_t *units,
                                char *reason, size_t cap) {
  sf_kafka_producer_t *p = w->producer;
  char why[160];
  w->txn_started = now_s();
  sf_kafka_txn_outcome_t o =
      txn_note(w, sf_kafka_producer_begin(p, why, sizeof(why)),
               "begin_transaction", why, reason, cap);
  if (outcome_fatal(o))
    return fatal_kind(w, reason, cap);
  if (o != SF_KAFKA_TXN_OK)
    return BATCH_BROKEN; /* a transaction we cannot begin: start afresh */

  bool failed = false;
  for (cmd_unit_t *u = units; u && !failed; u = u->next) {
    for (cmd_msg_t *m = u->msgs; m && !failed; m = m->next) {
      m->err = SF_EINTERNAL; /* until its delivery report says otherwise */
      sf_kafka_header_t h[7];
      size_t n_h = make_headers(m, h);
      if (sf_kafka_producer_send(p, m->topic, m->to_partition, m->key,
                                 strlen(m->key), m->value, m->value_len,
                                 h, n_h, delivered_cb, m, why,
                                 sizeof(why))) {
        snprintf(reason, cap, "lane %u: produce to %s: %s", w->opts.lane,
                 m->topic, why);
        SF_ERROR(w->log, "kafka", "%s", reason);
        failed = true;
      }
    }
  }
  if (!failed && sf_kafka_producer_await(p, w->opts.txn_timeout_ms)) {
    snprintf(reason, cap, "lane %u: delivery reports not in within %d ms",
             w->opts.lane, w->opts.txn_timeout_ms);
    failed = true;
  }
  if (!failed) {
    for (cmd_unit_t *u = units; u && !failed; u = u->next)
      for (cmd_msg_t *m = u->msgs; m && !failed; m = m->next)
        if (m->err) {
          snprintf(reason, cap, "lane %u: delivery to %s failed",
                   w->opts.lane, m->topic);
          failed = true;
        }
  }
  if (!failed) {
    /* retried while the whole transaction is within its bound, so a
     * request waits at most about twice txn_timeout_ms for its answer */
    double deadline = w->txn_started + w->opts.txn_timeout_ms / 1000.0;
    for (;;) {
      int left_ms = (int)((deadline - now_s()) * 1000.0);
      if (left_ms < 1000)
        left_ms = 1000;
      o = txn_note(w,
                   sf_kafka_producer_commit(p, left_ms, why, sizeof(why)),
                   "commit_transaction", why, reason, cap);
      if (o == SF_KAFKA_TXN_RETRY && now_s() < deadline &&
          !atomic_load(&w->stop))
        continue;
      break;
    }
    if (o == SF_KAFKA_TXN_OK)
      return BATCH_OK;
    if (outcome_fatal(o))
      return fatal_kind(w, reason, cap);
    /* a commit still undecided after its retries (RETRY): the outcome is
     * unknown to us; the new producer's init_transactions settles it (the
     * coordinator completes or aborts it) and the rebuild reads what the
     * log holds */
    if (o == SF_KAFKA_TXN_RETRY)
      return BATCH_BROKEN;
  }
  if (sf_kafka_producer_fatal(p, why, sizeof(why)) != SF_KAFKA_TXN_OK)
    return fatal_kind(w, reason, cap);
  char abort_reason[256];
  o = txn_note(w,
               sf_kafka_producer_abort(p, w->opts.txn_timeout_ms, why,
                                       sizeof(why)),
               "abort_transaction", why, abort_reason, sizeof(abort_reason));
  /* Even a clean abort ends this producer. A message whose delivery
   * report did not come (the broker went away after writing it, then our
   * wait or librdkafka's purge gave up on it) may be in the log with its
   * sequence number; librdkafka 2.0 can reuse that number for the next
   * transaction's first message on the same epoch, and the broker then
   * takes the new message for a retry of the old one: it answers with the
   * old, aborted offset and writes nothing, so the new transaction
   * "commits" without its event (seen once in ~20 fault-suite runs: a 201
   * whose event was absent). A new producer's init_transactions bumps the
   * epoch, which starts the sequences afresh. */
  if (outcome_fatal(o))
    return fatal_kind(w, reason, cap);
  return BATCH_BROKEN;
}

/* After a commit with catalog events: waits (bounded) until read_committed
 * readers can see them, i.e. the partition's last stable offset is past
 * them. The commit returns before the coordinator has written the commit
 * markers; without this wait another lane's stock event naming a new store
 * or product could become readable first (Kafka orders partitions, not
 * topics). The query goes through a read_committed consumer handle (a
 * producer's ListOffsets read uncommitted: its "high" would be the high
 * watermark, past the events at once), so "high" is the stable offset. */
static sf_kafka_lso_t *make_watcher(cmd_writer_t *w) {
  char errstr[512];
  /* the reader adds isolation.level=read_committed and no auto commit */
  const char *settings[][2] = {
      {"bootstrap.servers", w->opts.brokers},
      {"client.id", "stockflow-command-visibility"},
      /* never joined nor committed to: only ListOffsets go out */
      {"group.id", "stockflow-command-visibility"},
      {"socket.nagle.disable", "true"},
  };
  sf_kafka_lso_t *l = NULL;
  if (sf_kafka_lso_new(&l, settings, sizeof(settings) / sizeof(settings[0]),
                       w->log, errstr, sizeof(errstr)))
    SF_ERROR(w->log, "kafka", "lane %u: visibility consumer: %s", w->opts.lane,
             errstr);
  return l;
}

static void wait_visible(cmd_writer_t *w, const cmd_unit_t *units) {
  double deadline = now_s() + 2.0;
  if (!w->watch)
    w->watch = make_watcher(w);
  if (!w->watch)
    return;
  for (const cmd_unit_t *u = units; u; u = u->next) {
    if (!u->wait_visible)
      continue;
    for (const cmd_msg_t *m = u->msgs; m; m = m->next) {
      for (;;) {
        int64_t stable = -1;
        const char *why = NULL;
        int err = sf_kafka_lso_get(w->watch, m->topic, m->partition, 1000,
                                   &stable, &why);
        if (!err && stable > m->offset)
          break;
        if (now_s() > deadline || atomic_load(&w->stop)) {
          SF_WARN(w->log, "writer", "lane %u: %s [%d] offset %lld not yet "
                                    "readable after 2 s (%s)",
                  w->opts.lane, m->topic, (int)m->partition,
                  (long long)m->offset,
                  err ? why : "stable offset behind");
          return;
        }
        uv_sleep(1);
      }
    }
  }
}

/* The stock topic's partition count, or 0 when unknown. */
static int32_t stock_partitions(cmd_writer_t *w) {
  int32_t n = 0;
  if (sf_kafka_producer_partition_count(w->producer, w->opts.topic_stock,
                                        5000, &n))
    n = 0;
  return n;
}

/* Creates the producer and runs init_transactions until it works (the
 * broker may be away: retried with a growing pause), stop, or a fatal
 * error. init_transactions fences every earlier producer with our id and
 * completes or aborts what it left open. Returns 0, SF_ECANCELED or
 * SF_EKAFKA_FATAL (reported). */
static int start_producer(cmd_writer_t *w) {
  char reason[256];
  unsigned backoff_ms = 100;
  for (;;) {
    if (atomic_load(&w->stop))
      return SF_ECANCELED;
    if (!w->producer) {
      w->producer = make_producer(w);
      if (!w->producer) {
        post_reason(w, OUT_FATAL, "cannot create the Kafka producer (see the "
                                  "log)",
                    false);
        return SF_EKAFKA_FATAL;
      }
    }
    char why[160];
    sf_kafka_txn_outcome_t o = txn_note(
        w, sf_kafka_producer_init(w->producer, 5000, why, sizeof(why)),
        "init_transactions", why, reason, sizeof(reason));
    if (o == SF_KAFKA_TXN_OK)
      break;
    if (outcome_fatal(o)) {
      /* e.g. not authorised for the id, or the broker is too old: a new
       * producer would fail the same way */
      post_reason(w, OUT_FATAL, reason, false);
      return SF_EKAFKA_FATAL;
    }
    if (o == SF_KAFKA_TXN_ABORTABLE) {
      /* a producer that cannot initialise: start again with a new one */
      sf_kafka_producer_destroy(w->producer);
      w->producer = NULL;
    }
    nap(w, backoff_ms);
    if (backoff_ms < 2000)
      backoff_ms *= 2;
  }
  int32_t n = 0;
  for (int i = 0; i < 5 && n <= 0 && !atomic_load(&w->stop); i++)
    n = stock_partitions(w);
  SF_INFO(w->log, "writer", "lane %u ready: transactional id %s, %s has %d "
                            "partitions",
          w->opts.lane, w->opts.transactional_id,
          w->opts.topic_stock, (int)n);
  outbox_t *r = outbox_new(OUT_READY);
  r->partitions = n;
  post(w, r);
  return 0;
}

static void destroy_producer(cmd_writer_t *w) {
  /* purges: nothing of ours may be in flight, and no report of a batch
   * already answered reaches its messages */
  sf_kafka_producer_destroy(w->producer);
  w->producer = NULL;
}

/* Takes queued units up to max_batch messages (at least one unit). */
static cmd_unit_t *take_batch(cmd_writer_t *w) {
  cmd_unit_t *head = NULL, *tail = NULL;
  size_t msgs = 0;
  while (w->queue_head) {
    cmd_unit_t *u = w->queue_head;
    if (head && msgs + u->n_msgs > w->opts.max_batch)
      break;
    w->queue_head = u->next;
    if (!w->queue_head)
      w->queue_tail = NULL;
    u->next = NULL;
    if (tail)
      tail->next = u;
    else
      head = u;
    tail = u;
    msgs += u->n_msgs;
  }
  return head;
}

/* Fails every queued unit; mu held by the caller (the outbox has its own
 * lock order: post takes mu, so collect first, post after unlocking). */
static cmd_unit_t *unqueue_all(cmd_writer_t *w) {
  cmd_unit_t *u = w->queue_head;
  w->queue_head = w->queue_tail = NULL;
  return u;
}

static void post_all(cmd_writer_t *w, cmd_unit_t *u, int err) {
  while (u) {
    cmd_unit_t *next = u->next;
    u->next = NULL;
    post_unit(w, u, err);
    u = next;
  }
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* See cmd_writer.h. Without the gap a busy lane paid librdkafka's fixed
 * 20 ms CONCURRENT_TRANSACTIONS backoff on most transactions. */
double cmd_writer_pause(int64_t linger_us, int64_t gap_us,
                        double committed_at, double now) {
  double pause = (double)linger_us / 1e6;
  if (committed_at > 0) {
    double rest = committed_at + (double)gap_us / 1e6 - now;
    if (rest > pause)
      pause = rest;
  }
  return pause;
}

static void writer_main(void *arg) {
  cmd_writer_t *w = arg;
  char reason[256];
  SF_INFO(w->log, "writer", "lane %u: initialising transactions as %s",
          w->opts.lane, w->opts.transactional_id);
  if (start_producer(w))
    goto out;

  while (!atomic_load(&w->stop)) {
    uv_mutex_lock(&w->mu);
    while (!w->queue_head && !atomic_load(&w->stop))
      uv_cond_wait(&w->cv, &w->mu);
    if (atomic_load(&w->stop)) {
      uv_mutex_unlock(&w->mu);
      break;
    }
    double pause = cmd_writer_pause(w->opts.linger_us, w->opts.commit_gap_us,
                                    w->committed_at, now_s());
    if (pause > 0) {
      uv_mutex_unlock(&w->mu);
      sleep_s(pause);
      uv_mutex_lock(&w->mu);
    }
    cmd_unit_t *batch = take_batch(w);
    uint64_t gen = w->accept_gen;
    uint64_t batch_id = ++w->next_batch_id;
    uv_mutex_unlock(&w->mu);

    /* Units decided against another state never reach Kafka. */
    cmd_unit_t *live = NULL, **tailp = &live;
    size_t n_units = 0, n_msgs = 0;
    while (batch) {
      cmd_unit_t *next = batch->next;
      batch->next = NULL;
      if (gen == 0 || batch->generation != gen) {
        post_unit(w, batch, SF_EUNAVAILABLE);
      } else {
        *tailp = batch;
        tailp = &batch->next;
        n_units++;
        n_msgs += batch->n_msgs;
      }
      batch = next;
    }
    if (!live)
      continue;

    double t0 = now_s();
    batch_result_t res = run_batch(w, live, reason, sizeof(reason));
    double dt = now_s() - t0;
    if (res == BATCH_OK && dt > 1.0)
      SF_WARN(w->log, "writer", "lane %u: batch %llu of %zu commands took "
                                "%.3f s to commit",
              w->opts.lane, (unsigned long long)batch_id, n_units, dt);
    if (res == BATCH_OK)
      w->committed_at = now_s();
    if (res == BATCH_OK)
      wait_visible(w, live);

    cmd_unit_t *dropped = NULL;
    uv_mutex_lock(&w->mu);
    if (res == BATCH_OK) {
      w->stats.batches++;
      w->stats.batch_units += n_units;
      w->stats.batch_msgs += n_msgs;
      w->stats.commit_seconds_sum += dt;
      size_t bucket = cmd_writer_commit_bucket(dt);
      if (bucket < CMD_COMMIT_BUCKETS)
        w->stats.commit_buckets[bucket]++;
    } else {
      /* Everything decided after the failed batch assumed it. */
      w->stats.failed_batches++;
      w->accept_gen = 0;
      dropped = unqueue_all(w);
    }
    uv_mutex_unlock(&w->mu);

    int err = res == BATCH_OK ? 0 : SF_EUNAVAILABLE;
    while (live) {
      cmd_unit_t *next = live->next;
      live->next = NULL;
      live->batch_id = batch_id;
      live->batch_units = n_units;
      post_unit(w, live, err);
      live = next;
    }
    if (res == BATCH_OK)
      continue;
    post_all(w, dropped, SF_EUNAVAILABLE);

    SF_ERROR(w->log, "writer", "lane %u: batch %llu of %zu commands failed "
                               "(%s): answering 503; %s",
             w->opts.lane,
             (unsigned long long)batch_id, n_units, reason,
             res == BATCH_FENCED ? "another instance took over this lane"
                                 : "replacing the producer");
    if (res == BATCH_FENCED) {
      post_reason(w, OUT_FATAL, reason, false);
      break;
    }
    post_reason(w, OUT_FAILED, reason, true);
    uv_mutex_lock(&w->mu);
    w->stats.recoveries++;
    uv_mutex_unlock(&w->mu);
    destroy_producer(w);
    if (start_producer(w))
      break;
  }

out:;
  uv_mutex_lock(&w->mu);
  cmd_unit_t *left = unqueue_all(w);
  uv_mutex_unlock(&w->mu);
  post_all(w, left, SF_ECANCELED);
  destroy_producer(w);
  sf_kafka_lso_destroy(w->watch);
  w->watch = NULL;
}

static void vt_submit(cmd_sink_t *s, cmd_unit_t *u) {
  cmd_writer_submit((cmd_writer_t *)s, u);
}
static void vt_hold(cmd_sink_t *s) { cmd_writer_hold((cmd_writer_t *)s); }
static void vt_accept(cmd_sink_t *s, uint64_t g) {
  cmd_writer_accept((cmd_writer_t *)s, g);
}
static void vt_stats(cmd_sink_t *s, cmd_writer_stats_t *out) {
  cmd_writer_stats((cmd_writer_t *)s, out);
}
static void vt_destroy(cmd_sink_t *s) { cmd_writer_destroy((cmd_writer_t *)s); }

static const cmd_sink_vt_t writer_vt = {vt_submit, vt_hold, vt_accept,
                                        vt_stats, vt_destroy};

cmd_sink_t *cmd_writer_sink(cmd_writer_t *w) { return &w->base; }

int cmd_writer_new(cmd_writer_t **out, uv_loop_t *loop,
                   const cmd_writer_opts_t *opts, const cmd_writer_cbs_t *cbs,
                   sf_log_t *log) {
  cmd_writer_t *w = calloc(1, sizeof(*w));
  if (!w)
    return SF_ENOMEM;
  w->loop = loop;
  w->log = log;
  w->opts = *opts;
  if (w->opts.max_batch == 0)
    w->opts.max_batch = 1000;
  if (w->opts.txn_timeout_ms <= 0)
    w->opts.txn_timeout_ms = 10000;
  w->cbs = *cbs;
  w->base.vt = &writer_vt;
  atomic_init(&w->stop, false);
  if (uv_mutex_init(&w->mu))
    goto fail_mutex;
  if (uv_cond_init(&w->cv))
    goto fail_cond;
  if (uv_async_init(loop, &w->async, async_cb))
    goto fail_async;
  w->async.data = w;
  if (uv_thread_create(&w->thread, writer_main, w))
    goto fail_thread;
  w->thread_started = true;
  *out = w;
  return 0;

fail_thread:
  uv_close((uv_handle_t *)&w->async, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
fail_async:
  uv_cond_destroy(&w->cv);
fail_cond:
  uv_mutex_destroy(&w->mu);
fail_mutex:
  free(w);
  return SF_EINTERNAL;
}

void cmd_writer_submit(cmd_writer_t *w, cmd_unit_t *unit) {
  unit->next = NULL;
  uv_mutex_lock(&w->mu);
  if (w->queue_tail)
    w->queue_tail->next = unit;
  else
    w->queue_head = unit;
  w->queue_tail = unit;
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu);
}

void cmd_writer_hold(cmd_writer_t *w) {
  uv_mutex_lock(&w->mu);
  w->accept_gen = 0;
  cmd_unit_t *u = unqueue_all(w);
  uv_mutex_unlock(&w->mu);
  /* answered from here, on the loop thread, in order */
  while (u) {
    cmd_unit_t *next = u->next;
    u->next = NULL;
    u->err = SF_EUNAVAILABLE;
    w->cbs.done(w->cbs.ud, u);
    u = next;
  }
}

void cmd_writer_accept(cmd_writer_t *w, uint64_t generation) {
  uv_mutex_lock(&w->mu);
  w->accept_gen = generation;
  uv_mutex_unlock(&w->mu);
}

void cmd_writer_stats(cmd_writer_t *w, cmd_writer_stats_t *out) {
  uv_mutex_lock(&w->mu);
  *out = w->stats;
  uv_mutex_unlock(&w->mu);
}

static void async_closed_cb(uv_handle_t *h) { free(h->data); }

void cmd_writer_destroy(cmd_writer_t *w) {
  if (!w)
    return;
  atomic_store(&w->stop, true);
  uv_mutex_lock(&w->mu);
  uv_cond_broadcast(&w->cv);
  uv_mutex_unlock(&w->mu);
  if (w->thread_started)
    uv_thread_join(&w->thread);
  /* The thread is gone: deliver what it posted, fail what it never took. */
  drain_outbox(w);
  cmd_unit_t *u = w->queue_head;
  w->queue_head = w->queue_tail = NULL;
  while (u) {
    cmd_unit_t *next = u->next;
    u->next = NULL;
    u->err = SF_ECANCELED;
    w->cbs.done(w->cbs.ud, u);
    u = next;
  }
  uv_cond_destroy(&w->cv);
  uv_mutex_destroy(&w->mu);
  /* freed in the close callback, on the next loop iteration */
  uv_close((uv_handle_t *)&w->async, async_closed_cb);
}

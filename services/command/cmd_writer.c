/* cmd_writer: group commit over a transactional producer, on its own thread
 * (rd_kafka_commit_transaction blocks, the loop must not). See cmd_writer.h
 * for the contract. The thread drives librdkafka directly: the sf_kafka
 * producer wrapper dispatches delivery reports on a libuv loop, which does
 * not fit a thread that must see every report of a batch before it commits. */
#include "cmd_writer.h"

#include <librdkafka/rdkafka.h>
#include <malloc.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_rebuild.h"
#include "sf/err.h"
#include "sf/kafka.h"

typedef enum outbox_kind { OUT_DONE, OUT_STATE, OUT_FATAL, OUT_RESYNC } outbox_kind_t;

typedef struct outbox {
  struct outbox *next;
  outbox_kind_t kind;
  cmd_unit_t *unit;
  cmd_state_t *state;
  uint64_t generation, events;
  double seconds;
  char reason[256];
} outbox_t;

struct cmd_writer {
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
  uint64_t generation;
  outbox_t *out_head, *out_tail;
  cmd_writer_stats_t stats;
  uint64_t next_batch_id;
  bool resync_asked;      /* cmd_writer_resync: rebuild before the next batch */
  char resync_reason[256];
  /* writer thread only */
  rd_kafka_t *rk[CMD_WRITER_MAX_PRODUCERS];
  char ids[CMD_WRITER_MAX_PRODUCERS][256];
  size_t n_rk, next_rk;
};

void cmd_unit_free(cmd_unit_t *u) {
  if (!u)
    return;
  cmd_msg_t *m = u->msgs;
  while (m) {
    cmd_msg_t *next = m->next;
    free(m->value);
    free(m);
    m = next;
  }
  free(u);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
                        const char *reason) {
  outbox_t *o = outbox_new(kind);
  /* bounded copy: reasons are truncated, never overflow */
  size_t n = strnlen(reason, sizeof(o->reason) - 1);
  memcpy(o->reason, reason, n);
  o->reason[n] = '\0';
  post(w, o);
}

static void dispatch(cmd_writer_t *w, outbox_t *o) {
  switch (o->kind) {
  case OUT_DONE:
    w->cbs.done(w->cbs.ud, o->unit);
    break;
  case OUT_STATE:
    w->cbs.state(w->cbs.ud, o->state, o->generation, o->seconds, o->events);
    break;
  case OUT_FATAL:
    w->cbs.fatal(w->cbs.ud, o->reason);
    break;
  case OUT_RESYNC:
    w->cbs.resync(w->cbs.ud, o->reason);
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

/* ---- librdkafka ---- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  cmd_msg_t *msg = m->_private;
  if (!msg)
    return;
  if (m->err) {
    msg->err = SF_EKAFKA;
  } else {
    msg->err = 0;
    msg->partition = m->partition;
    msg->offset = m->offset;
  }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
  (void)rk;
  cmd_writer_t *w = opaque;
  SF_WARN(w->log, "kafka", "producer: %s: %s",
          rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* librdkafka's own log lines go through sf_log (they arrive on its
 * threads; sf_log is thread-safe). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
  cmd_writer_t *w = rd_kafka_opaque(rk);
  sf_log_level_t l = level <= 3 ? SF_LOG_ERROR
                     : level <= 5 ? SF_LOG_WARN
                     : level == 6 ? SF_LOG_INFO
                                  : SF_LOG_DEBUG;
  SF_LOG(w->log, l, "rdkafka", "%s: %s", fac, buf);
}

static rd_kafka_t *make_producer(cmd_writer_t *w, const char *txn_id) {
  char errstr[512];
  char timeout[32];
  snprintf(timeout, sizeof(timeout), "%d", w->opts.txn_timeout_ms);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  const char *settings[][2] = {
      {"bootstrap.servers", w->opts.brokers},
      {"client.id", "stockflow-command"},
      {"transactional.id", txn_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"partitioner", "murmur2_random"},
      {"linger.ms", "0"},
      {"compression.type", "lz4"},
      {"transaction.timeout.ms", "10000"},
      {"message.timeout.ms", timeout},
      {"queue.buffering.max.messages", "1000000"},
      /* Small requests on loopback or a LAN must not wait for Nagle, and a
       * transaction that starts while the coordinator still completes the
       * previous one (CONCURRENT_TRANSACTIONS) should be retried at once,
       * not after 100 ms: together they halved the time per transaction
       * here (sf-kafka-limit: flush 34 -> 18 ms, docs/benchmarks.md). */
      {"socket.nagle.disable", "true"},
      {"retry.backoff.ms", "5"},
  };
  for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
    if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      SF_ERROR(w->log, "kafka", "producer config %s: %s", settings[i][0],
               errstr);
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_opaque(conf, w);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    SF_ERROR(w->log, "kafka", "creating producer: %s", errstr);
    rd_kafka_conf_destroy(conf);
  }
  return rk;
}

/* Classifies a transactional API error; logs it; frees it. */
typedef enum txn_outcome { TXN_OK, TXN_RETRY, TXN_ABORT, TXN_FATAL } txn_outcome_t;

static txn_outcome_t txn_check(cmd_writer_t *w, rd_kafka_error_t *error,
                               const char *what, char *reason, size_t cap) {
  if (!error)
    return TXN_OK;
  txn_outcome_t o = TXN_ABORT;
  if (rd_kafka_error_is_fatal(error))
    o = TXN_FATAL;
  else if (rd_kafka_error_txn_requires_abort(error))
    o = TXN_ABORT;
  else if (rd_kafka_error_is_retriable(error))
    o = TXN_RETRY;
  snprintf(reason, cap, "%s: %s (%s)", what, rd_kafka_error_string(error),
           rd_kafka_error_name(error));
  SF_LOG(w->log, o == TXN_RETRY ? SF_LOG_WARN : SF_LOG_ERROR, "kafka", "%s%s",
         reason, o == TXN_FATAL ? " [fatal]" : "");
  rd_kafka_error_destroy(error);
  return o;
}

static rd_kafka_headers_t *make_headers(const cmd_msg_t *m) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(7);
  rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
  rd_kafka_header_add(h, "ce_id", -1, m->ce_id, -1);
  rd_kafka_header_add(h, "ce_type", -1, m->ce_type, -1);
  rd_kafka_header_add(h, "ce_source", -1, "/stockflow/command", -1);
  rd_kafka_header_add(h, "ce_time", -1, m->ce_time, -1);
  if (m->ce_subject[0])
    rd_kafka_header_add(h, "ce_subject", -1, m->ce_subject, -1);
  rd_kafka_header_add(h, "content-type", -1, "application/avro", -1);
  return h;
}

/* Produces every message of units in one transaction and commits.
 * Returns 0, SF_EKAFKA (aborted; retriable) or SF_EKAFKA_FATAL. */
static int run_batch(cmd_writer_t *w, rd_kafka_t *rk, cmd_unit_t *units,
                     char *reason, size_t cap) {
  txn_outcome_t o = txn_check(w, rd_kafka_begin_transaction(rk),
                              "begin_transaction", reason, cap);
  if (o == TXN_FATAL)
    return SF_EKAFKA_FATAL;
  if (o != TXN_OK)
    return SF_EKAFKA;

  int rc = 0;
  for (cmd_unit_t *u = units; u && !rc; u = u->next) {
    for (cmd_msg_t *m = u->msgs; m && !rc; m = m->next) {
      m->err = SF_EINTERNAL; /* until its delivery report says otherwise */
      for (;;) {
        rd_kafka_headers_t *h = make_headers(m);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(m->topic),
            RD_KAFKA_V_KEY(m->key, strlen(m->key)),
            RD_KAFKA_V_VALUE(m->value, m->value_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
        if (!err)
          break;
        rd_kafka_headers_destroy(h);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          rd_kafka_poll(rk, 10);
          continue;
        }
        snprintf(reason, cap, "produce to %s: %s", m->topic,
                 rd_kafka_err2str(err));
        SF_ERROR(w->log, "kafka", "%s", reason);
        rc = SF_EKAFKA;
        break;
      }
    }
  }
  if (!rc && sf_kafka_await_delivery(rk, w->opts.txn_timeout_ms)) {
    snprintf(reason, cap, "delivery reports not in within %d ms",
             w->opts.txn_timeout_ms);
    rc = SF_EKAFKA;
  }
  if (!rc) {
    for (cmd_unit_t *u = units; u && !rc; u = u->next)
      for (cmd_msg_t *m = u->msgs; m && !rc; m = m->next)
        if (m->err) {
          snprintf(reason, cap, "delivery to %s failed", m->topic);
          rc = SF_EKAFKA;
        }
  }
  if (!rc) {
    for (int attempt = 0;; attempt++) {
      o = txn_check(w,
                    rd_kafka_commit_transaction(rk, w->opts.txn_timeout_ms),
                    "commit_transaction", reason, cap);
      if (o == TXN_RETRY && attempt < 3 && !atomic_load(&w->stop))
        continue;
      break;
    }
    if (o == TXN_OK)
      return 0;
    if (o == TXN_FATAL)
      return SF_EKAFKA_FATAL;
    rc = SF_EKAFKA;
  }
  char abort_reason[256];
  o = txn_check(w, rd_kafka_abort_transaction(rk, w->opts.txn_timeout_ms),
                "abort_transaction", abort_reason, sizeof(abort_reason));
  if (o == TXN_FATAL)
    return SF_EKAFKA_FATAL;
  return rc;
}

/* init_transactions on every producer until it works, stop, or a fatal
 * error. This fences every earlier instance with the same ids; the rebuild
 * that follows reads what they committed before. */
static int init_txn(cmd_writer_t *w) {
  char reason[256];
  for (size_t i = 0; i < w->n_rk; i++) {
    for (;;) {
      if (atomic_load(&w->stop))
        return SF_ECANCELED;
      txn_outcome_t o =
          txn_check(w, rd_kafka_init_transactions(w->rk[i], 5000),
                    "init_transactions", reason, sizeof(reason));
      if (o == TXN_OK)
        break;
      if (o == TXN_FATAL) {
        post_reason(w, OUT_FATAL, reason);
        return SF_EKAFKA_FATAL;
      }
      uv_sleep(1000);
    }
  }
  return 0;
}

/* Rebuilds the state from the log until it works or stop. */
static int rebuild(cmd_writer_t *w) {
  unsigned backoff_ms = 200;
  for (;;) {
    if (atomic_load(&w->stop))
      return SF_ECANCELED;
    cmd_state_t *state = NULL;
    cmd_rebuild_stats_t st;
    SF_INFO(w->log, "rebuild", "rebuilding state from %s and %s",
            w->opts.topic_catalog, w->opts.topic_stock);
    int rc = cmd_rebuild_run(w->opts.brokers, w->opts.topic_catalog,
                             w->opts.topic_stock, w->opts.idem_retention_us,
                             &w->stop, w->log, &state, &st,
                             w->opts.rebuild_progress);
    if (rc == 0) {
      /* The replay's consumer buffers are freed now: give the pages back
       * so the service's RSS is the state, not the peak of the replay
       * (glibc keeps freed heap otherwise). */
      malloc_trim(0);
      SF_INFO(w->log, "rebuild", "state rebuilt in %.3f s: %llu events "
              "applied, %llu duplicates skipped, %llu undecodable skipped, %llu "
              "idempotency keys restored",
              st.seconds, (unsigned long long)st.events,
              (unsigned long long)st.duplicates,
              (unsigned long long)st.skipped,
              (unsigned long long)st.idempotency_keys);
      outbox_t *o = outbox_new(OUT_STATE);
      o->state = state;
      o->seconds = st.seconds;
      o->events = st.events;
      uv_mutex_lock(&w->mu);
      o->generation = w->generation;
      uv_mutex_unlock(&w->mu);
      post(w, o);
      return 0;
    }
    if (rc == SF_ECANCELED)
      return rc;
    SF_ERROR(w->log, "rebuild", "rebuild failed: %s; retrying in %u ms",
             sf_err_name(rc), backoff_ms);
    uv_sleep(backoff_ms);
    if (backoff_ms < 5000)
      backoff_ms *= 2;
  }
}

static size_t count_msgs(const cmd_unit_t *u) { return u->n_msgs; }

/* Whether any message of the units goes to topic. */
static bool has_topic(const cmd_unit_t *units, const char *topic) {
  for (const cmd_unit_t *u = units; u; u = u->next)
    for (const cmd_msg_t *m = u->msgs; m; m = m->next)
      if (m->topic == topic || strcmp(m->topic, topic) == 0)
        return true;
  return false;
}

/* Takes queued units up to max_batch messages (at least one unit). */
static cmd_unit_t *take_batch(cmd_writer_t *w, uint64_t *gen) {
  cmd_unit_t *head = NULL, *tail = NULL;
  size_t msgs = 0;
  while (w->queue_head) {
    cmd_unit_t *u = w->queue_head;
    if (head && msgs + count_msgs(u) > w->opts.max_batch)
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
    msgs += count_msgs(u);
  }
  *gen = w->generation;
  return head;
}

static void fail_all_queued(cmd_writer_t *w, int err) {
  uv_mutex_lock(&w->mu);
  cmd_unit_t *u = w->queue_head;
  w->queue_head = w->queue_tail = NULL;
  uv_mutex_unlock(&w->mu);
  while (u) {
    cmd_unit_t *next = u->next;
    u->next = NULL;
    post_unit(w, u, err);
    u = next;
  }
}

static void writer_main(void *arg) {
  cmd_writer_t *w = arg;
  char reason[256];
  for (size_t i = 0; i < w->n_rk; i++) {
    if (i == 0)
      snprintf(w->ids[i], sizeof(w->ids[i]), "%s", w->opts.transactional_id);
    else
      snprintf(w->ids[i], sizeof(w->ids[i]), "%s-%zu",
               w->opts.transactional_id, i);
    w->rk[i] = make_producer(w, w->ids[i]);
    if (!w->rk[i]) {
      post_reason(w, OUT_FATAL, "cannot create the Kafka producer");
      goto out;
    }
  }
  SF_INFO(w->log, "writer", "initialising transactions as %s%s (%zu "
          "producer(s), taking the transactions in turn)",
          w->opts.transactional_id, w->n_rk > 1 ? " and its -N siblings" : "",
          w->n_rk);
  if (init_txn(w))
    goto out;
  if (rebuild(w))
    goto out;

  while (!atomic_load(&w->stop)) {
    uv_mutex_lock(&w->mu);
    while (!w->queue_head && !w->resync_asked && !atomic_load(&w->stop))
      uv_cond_wait(&w->cv, &w->mu);
    if (atomic_load(&w->stop)) {
      uv_mutex_unlock(&w->mu);
      break;
    }
    if (w->resync_asked) {
      /* The loop's state went wrong (cmd_writer_resync): whatever is
       * queued was decided against it and never reaches Kafka. */
      w->resync_asked = false;
      w->generation++;
      snprintf(reason, sizeof(reason), "%s", w->resync_reason);
      uv_mutex_unlock(&w->mu);
      SF_ERROR(w->log, "writer", "resync asked (%s): failing the queued "
               "commands and rebuilding the state from the log", reason);
      fail_all_queued(w, SF_EUNAVAILABLE);
      post_reason(w, OUT_RESYNC, reason);
      if (rebuild(w))
        break;
      continue;
    }
    if (w->opts.linger_us > 0) {
      uv_mutex_unlock(&w->mu);
      uv_sleep((unsigned)((w->opts.linger_us + 999) / 1000));
      uv_mutex_lock(&w->mu);
    }
    uint64_t gen;
    cmd_unit_t *batch = take_batch(w, &gen);
    uint64_t batch_id = ++w->next_batch_id;
    uv_mutex_unlock(&w->mu);

    /* Units decided against an older state never reach Kafka. */
    cmd_unit_t *live = NULL, **tailp = &live;
    size_t n_units = 0, n_msgs = 0;
    while (batch) {
      cmd_unit_t *next = batch->next;
      batch->next = NULL;
      if (batch->generation != gen) {
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

    /* Transactions go to the producers in turn, one at a time (so the log
     * order is the decision order): a producer's next transaction then
     * starts after the coordinator has finished its previous one, instead
     * of being refused with CONCURRENT_TRANSACTIONS and retried 20 ms
     * later. */
    rd_kafka_t *rk = w->rk[w->next_rk];
    /* Except after a catalog event: the next transaction then goes to the
     * same producer, which makes it wait until this one's commit markers
     * are written, so a store or product is visible to read_committed
     * readers before any stock event that names it (Kafka orders
     * partitions, not topics; this keeps catalog-before-stock). */
    if (!has_topic(live, w->opts.topic_catalog))
      w->next_rk = (w->next_rk + 1) % w->n_rk;
    double t0 = now_s();
    int rc = run_batch(w, rk, live, reason, sizeof(reason));
    double dt = now_s() - t0;

    uv_mutex_lock(&w->mu);
    if (rc == 0) {
      w->stats.batches++;
      w->stats.batch_units += n_units;
      w->stats.batch_msgs += n_msgs;
      w->stats.commit_seconds_sum += dt;
    } else {
      w->stats.failed_batches++;
      w->generation++;
    }
    uv_mutex_unlock(&w->mu);

    while (live) {
      cmd_unit_t *next = live->next;
      live->next = NULL;
      live->batch_id = batch_id;
      live->batch_units = n_units;
      post_unit(w, live, rc ? (rc == SF_EKAFKA_FATAL ? SF_EUNAVAILABLE : rc)
                            : 0);
      live = next;
    }
    if (rc == 0)
      continue;

    SF_ERROR(w->log, "writer", "batch %llu of %zu commands failed (%s): "
             "answering 503 and rebuilding the state from the log",
             (unsigned long long)batch_id, n_units, reason);
    fail_all_queued(w, SF_EUNAVAILABLE);
    post_reason(w, OUT_RESYNC, reason);
    if (rc == SF_EKAFKA_FATAL || rd_kafka_fatal_error(rk, NULL, 0)) {
      char fatal[512] = "";
      rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
      SF_ERROR(w->log, "writer", "producer is fenced or broken (%s): this "
               "instance stops writing", fatal[0] ? fatal : reason);
      post_reason(w, OUT_FATAL, fatal[0] ? fatal : reason);
      break;
    }
    if (rebuild(w))
      break;
  }

out:
  fail_all_queued(w, SF_ECANCELED);
  for (size_t i = 0; i < w->n_rk; i++) {
    if (!w->rk[i])
      continue;
    rd_kafka_flush(w->rk[i], 2000);
    rd_kafka_destroy(w->rk[i]);
    w->rk[i] = NULL;
  }
}

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
  w->n_rk = w->opts.producers;
  if (w->n_rk < 1)
    w->n_rk = 1;
  if (w->n_rk > CMD_WRITER_MAX_PRODUCERS)
    w->n_rk = CMD_WRITER_MAX_PRODUCERS;
  w->cbs = *cbs;
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

void cmd_writer_resync(cmd_writer_t *w, const char *reason) {
  uv_mutex_lock(&w->mu);
  w->resync_asked = true;
  snprintf(w->resync_reason, sizeof(w->resync_reason), "%s", reason);
  uv_cond_signal(&w->cv);
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

/* kafka: the one door to librdkafka. See sf/kafka.h.
 *
 * Every librdkafka handle of stockflow is configured here
 * (sf_kafka_conf_new: one log hook, one error hook). The transactional
 * producer has no loop of its own: the one thread that drives it serves
 * the main queue (delivery reports, errors) with rd_kafka_poll inside its
 * calls, so a writer sees every report of a transaction before it commits.
 * Each accepted message carries a small heap record (callback, user data)
 * as its opaque; the records form a list so that the reports of a finished
 * transaction can be cut off and the records freed at destroy.
 *
 * The consumer is driven by whoever calls sf_kafka_consumer_poll. With a
 * group it uses the EAGER rebalance protocol (librdkafka's default
 * range,roundrobin assignors): every rebalance revokes everything and assigns
 * afresh, which keeps the assign/revoke callbacks simple. Offsets are never
 * committed here; the owner stores them where it applies the data. */
#include "sf/kafka.h"

#include "sf/err.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define MOD "kafka"

_Static_assert(SF_KAFKA_OFFSET_BEGINNING == RD_KAFKA_OFFSET_BEGINNING,
               "offset constants match librdkafka");
_Static_assert(SF_KAFKA_OFFSET_END == RD_KAFKA_OFFSET_END,
               "offset constants match librdkafka");
_Static_assert(SF_KAFKA_OFFSET_STORED == RD_KAFKA_OFFSET_STORED,
               "offset constants match librdkafka");

/* ---- shared helpers ---- */

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf) {
  sf_log_t *log = rd_kafka_opaque(rk) ? *(sf_log_t **)rd_kafka_opaque(rk)
                                      : NULL;
  sf_log_level_t lv = level <= 3   ? SF_LOG_ERROR
                      : level == 4 ? SF_LOG_WARN
                      : level <= 6 ? SF_LOG_INFO
                                   : SF_LOG_DEBUG;
  SF_LOG(log, lv, MOD, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static int conf_set(rd_kafka_conf_t *conf, sf_log_t *log, const char *key,
                    const char *value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) !=
      RD_KAFKA_CONF_OK) {
    SF_ERROR(log, MOD, "config %s=%s: %s", key, value, errstr);
    return SF_ECONFIG;
  }
  return 0;
}

/* A fence: a producer with our transactional id and a newer epoch exists.
 * librdkafka turns PRODUCER_FENCED and INVALID_PRODUCER_EPOCH into a fatal
 * _FENCED. */
static bool err_is_fence(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__FENCED ||
         err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
         err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

static bool err_is_fatal(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__FATAL || err_is_fence(err);
}

/* Partition count of topic from rk's metadata (0 when the topic does not
 * exist). Shared by the consumer and the transactional producer. */
static int metadata_partition_count(rd_kafka_t *rk, sf_log_t *log,
                                    const char *topic, int timeout_ms,
                                    int32_t *count) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  if (!rkt)
    return SF_EKAFKA;
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy(rkt);
  if (err) {
    SF_WARN(log, MOD, "metadata for %s: %s", topic, rd_kafka_err2str(err));
    return err == RD_KAFKA_RESP_ERR__TIMED_OUT ? SF_ETIMEOUT : SF_EKAFKA;
  }
  int rc = 0;
  *count = 0;
  for (int i = 0; i < md->topic_cnt; i++) {
    const struct rd_kafka_metadata_topic *t = &md->topics[i];
    if (strcmp(t->topic, topic) != 0)
      continue;
    if (t->err == RD_KAFKA_RESP_ERR_NO_ERROR)
      *count = t->partition_cnt;
    else if (t->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
             t->err != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
      SF_WARN(log, MOD, "metadata for %s: %s", topic,
              rd_kafka_err2str(t->err));
      rc = SF_EKAFKA;
    }
  }
  rd_kafka_metadata_destroy(md);
  return rc;
}

/* Maps a producev error to an SF code. */
static int produce_err(rd_kafka_t *rk, rd_kafka_resp_err_t err) {
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
    return SF_EUNAVAILABLE;
  if (err_is_fatal(err) || rd_kafka_fatal_error(rk, NULL, 0))
    return SF_EKAFKA_FATAL;
  if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
    return SF_ETOOBIG;
  if (err == RD_KAFKA_RESP_ERR__STATE)
    return SF_ESTATE;
  return SF_EKAFKA;
}

/* Maps a ListOffsets error (query_watermark_offsets) to an SF code. */
static int watermark_err(rd_kafka_resp_err_t err) {
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT)
    return SF_ETIMEOUT;
  if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
      err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
      err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    return SF_ENOTFOUND;
  return SF_EKAFKA;
}

static void conf_error_cb(rd_kafka_t *rk, int err, const char *reason,
                          void *opaque) {
  sf_log_t *log = opaque ? *(sf_log_t **)opaque : NULL;
  SF_WARN(log, MOD, "%s: %s: %s", rd_kafka_name(rk),
          rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* Sets settings[0..n) on conf in order; false with errstr naming the bad
 * one. */
static bool conf_apply(rd_kafka_conf_t *conf, const char *(*settings)[2],
                       size_t n, char *errstr, size_t cap) {
  for (size_t i = 0; i < n; i++) {
    char why[256];
    if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], why,
                          sizeof(why)) != RD_KAFKA_CONF_OK) {
      snprintf(errstr, cap, "%s=%s: %s", settings[i][0], settings[i][1], why);
      return false;
    }
  }
  return true;
}

struct rd_kafka_conf_s *sf_kafka_conf_new(const char *(*settings)[2],
                                          size_t n, sf_log_t **log_ref,
                                          char *errstr, size_t cap) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!conf_apply(conf, settings, n, errstr, cap)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  rd_kafka_conf_set_opaque(conf, log_ref);
  rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
  rd_kafka_conf_set_error_cb(conf, conf_error_cb);
  return conf;
}

int sf_kafka_await_delivery(struct rd_kafka_s *rk, int timeout_ms) {
  uint64_t deadline = uv_hrtime() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
  while (rd_kafka_outq_len(rk) > 0) {
    if (uv_hrtime() >= deadline)
      return SF_ETIMEOUT;
    rd_kafka_poll(rk, 1);
  }
  return 0;
}

/* A client of type made by sf_kafka_conf_new(settings) with fixed applied
 * over them (what the module's contract needs) and an optional delivery
 * report callback; NULL with errstr set. */
static rd_kafka_t *client_new(rd_kafka_type_t type, const char *(*settings)[2],
                              size_t n, const char *(*fixed)[2], size_t n_fixed,
                              sf_log_t **log_ref,
                              void (*dr_cb)(rd_kafka_t *,
                                            const rd_kafka_message_t *, void *),
                              char *errstr, size_t cap) {
  rd_kafka_conf_t *conf = sf_kafka_conf_new(settings, n, log_ref, errstr, cap);
  if (!conf)
    return NULL;
  if (!conf_apply(conf, fixed, n_fixed, errstr, cap)) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  if (dr_cb)
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  /* rd_kafka_new owns conf on success only */
  rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, cap);
  if (!rk)
    rd_kafka_conf_destroy(conf);
  return rk;
}

int32_t sf_kafka_partition_for_key(const char *key, size_t len,
                                   int32_t partitions) {
  if (partitions <= 0)
    return -1;
  /* librdkafka's murmur2 reads no topic state: NULL topic and opaques */
  return rd_kafka_msg_partitioner_murmur2(NULL, key, len, partitions, NULL,
                                          NULL);
}

/* ---- transactional producer, driven by one thread ---- */

/* One per accepted message until its report is served; cb is cleared when
 * the transaction ends (its report then goes nowhere). */
typedef struct txn_pending {
  struct txn_pending *prev, *next;
  sf_kafka_delivery_cb cb;
  void *ud;
} txn_pending_t;

struct sf_kafka_producer {
  sf_log_t *log; /* first member: kafka_log_cb reads it via the opaque */
  rd_kafka_t *rk;
  txn_pending_t pending; /* list head (sentinel) */
  size_t inflight;       /* records in the list */
};

const char *sf_kafka_txn_outcome_name(sf_kafka_txn_outcome_t o) {
  switch (o) {
  case SF_KAFKA_TXN_OK: return "ok";
  case SF_KAFKA_TXN_RETRY: return "retry";
  case SF_KAFKA_TXN_ABORTABLE: return "abortable";
  case SF_KAFKA_TXN_BROKEN: return "broken";
  case SF_KAFKA_TXN_FENCED: return "fenced";
  }
  return "unknown";
}

static void txn_pending_unlink(txn_pending_t *pm) {
  pm->prev->next = pm->next;
  pm->next->prev = pm->prev;
}

/* The transaction ended: reports still to come go nowhere. */
static void txn_detach_all(sf_kafka_producer_t *p) {
  for (txn_pending_t *pm = p->pending.next; pm != &p->pending; pm = pm->next)
    pm->cb = NULL;
}

static void txn_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque) {
  (void)rk;
  sf_kafka_producer_t *p = opaque;
  txn_pending_t *pm = m->_private;
  if (!pm)
    return;
  if (pm->cb) {
    int err = 0;
    const char *errstr = NULL;
    if (m->err) {
      err = err_is_fatal(m->err) ? SF_EKAFKA_FATAL : SF_EKAFKA;
      /* not rd_kafka_message_errstr: for a failed delivery it returns the
       * message's payload, which is no string */
      errstr = rd_kafka_err2str(m->err);
    }
    pm->cb(pm->ud, err, m->partition, m->err ? -1 : m->offset, errstr);
  }
  txn_pending_unlink(pm);
  p->inflight--;
  free(pm);
}

int sf_kafka_producer_new(sf_kafka_producer_t **out,
                          const char *(*settings)[2], size_t n,
                          const char *transactional_id, sf_log_t *log,
                          char *errstr, size_t cap) {
  if (!out || (n && !settings) || (transactional_id && !*transactional_id)) {
    snprintf(errstr, cap, "invalid argument");
    return SF_EINVAL;
  }
  sf_kafka_producer_t *p = calloc(1, sizeof(*p));
  if (!p)
    return SF_ENOMEM;
  p->log = log;
  p->pending.prev = p->pending.next = &p->pending;
  /* what the contract promises, over the caller's tuning */
  const char *fixed[][2] = {
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"transactional.id", transactional_id},
  };
  p->rk = client_new(RD_KAFKA_PRODUCER, settings, n, fixed,
                     transactional_id ? 3 : 2, &p->log, txn_dr_cb, errstr,
                     cap);
  if (!p->rk) {
    free(p);
    return SF_ECONFIG;
  }
  *out = p;
  return 0;
}

void sf_kafka_producer_destroy(sf_kafka_producer_t *p) {
  if (!p)
    return;
  /* nothing of ours may still be wanted: purge instead of a long flush */
  txn_detach_all(p);
  rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_flush(p->rk, 100);
  rd_kafka_destroy(p->rk);
  /* reports librdkafka dropped at destroy */
  while (p->pending.next != &p->pending) {
    txn_pending_t *pm = p->pending.next;
    txn_pending_unlink(pm);
    free(pm);
  }
  free(p);
}

sf_kafka_txn_outcome_t sf_kafka_producer_fatal(sf_kafka_producer_t *p,
                                               char *errstr, size_t cap) {
  char reason[256] = "";
  rd_kafka_resp_err_t err = rd_kafka_fatal_error(p->rk, reason,
                                                 sizeof(reason));
  if (!err) {
    if (cap)
      errstr[0] = '\0';
    return SF_KAFKA_TXN_OK;
  }
  snprintf(errstr, cap, "%s (%s)", reason, rd_kafka_err2name(err));
  return err_is_fence(err) ? SF_KAFKA_TXN_FENCED : SF_KAFKA_TXN_BROKEN;
}

/* Classifies a transactional API error into what to do next; frees it. */
static sf_kafka_txn_outcome_t txn_outcome(sf_kafka_producer_t *p,
                                          rd_kafka_error_t *e, char *errstr,
                                          size_t cap) {
  if (!e)
    return SF_KAFKA_TXN_OK;
  /* anything else (not retriable, no abort asked): abort and start again */
  sf_kafka_txn_outcome_t o = SF_KAFKA_TXN_ABORTABLE;
  if (rd_kafka_error_is_fatal(e)) {
    char ignored[8];
    o = sf_kafka_producer_fatal(p, ignored, sizeof(ignored));
    if (o == SF_KAFKA_TXN_OK)
      o = SF_KAFKA_TXN_BROKEN;
  } else if (rd_kafka_error_txn_requires_abort(e)) {
    o = SF_KAFKA_TXN_ABORTABLE;
  } else if (rd_kafka_error_is_retriable(e)) {
    o = SF_KAFKA_TXN_RETRY;
  }
  snprintf(errstr, cap, "%s (%s)", rd_kafka_error_string(e),
           rd_kafka_error_name(e));
  rd_kafka_error_destroy(e);
  return o;
}

sf_kafka_txn_outcome_t sf_kafka_producer_init(sf_kafka_producer_t *p,
                                              int timeout_ms, char *errstr,
                                              size_t cap) {
  return txn_outcome(p, rd_kafka_init_transactions(p->rk, timeout_ms), errstr,
                     cap);
}

sf_kafka_txn_outcome_t sf_kafka_producer_begin(sf_kafka_producer_t *p,
                                               char *errstr, size_t cap) {
  return txn_outcome(p, rd_kafka_begin_transaction(p->rk), errstr, cap);
}

sf_kafka_txn_outcome_t sf_kafka_producer_commit(sf_kafka_producer_t *p,
                                                int timeout_ms,
                                                char *errstr, size_t cap) {
  sf_kafka_txn_outcome_t o = txn_outcome(
      p, rd_kafka_commit_transaction(p->rk, timeout_ms), errstr, cap);
  txn_detach_all(p);
  return o;
}

sf_kafka_txn_outcome_t sf_kafka_producer_abort(sf_kafka_producer_t *p,
                                               int timeout_ms,
                                               char *errstr, size_t cap) {
  sf_kafka_txn_outcome_t o = txn_outcome(
      p, rd_kafka_abort_transaction(p->rk, timeout_ms), errstr, cap);
  /* the purged messages' reports are on the main queue */
  rd_kafka_poll(p->rk, 0);
  txn_detach_all(p);
  return o;
}

int sf_kafka_producer_send(sf_kafka_producer_t *p, const char *topic,
                           int32_t partition, const void *key,
                           size_t key_len, const void *value,
                           size_t value_len,
                           const sf_kafka_header_t *headers,
                           size_t n_headers, sf_kafka_delivery_cb cb,
                           void *ud, char *errstr, size_t cap) {
  if (!p || !topic || (n_headers && !headers)) {
    snprintf(errstr, cap, "invalid argument");
    return SF_EINVAL;
  }
  txn_pending_t *pm = malloc(sizeof(*pm));
  if (!pm) {
    snprintf(errstr, cap, "out of memory");
    return SF_ENOMEM;
  }
  pm->cb = cb;
  pm->ud = ud;
  rd_kafka_resp_err_t err;
  for (;;) {
    rd_kafka_headers_t *hdrs = NULL;
    if (n_headers) {
      hdrs = rd_kafka_headers_new(n_headers);
      for (size_t i = 0; i < n_headers; i++)
        rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                            (ssize_t)headers[i].len);
    }
    /* on success librdkafka owns hdrs; on failure we still do */
    err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA
                                           : partition),
        RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE(pm), RD_KAFKA_V_END);
    if (!err)
      break;
    if (hdrs)
      rd_kafka_headers_destroy(hdrs);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      free(pm);
      snprintf(errstr, cap, "%s", rd_kafka_err2str(err));
      return produce_err(p->rk, err);
    }
    rd_kafka_poll(p->rk, 10);
  }
  pm->next = &p->pending;
  pm->prev = p->pending.prev;
  pm->prev->next = pm;
  p->pending.prev = pm;
  p->inflight++;
  return 0;
}

void sf_kafka_producer_serve(sf_kafka_producer_t *p) { rd_kafka_poll(p->rk, 0); }

size_t sf_kafka_producer_inflight(const sf_kafka_producer_t *p) {
  return p ? p->inflight : 0;
}

int sf_kafka_producer_await(sf_kafka_producer_t *p, int timeout_ms) {
  return sf_kafka_await_delivery(p->rk, timeout_ms);
}

int sf_kafka_producer_partition_count(sf_kafka_producer_t *p,
                                      const char *topic, int timeout_ms,
                                      int32_t *count) {
  if (!p || !topic || !count)
    return SF_EINVAL;
  return metadata_partition_count(p->rk, p->log, topic, timeout_ms, count);
}

/* ---- last stable offsets ---- */

struct sf_kafka_lso {
  sf_log_t *log; /* first member: kafka_log_cb reads it via the opaque */
  rd_kafka_t *rk;
};

int sf_kafka_lso_new(sf_kafka_lso_t **out, const char *(*settings)[2],
                     size_t n, sf_log_t *log, char *errstr, size_t cap) {
  if (!out || (n && !settings)) {
    snprintf(errstr, cap, "invalid argument");
    return SF_EINVAL;
  }
  sf_kafka_lso_t *l = calloc(1, sizeof(*l));
  if (!l)
    return SF_ENOMEM;
  l->log = log;
  const char *fixed[][2] = {
      {"isolation.level", "read_committed"},
      {"enable.auto.commit", "false"},
  };
  l->rk = client_new(RD_KAFKA_CONSUMER, settings, n, fixed,
                     sizeof(fixed) / sizeof(fixed[0]), &l->log, NULL, errstr,
                     cap);
  if (!l->rk) {
    free(l);
    return SF_ECONFIG;
  }
  *out = l;
  return 0;
}

void sf_kafka_lso_destroy(sf_kafka_lso_t *l) {
  if (!l)
    return;
  rd_kafka_destroy(l->rk);
  free(l);
}

int sf_kafka_lso_get(sf_kafka_lso_t *l, const char *topic, int32_t partition,
                     int timeout_ms, int64_t *offset, const char **why) {
  int64_t low = 0;
  /* with isolation.level=read_committed, "high" is the last stable offset */
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
      l->rk, topic, partition, &low, offset, timeout_ms);
  if (why)
    *why = err ? rd_kafka_err2name(err) : NULL;
  return err ? watermark_err(err) : 0;
}

/* ---- consumer ---- */

struct sf_kafka_consumer {
  sf_log_t *log; /* first member: kafka_log_cb reads it via the opaque */
  rd_kafka_t *rk;
  rd_kafka_t *wm;     /* sf_kafka_watermarks' own client (first use); NULL */
  uv_mutex_t wm_lock; /* its making: sf_kafka_watermarks may be called from
                         several threads (the command tail's thread pool) */
  char *brokers;      /* for wm */
  sf_kafka_assign_cb on_assign;
  sf_kafka_revoke_cb on_revoke;
  void *cb_ud;
  bool has_group;
  bool partition_eof;
  bool fatal;
};

static void consumer_error_cb(rd_kafka_t *rk, int err, const char *reason,
                              void *opaque) {
  sf_kafka_consumer_t *c = opaque;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512] = "";
    rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    SF_ERROR(c->log, MOD, "consumer %s fatal error: %s: %s",
             rd_kafka_name(rk), rd_kafka_err2name(ferr), buf);
    c->fatal = true;
    return;
  }
  SF_WARN(c->log, MOD, "consumer %s: %s: %s", rd_kafka_name(rk),
          rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* Converts parts to a tp array (topics borrowed from parts); NULL on OOM. */
static sf_kafka_tp_t *tps_from_list(const rd_kafka_topic_partition_list_t *l) {
  sf_kafka_tp_t *tps = calloc(l->cnt ? (size_t)l->cnt : 1, sizeof(*tps));
  if (!tps)
    return NULL;
  for (int i = 0; i < l->cnt; i++) {
    tps[i].topic = l->elems[i].topic;
    tps[i].partition = l->elems[i].partition;
    tps[i].offset = SF_KAFKA_OFFSET_BEGINNING;
  }
  return tps;
}

static void consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts,
                                  void *opaque) {
  sf_kafka_consumer_t *c = opaque;
  sf_kafka_tp_t *tps = tps_from_list(parts);
  if (!tps)
    SF_ERROR(c->log, MOD, "rebalance: out of memory, callbacks skipped");
  rd_kafka_resp_err_t aerr;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (tps && c->on_assign)
      c->on_assign(c->cb_ud, tps, (size_t)parts->cnt);
    for (int i = 0; i < parts->cnt; i++)
      parts->elems[i].offset = tps ? tps[i].offset : RD_KAFKA_OFFSET_BEGINNING;
    SF_INFO(c->log, MOD, "consumer %s: assigned %d partition(s)",
            rd_kafka_name(rk), parts->cnt);
    aerr = rd_kafka_assign(rk, parts);
  } else {
    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
      SF_WARN(c->log, MOD, "rebalance error: %s", rd_kafka_err2str(err));
    if (tps && c->on_revoke)
      c->on_revoke(c->cb_ud, tps, (size_t)parts->cnt);
    SF_INFO(c->log, MOD, "consumer %s: revoked %d partition(s)",
            rd_kafka_name(rk), parts->cnt);
    aerr = rd_kafka_assign(rk, NULL);
  }
  if (aerr)
    SF_ERROR(c->log, MOD, "rebalance assign: %s", rd_kafka_err2str(aerr));
  free(tps);
}

int sf_kafka_consumer_new(sf_kafka_consumer_t **out,
                          const sf_kafka_consumer_opts_t *opts,
                          sf_log_t *log) {
  char errstr[512];
  int rc = 0;
  if (!out || !opts || !opts->brokers)
    return SF_EINVAL;
  sf_kafka_consumer_t *c = calloc(1, sizeof(*c));
  if (!c)
    return SF_ENOMEM;
  c->log = log;
  c->brokers = strdup(opts->brokers);
  if (!c->brokers) {
    free(c);
    return SF_ENOMEM;
  }
  c->on_assign = opts->on_assign;
  c->on_revoke = opts->on_revoke;
  c->cb_ud = opts->cb_ud;
  c->has_group = opts->group_id != NULL;
  c->partition_eof = opts->partition_eof;
  if (uv_mutex_init(&c->wm_lock)) {
    free(c->brokers);
    free(c);
    return SF_ENOMEM;
  }

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!conf) {
    rc = SF_ENOMEM;
    goto fail_conf;
  }
  rc = rc ? rc : conf_set(conf, log, "bootstrap.servers", opts->brokers);
  rc = rc ? rc : conf_set(conf, log, "isolation.level", "read_committed");
  rc = rc ? rc : conf_set(conf, log, "enable.auto.commit", "false");
  rc = rc ? rc : conf_set(conf, log, "enable.auto.offset.store", "false");
  rc = rc ? rc : conf_set(conf, log, "auto.offset.reset", "earliest");
  rc = rc ? rc
          : conf_set(conf, log, "enable.partition.eof",
                     opts->partition_eof ? "true" : "false");
  /* A member that died (SIGKILL, power loss) holds its partitions until its
   * session times out: 6 s (the broker's minimum by default) instead of
   * librdkafka's 45 s, so a restarted projector or a surviving instance
   * takes over quickly. */
  rc = rc ? rc : conf_set(conf, log, "session.timeout.ms", "6000");
  rc = rc ? rc : conf_set(conf, log, "heartbeat.interval.ms", "2000");
  /* librdkafka 2.0 wants a group.id even for rd_kafka_assign; without a
   * group we give it a placeholder that is never joined nor committed to. */
  rc = rc ? rc
          : conf_set(conf, log, "group.id",
                     opts->group_id ? opts->group_id : "stockflow-assign-only");
  if (!rc && opts->client_id)
    rc = conf_set(conf, log, "client.id", opts->client_id);
  if (!rc && opts->n_settings &&
      !conf_apply(conf, opts->settings, opts->n_settings, errstr,
                  sizeof(errstr))) {
    SF_ERROR(log, MOD, "config %s", errstr);
    rc = SF_ECONFIG;
  }
  if (rc)
    goto fail_conf;
  rd_kafka_conf_set_opaque(conf, c);
  rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
  rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
  rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance_cb);
  c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (!c->rk) {
    SF_ERROR(log, MOD, "cannot create consumer: %s", errstr);
    rc = SF_ECONFIG;
    goto fail_conf;
  }
  /* Errors, logs and rebalances are served by sf_kafka_consumer_poll. */
  rd_kafka_poll_set_consumer(c->rk);
  *out = c;
  return 0;

fail_conf:
  if (conf)
    rd_kafka_conf_destroy(conf);
  uv_mutex_destroy(&c->wm_lock);
  free(c->brokers);
  free(c);
  return rc;
}

void sf_kafka_consumer_destroy(sf_kafka_consumer_t *c) {
  if (!c)
    return;
  rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
  if (err)
    SF_WARN(c->log, MOD, "consumer close: %s", rd_kafka_err2str(err));
  rd_kafka_destroy(c->rk);
  if (c->wm)
    rd_kafka_destroy(c->wm);
  uv_mutex_destroy(&c->wm_lock);
  free(c->brokers);
  free(c);
}

int sf_kafka_consumer_subscribe(sf_kafka_consumer_t *c,
                                const char *const *topics, size_t n) {
  if (!c || (n && !topics))
    return SF_EINVAL;
  if (!c->has_group) {
    SF_ERROR(c->log, MOD, "subscribe needs a group id");
    return SF_ESTATE;
  }
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_new((int)n);
  for (size_t i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (err) {
    SF_ERROR(c->log, MOD, "subscribe: %s", rd_kafka_err2str(err));
    return err == RD_KAFKA_RESP_ERR__INVALID_ARG ? SF_ECONFIG : SF_EKAFKA;
  }
  return 0;
}

/* A librdkafka list of tps, with their offsets (the caller destroys it). */
static rd_kafka_topic_partition_list_t *list_from_tps(const sf_kafka_tp_t *tps,
                                                      size_t n) {
  rd_kafka_topic_partition_list_t *l =
      rd_kafka_topic_partition_list_new((int)n);
  for (size_t i = 0; i < n; i++)
    rd_kafka_topic_partition_list_add(l, tps[i].topic, tps[i].partition)
        ->offset = tps[i].offset;
  return l;
}

int sf_kafka_consumer_assign(sf_kafka_consumer_t *c, const sf_kafka_tp_t *tps,
                             size_t n) {
  if (!c || (n && !tps))
    return SF_EINVAL;
  /* NULL: take everything away */
  rd_kafka_topic_partition_list_t *l = n ? list_from_tps(tps, n) : NULL;
  rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, l);
  if (l)
    rd_kafka_topic_partition_list_destroy(l);
  if (err) {
    SF_ERROR(c->log, MOD, "assign: %s", rd_kafka_err2str(err));
    return SF_EKAFKA;
  }
  return 0;
}

int sf_kafka_consumer_commit(sf_kafka_consumer_t *c, const sf_kafka_tp_t *tps,
                             size_t n) {
  if (!c || (n && !tps))
    return SF_EINVAL;
  if (!n)
    return 0;
  rd_kafka_topic_partition_list_t *l = list_from_tps(tps, n);
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, 0);
  rd_kafka_topic_partition_list_destroy(l);
  if (err) {
    SF_WARN(c->log, MOD, "commit: %s", rd_kafka_err2str(err));
    return SF_EKAFKA;
  }
  return 0;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sf_kafka_consumer_poll(sf_kafka_consumer_t *c, sf_kafka_msg_t *msgs,
                           size_t max, int timeout_ms) {
  if (!c || (max && !msgs))
    return SF_EINVAL;
  size_t n = 0;
  int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
  while (n < max) {
    int wait = 0;
    if (n == 0) {
      int64_t left = deadline - now_ms();
      wait = left > 0 ? (int)left : 0;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, wait);
    if (!m) {
      if (n > 0 || wait == 0)
        break;
      continue;
    }
    bool eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
    if (m->err && !(eof && c->partition_eof)) {
      if (eof)
        SF_DEBUG(c->log, MOD, "end of %s [%d] at %lld",
                 m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
                 (int)m->partition, (long long)m->offset);
      else
        SF_WARN(c->log, MOD, "consume %s [%d]: %s: %s",
                m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
                (int)m->partition, rd_kafka_err2name(m->err),
                rd_kafka_message_errstr(m));
      if (m->err == RD_KAFKA_RESP_ERR__FATAL)
        c->fatal = true;
      rd_kafka_message_destroy(m);
      if (c->fatal)
        break;
      continue;
    }
    sf_kafka_msg_t *o = &msgs[n++];
    memset(o, 0, sizeof(*o));
    o->topic = rd_kafka_topic_name(m->rkt);
    o->partition = m->partition;
    o->offset = m->offset;
    o->eof = eof;
    o->priv_ = m;
    if (eof)
      continue;
    o->key = m->key;
    o->key_len = m->key_len;
    o->value = m->payload;
    o->value_len = m->len;
    o->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
  }
  if (n == 0 && c->fatal)
    return SF_EKAFKA_FATAL;
  return (int)n;
}

void sf_kafka_msg_destroy(sf_kafka_msg_t *m) {
  if (!m || !m->priv_)
    return;
  rd_kafka_message_destroy(m->priv_);
  memset(m, 0, sizeof(*m));
}

int sf_kafka_msg_header(const sf_kafka_msg_t *m, const char *name,
                        const void **value, size_t *len) {
  if (!m || !m->priv_ || !name || !value || !len)
    return SF_EINVAL;
  rd_kafka_headers_t *hdrs = NULL;
  if (rd_kafka_message_headers(m->priv_, &hdrs) || !hdrs)
    return SF_ENOTFOUND;
  if (rd_kafka_header_get_last(hdrs, name, value, len))
    return SF_ENOTFOUND;
  return 0;
}

int sf_kafka_partition_count(sf_kafka_consumer_t *c, const char *topic,
                             int timeout_ms, int32_t *count) {
  if (!c || !topic || !count)
    return SF_EINVAL;
  return metadata_partition_count(c->rk, c->log, topic, timeout_ms, count);
}

/* The client that sf_kafka_watermarks asks: one of its own, made on first
 * use, because a ListOffsets request sent on the consumer's connection
 * waits behind the fetch in flight there (the broker answers a
 * connection's requests in order, and a fetch waits up to
 * fetch.wait.max.ms for data): asking 7 partitions stalled the projector's
 * loop for ~3 s every lag refresh. Falls back to the consumer itself when
 * the client cannot be made. */
static rd_kafka_t *make_watermark_client(sf_kafka_consumer_t *c) {
  char errstr[512];
  char client_id[256];
  snprintf(client_id, sizeof(client_id), "%s-watermarks", rd_kafka_name(c->rk));
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!conf)
    return c->rk;
  int rc = conf_set(conf, c->log, "bootstrap.servers", c->brokers);
  rc = rc ? rc : conf_set(conf, c->log, "isolation.level", "read_committed");
  rc = rc ? rc : conf_set(conf, c->log, "enable.auto.commit", "false");
  /* never joined nor committed to: only ListOffsets go out */
  rc = rc ? rc : conf_set(conf, c->log, "group.id", "stockflow-watermarks");
  rc = rc ? rc : conf_set(conf, c->log, "client.id", client_id);
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return c->rk;
  }
  rd_kafka_conf_set_opaque(conf, c);
  rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
  c->wm = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (!c->wm) {
    SF_WARN(c->log, MOD, "watermark client: %s (asking through the consumer)",
            errstr);
    rd_kafka_conf_destroy(conf);
    return c->rk;
  }
  return c->wm;
}

/* Thread-safe: the client is made once, under the consumer's lock. */
static rd_kafka_t *watermark_client(sf_kafka_consumer_t *c) {
  uv_mutex_lock(&c->wm_lock);
  rd_kafka_t *rk = c->wm ? c->wm : make_watermark_client(c);
  uv_mutex_unlock(&c->wm_lock);
  return rk;
}

int sf_kafka_watermarks(sf_kafka_consumer_t *c, const char *topic,
                        int32_t partition, int timeout_ms, int64_t *low,
                        int64_t *high) {
  if (!c || !topic || !low || !high)
    return SF_EINVAL;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
      watermark_client(c), topic, partition, low, high, timeout_ms);
  if (err) {
    SF_WARN(c->log, MOD, "watermarks of %s [%d]: %s", topic, (int)partition,
            rd_kafka_err2str(err));
    return watermark_err(err);
  }
  return 0;
}

int sf_kafka_position(sf_kafka_consumer_t *c, const char *topic,
                      int32_t partition, int64_t *offset) {
  if (!c || !topic || !offset)
    return SF_EINVAL;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_t *tp =
      rd_kafka_topic_partition_list_add(l, topic, partition);
  rd_kafka_resp_err_t err = rd_kafka_position(c->rk, l);
  int rc = 0;
  if (err || tp->err)
    rc = SF_ENOTFOUND; /* not assigned */
  else if (tp->offset == RD_KAFKA_OFFSET_INVALID)
    rc = SF_ENOTFOUND; /* assigned, nothing consumed yet */
  else
    *offset = tp->offset;
  rd_kafka_topic_partition_list_destroy(l);
  return rc;
}

/* proj_dlq: an idempotent librdkafka producer for dead letters, used by
 * the worker thread only (see proj_dlq.h for the contract and the choice of
 * librdkafka over sf_kafka). Delivery reports are counted per flush: the
 * worker produces a batch's dead letters, flushes, and learns whether all
 * of them reached the broker. */
#include "proj_dlq.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/kafka.h"

#define MOD "dlq"

struct proj_dlq {
  sf_log_t *log; /* borrowed */
  const char *topic;
  rd_kafka_t *rk;
  size_t queued, delivered, failed; /* since the last flush */
};

/* Runs inside rd_kafka_flush/rd_kafka_poll, on the worker thread. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  proj_dlq_t *d = opaque;
  if (m->err) {
    d->failed++;
    SF_ERROR(d->log, MOD, "dead letter not delivered to %s: %s",
             d->topic, rd_kafka_err2str(m->err));
  } else {
    d->delivered++;
    SF_DEBUG(d->log, MOD, "dead letter delivered to %s [%d] at %" PRId64,
             d->topic, (int)m->partition, (int64_t)m->offset);
  }
}

int proj_dlq_new(proj_dlq_t **out, const char *brokers, const char *topic,
                 sf_log_t *log) {
  if (!out || !brokers || !topic || !*topic)
    return SF_EINVAL;
  proj_dlq_t *d = calloc(1, sizeof *d);
  if (!d)
    return SF_ENOMEM;
  d->log = log;
  d->topic = topic;
  int rc = SF_ECONFIG;
  char errstr[512];
  const char *settings[][2] = {
      {"bootstrap.servers", brokers},
      {"client.id", "stockflow-projector-dlq"},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "5"},
      {"message.timeout.ms", "15000"},
  };
  /* the opaque is d itself: its first member is the logger (sf/kafka.h) */
  rd_kafka_conf_t *conf = sf_kafka_conf_new(
      settings, sizeof(settings) / sizeof(settings[0]), &d->log, errstr,
      sizeof(errstr));
  if (!conf) {
    SF_ERROR(log, MOD, "producer setting %s", errstr);
    goto fail_conf;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!d->rk) {
    SF_ERROR(log, MOD, "cannot create the dead-letter producer: %s", errstr);
    rc = SF_ECONFIG;
    goto fail_conf;
  }
  *out = d; /* conf now belongs to rk */
  return 0;

fail_conf:
  if (conf)
    rd_kafka_conf_destroy(conf);
  free(d);
  return rc;
}

void proj_dlq_destroy(proj_dlq_t *d) {
  if (!d)
    return;
  if (rd_kafka_flush(d->rk, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
    SF_WARN(d->log, MOD, "%d dead letter(s) still queued at exit",
            rd_kafka_outq_len(d->rk));
  rd_kafka_destroy(d->rk);
  free(d);
}

const char *proj_dlq_topic(const proj_dlq_t *d) { return d->topic; }

int proj_dlq_add(proj_dlq_t *d, const void *key, size_t key_len,
                 const void *value, size_t value_len, const char *error,
                 const char *src_topic, int32_t src_partition,
                 int64_t src_offset) {
  char part[16], off[24];
  snprintf(part, sizeof part, "%d", (int)src_partition);
  snprintf(off, sizeof off, "%" PRId64, src_offset);
  rd_kafka_resp_err_t err = rd_kafka_producev(
      d->rk, RD_KAFKA_V_TOPIC(d->topic),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_KEY(key_len ? (void *)key : NULL, key_len),
      RD_KAFKA_V_VALUE(value_len ? (void *)value : NULL, value_len),
      RD_KAFKA_V_HEADER("x-error", error, -1),
      RD_KAFKA_V_HEADER("x-source-topic", src_topic, -1),
      RD_KAFKA_V_HEADER("x-source-partition", part, -1),
      RD_KAFKA_V_HEADER("x-source-offset", off, -1), RD_KAFKA_V_END);
  if (err) {
    SF_ERROR(d->log, MOD, "cannot queue a dead letter for %s [%d] at %s: %s",
             src_topic, (int)src_partition, off, rd_kafka_err2str(err));
    return SF_EKAFKA;
  }
  d->queued++;
  rd_kafka_poll(d->rk, 0); /* serve earlier reports, never blocks */
  return 0;
}

int proj_dlq_flush(proj_dlq_t *d, int timeout_ms) {
  rd_kafka_resp_err_t err = rd_kafka_flush(d->rk, timeout_ms);
  int rc = 0;
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    SF_ERROR(d->log, MOD, "%d dead letter(s) not acknowledged after %d ms",
             rd_kafka_outq_len(d->rk), timeout_ms);
    rc = SF_ETIMEOUT;
  } else if (d->failed > 0 || d->delivered < d->queued) {
    rc = SF_EKAFKA;
  }
  d->queued = d->delivered = d->failed = 0;
  return rc;
}

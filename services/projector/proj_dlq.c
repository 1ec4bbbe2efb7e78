/* proj_dlq: an idempotent producer for dead letters, used by the worker
 * thread only (see proj_dlq.h for the contract). Delivery reports are
 * counted per flush: the worker produces a batch's dead letters, flushes,
 * and learns whether all of them reached the broker. */
#include "proj_dlq.h"

#include <inttypes.h>
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
  sf_kafka_producer_t *producer;
  size_t queued, delivered, failed; /* since the last flush */
};

/* Runs inside sf_kafka_producer_await, on the worker thread. */
static void delivered_cb(void *ud, int err, int32_t partition, int64_t offset,
                         const char *errstr) {
  proj_dlq_t *d = ud;
  if (err) {
    d->failed++;
    SF_ERROR(d->log, MOD, "dead letter not delivered to %s: %s", d->topic,
             errstr);
  } else {
    d->delivered++;
    SF_DEBUG(d->log, MOD, "dead letter delivered to %s [%d] at %" PRId64,
             d->topic, (int)partition, offset);
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
  char errstr[512];
  /* the producer adds enable.idempotence=true and acks=all */
  const char *settings[][2] = {
      {"bootstrap.servers", brokers},
      {"client.id", "stockflow-projector-dlq"},
      {"linger.ms", "5"},
      {"message.timeout.ms", "15000"},
  };
  int rc = sf_kafka_producer_new(&d->producer, settings,
                                 sizeof(settings) / sizeof(settings[0]), NULL,
                                 log, errstr, sizeof(errstr));
  if (rc) {
    SF_ERROR(log, MOD, "cannot create the dead-letter producer: %s", errstr);
    free(d);
    return rc;
  }
  *out = d;
  return 0;
}

void proj_dlq_destroy(proj_dlq_t *d) {
  if (!d)
    return;
  if (sf_kafka_producer_await(d->producer, 5000))
    SF_WARN(d->log, MOD, "%zu dead letter(s) still queued at exit",
            sf_kafka_producer_inflight(d->producer));
  sf_kafka_producer_destroy(d->producer);
  free(d);
}

const char *proj_dlq_topic(const proj_dlq_t *d) { return d->topic; }

int proj_dlq_add(proj_dlq_t *d, const void *key, size_t key_len,
                 const void *value, size_t value_len, const char *error,
                 const char *src_topic, int32_t src_partition,
                 int64_t src_offset) {
  char part[16], off[24], why[256];
  snprintf(part, sizeof part, "%d", (int)src_partition);
  snprintf(off, sizeof off, "%" PRId64, src_offset);
  const sf_kafka_header_t h[] = {
      {"x-error", error, strlen(error)},
      {"x-source-topic", src_topic, strlen(src_topic)},
      {"x-source-partition", part, strlen(part)},
      {"x-source-offset", off, strlen(off)},
  };
  /* an empty key or value is a null one */
  int rc = sf_kafka_producer_send(d->producer, d->topic, -1,
                                  key_len ? key : NULL, key_len,
                                  value_len ? value : NULL, value_len, h, 4,
                                  delivered_cb, d, why, sizeof(why));
  if (rc) {
    SF_ERROR(d->log, MOD, "cannot queue a dead letter for %s [%d] at %s: %s",
             src_topic, (int)src_partition, off, why);
    return SF_EKAFKA;
  }
  d->queued++;
  return 0;
}

int proj_dlq_flush(proj_dlq_t *d, int timeout_ms) {
  int rc = 0;
  if (sf_kafka_producer_await(d->producer, timeout_ms)) {
    SF_ERROR(d->log, MOD, "%zu dead letter(s) not acknowledged after %d ms",
             sf_kafka_producer_inflight(d->producer), timeout_ms);
    rc = SF_ETIMEOUT;
  } else if (d->failed > 0 || d->delivered < d->queued) {
    rc = SF_EKAFKA;
  }
  d->queued = d->delivered = d->failed = 0;
  return rc;
}

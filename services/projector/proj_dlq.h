/* proj_dlq: dead letters of the projector, produced to inventory.dlq.
 *
 * A consumed message that cannot be decoded, or that decodes but can never
 * be stored (proj_batch's PROJ_INVALID), is copied to the dead-letter topic
 * with its original key and value and four headers: x-error ("<error name>:
 * <reason>"), x-source-topic, x-source-partition and x-source-offset
 * (decimal text). The worker does this BEFORE the batch that consumes the
 * message commits, and waits for the broker's acknowledgement: a dead
 * letter that could not be delivered fails the batch, which is retried, so
 * a message is never consumed without a trace. Delivery is at least once: a
 * retry after a partial failure or a crash between the delivery and the
 * batch's commit can write the same dead letter twice (the source headers
 * identify duplicates).
 *
 * The producer is sf_kafka's, driven by the worker thread: its delivery
 * reports are served inside the flush on that thread. It needs no
 * transactions because the batch's PostgreSQL commit, not Kafka, decides
 * what is consumed.
 *
 * One thread at a time (the worker's). No global state. */
#ifndef PROJ_DLQ_H
#define PROJ_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "sf/log.h"

typedef struct proj_dlq proj_dlq_t;

/* Creates the producer (no broker contact yet). brokers, topic and log are
 * borrowed and must outlive it. Returns 0, SF_EINVAL, SF_ENOMEM or
 * SF_ECONFIG. */
int proj_dlq_new(proj_dlq_t **out, const char *brokers, const char *topic,
                 sf_log_t *log);
/* Waits up to 5 s for anything still queued, then frees. NULL is fine. */
void proj_dlq_destroy(proj_dlq_t *d);

/* Queues one dead letter. key/value (may be NULL with length 0), error and
 * src_topic are copied. While the local queue is full it waits for room
 * (bounded by the message timeout). Returns 0 or SF_EKAFKA (librdkafka
 * refused it; the batch should be retried). */
int proj_dlq_add(proj_dlq_t *d, const void *key, size_t key_len,
                 const void *value, size_t value_len, const char *error,
                 const char *src_topic, int32_t src_partition,
                 int64_t src_offset);

/* Waits up to timeout_ms for the delivery of everything queued since the
 * last flush. Returns 0 when every one was acknowledged, SF_EKAFKA when any
 * failed, SF_ETIMEOUT when some are still in flight (they may still be
 * delivered). Either way the tally starts afresh for the next batch. */
int proj_dlq_flush(proj_dlq_t *d, int timeout_ms);

/* The topic dead letters go to (borrowed). */
const char *proj_dlq_topic(const proj_dlq_t *d);

#endif

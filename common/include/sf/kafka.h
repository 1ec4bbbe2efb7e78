/* kafka: the one door to librdkafka.
 *
 * One configuration builder and log hook for every handle
 * (sf_kafka_conf_new); the producer a thread drives (a writer lane's
 * transactional one, whose calls answer with a named outcome: ok, retry,
 * abortable, broken, fenced); the read_committed view of last stable
 * offsets; murmur2 partitioning (the Java client's, so every client maps a
 * store to the same partition); and the consumer.
 *
 * The consumer reads with isolation.level=read_committed and never commits
 * offsets on its own (enable.auto.commit=false, enable.auto.offset.store=
 * false): the owner stores offsets where it applies the data, or commits
 * them explicitly (sf_kafka_consumer_commit). It is driven by the
 * thread that calls sf_kafka_consumer_poll (no loop needed), and may be used
 * with a consumer group (subscribe, with assign/revoke callbacks that can
 * choose the start offsets) or without (explicit assign).
 *
 * Errors are logged with context (topic, partition, broker reason) and
 * returned as SF_EKAFKA (retriable) or SF_EKAFKA_FATAL. */
#ifndef SF_KAFKA_H
#define SF_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/log.h"

typedef struct sf_kafka_header {
  const char *name;
  const void *value;
  size_t len;
} sf_kafka_header_t;

/* ---- a raw librdkafka producer's delivery reports ---- */

struct rd_kafka_s; /* rd_kafka_t, for callers that drive librdkafka */

/* Serves rk's delivery reports (rd_kafka_poll, on the calling thread) until
 * none is outstanding: 0, or SF_ETIMEOUT after timeout_ms. Use it instead
 * of rd_kafka_flush where latency counts: in librdkafka 2.0 flush's wait for
 * the last report is not woken by its arrival and sleeps out 10 ms slices,
 * which was half the time of every transaction here; this polls with a 1 ms
 * bound, returns once the last report is served and costs no CPU when
 * idle (sf-kafka-limit, 1-event transactions: 22 -> 11 ms each). */
int sf_kafka_await_delivery(struct rd_kafka_s *rk, int timeout_ms);

struct rd_kafka_conf_s; /* rd_kafka_conf_t */

/* The one place a raw librdkafka configuration is made: settings[i] =
 * {key, value} applied in order, librdkafka's log lines and error events
 * routed to the logger (one JSON line each, tagged with the handle's name).
 * log_ref becomes the handle's opaque: it must point at the sf_log_t
 * pointer (for example the first member of the owner's struct) and outlive
 * the handle. Returns the configuration (rd_kafka_new takes it) or NULL
 * with errstr naming the bad setting. Thread-safe. */
struct rd_kafka_conf_s *sf_kafka_conf_new(const char *(*settings)[2],
                                          size_t n, sf_log_t **log_ref,
                                          char *errstr, size_t cap);

/* Partition of key among partitions by murmur2 (the Java client's
 * partitioner; librdkafka's murmur2_random for keyed messages), or -1 when
 * partitions is not positive. Pure and thread-safe. */
int32_t sf_kafka_partition_for_key(const char *key, size_t len,
                                   int32_t partitions);

/* ---- producer, driven by one thread ----
 *
 * An idempotent producer (acks=all), transactional when given a
 * transactional id (what a writer lane needs), whose calls block on the
 * calling thread and whose delivery reports are served on that thread too,
 * so that the thread sees every report of a transaction before it commits.
 * It has no loop: reports are served inside _send (while the local queue
 * is full), _await, _commit and _abort. Not thread-safe: one thread at a
 * time (a lane's, the projector worker's).
 *
 * The transactional calls answer with an outcome that says what to do
 * next, rather than an error code. */

typedef struct sf_kafka_producer sf_kafka_producer_t;

typedef enum sf_kafka_txn_outcome {
  SF_KAFKA_TXN_OK = 0,
  /* nothing decided yet (timed out, the coordinator is busy or away):
   * the same call may be made again */
  SF_KAFKA_TXN_RETRY,
  /* the transaction cannot commit: abort it; the producer goes on */
  SF_KAFKA_TXN_ABORTABLE,
  /* fatal: this producer is unusable; destroy it and make a new one (its
   * init fences what it left open) */
  SF_KAFKA_TXN_BROKEN,
  /* fatal, a fence: a producer with the same transactional id and a newer
   * epoch exists (another instance ran init with our id, or the
   * coordinator aborted a transaction left open past
   * transaction.timeout.ms and bumped the epoch itself) */
  SF_KAFKA_TXN_FENCED
} sf_kafka_txn_outcome_t;

/* "ok", "retry", "abortable", "broken", "fenced"; never NULL. */
const char *sf_kafka_txn_outcome_name(sf_kafka_txn_outcome_t o);

/* Makes the producer (no broker contact yet). settings[i] = {key, value}
 * as for sf_kafka_conf_new (bootstrap.servers, client.id, partitioner and
 * tuning: linger.ms, transaction.timeout.ms, ...); the producer then sets
 * enable.idempotence=true, acks=all and, unless transactional_id is NULL,
 * transactional.id over them. settings and transactional_id are copied;
 * log is borrowed and must outlive the producer. Returns 0, SF_EINVAL,
 * SF_ENOMEM or SF_ECONFIG (errstr says why). */
int sf_kafka_producer_new(sf_kafka_producer_t **out,
                          const char *(*settings)[2], size_t n,
                          const char *transactional_id, sf_log_t *log,
                          char *errstr, size_t cap);

/* Anything still queued or in flight is purged (its callback never fires),
 * then the producer is destroyed. An open transaction is left to the
 * coordinator (the next init with the same id aborts it). NULL is fine. */
void sf_kafka_producer_destroy(sf_kafka_producer_t *p);

/* The transactional calls (with a transactional id only: otherwise
 * librdkafka refuses them, ABORTABLE). Each blocks up to timeout_ms (begin does not
 * block) and returns an outcome; on anything but SF_KAFKA_TXN_OK errstr
 * gets librdkafka's reason and error name, "reason (NAME)".
 * init: registers the transactional id with the coordinator, which fences
 * every earlier producer with this id and completes or aborts what they
 * left open; once per producer (RETRY: call it again).
 * commit: flushes and commits (delivery callbacks fire inside); RETRY
 * means the outcome is still undecided and commit may be called again.
 * abort: purges what was not delivered (those callbacks fire with an
 * error) and aborts.
 * After commit or abort returns, whatever the outcome, no callback of a
 * message sent before fires any more. */
sf_kafka_txn_outcome_t sf_kafka_producer_init(sf_kafka_producer_t *p,
                                              int timeout_ms, char *errstr,
                                              size_t cap);
sf_kafka_txn_outcome_t sf_kafka_producer_begin(sf_kafka_producer_t *p,
                                               char *errstr, size_t cap);
sf_kafka_txn_outcome_t sf_kafka_producer_commit(sf_kafka_producer_t *p,
                                                int timeout_ms,
                                                char *errstr, size_t cap);
sf_kafka_txn_outcome_t sf_kafka_producer_abort(sf_kafka_producer_t *p,
                                               int timeout_ms,
                                               char *errstr, size_t cap);

/* SF_KAFKA_TXN_OK while the producer has no fatal error; otherwise
 * SF_KAFKA_TXN_FENCED (the fatal error is a fence) or SF_KAFKA_TXN_BROKEN,
 * with errstr = "reason (NAME)". */
sf_kafka_txn_outcome_t sf_kafka_producer_fatal(sf_kafka_producer_t *p,
                                               char *errstr, size_t cap);

/* The report of one sent message: err is 0 (then partition and offset say
 * where it was written), SF_EKAFKA, or SF_EKAFKA_FATAL (the producer is
 * fenced or broken); errstr is borrowed for the call. */
typedef void (*sf_kafka_delivery_cb)(void *ud, int err, int32_t partition,
                                     int64_t offset, const char *errstr);

/* Sends one message in the open transaction. partition < 0 partitions by
 * key. key, value and headers are copied. While the local queue is full
 * it serves reports and tries again. Returns 0: cb (may be NULL) fires at
 * most once, on this thread, inside a later _send, _await, _commit or
 * _abort. Or a negative code (cb never fires) with errstr set:
 * SF_EKAFKA_FATAL (fenced or broken), SF_ETOOBIG, SF_ESTATE (no
 * transaction open), SF_ENOMEM, SF_EKAFKA. */
int sf_kafka_producer_send(sf_kafka_producer_t *p, const char *topic,
                           int32_t partition, const void *key,
                           size_t key_len, const void *value,
                           size_t value_len,
                           const sf_kafka_header_t *headers,
                           size_t n_headers, sf_kafka_delivery_cb cb,
                           void *ud, char *errstr, size_t cap);

/* Serves whatever is ready (reports, error events) without waiting: for a
 * thread that sends without awaiting every time. */
void sf_kafka_producer_serve(sf_kafka_producer_t *p);

/* Messages sent whose report has not been served yet. */
size_t sf_kafka_producer_inflight(const sf_kafka_producer_t *p);

/* Serves delivery reports until every sent message has its report: 0, or
 * SF_ETIMEOUT after timeout_ms (see sf_kafka_await_delivery: this is the
 * low-latency wait, not rd_kafka_flush). */
int sf_kafka_producer_await(sf_kafka_producer_t *p, int timeout_ms);

/* Number of partitions of topic from the broker's metadata, waiting up to
 * timeout_ms: 0 with *count (0 when the topic does not exist), or
 * SF_ETIMEOUT / SF_EKAFKA. */
int sf_kafka_producer_partition_count(sf_kafka_producer_t *p,
                                      const char *topic, int timeout_ms,
                                      int32_t *count);

/* ---- last stable offsets ----
 *
 * The offset below which a read_committed reader sees every committed
 * message of a partition. A commit returns before the coordinator has
 * written the commit markers; a writer that must not go on until its
 * messages are readable asks for this. The question goes through a
 * read_committed consumer handle (never subscribed, never committing): a
 * producer handle's ListOffsets reads uncommitted, and its answer (the high
 * watermark) would be past the messages at once. One thread at a time. */

typedef struct sf_kafka_lso sf_kafka_lso_t;

/* settings as for sf_kafka_conf_new (bootstrap.servers, client.id,
 * group.id: a name never joined); isolation.level=read_committed and
 * enable.auto.commit=false are set over them. log is borrowed. Returns 0,
 * SF_EINVAL, SF_ENOMEM or SF_ECONFIG (errstr says why). */
int sf_kafka_lso_new(sf_kafka_lso_t **out, const char *(*settings)[2],
                     size_t n, sf_log_t *log, char *errstr, size_t cap);
void sf_kafka_lso_destroy(sf_kafka_lso_t *l);

/* Asks the partition leader, waiting up to timeout_ms. Returns 0 with
 * *offset, or SF_ETIMEOUT / SF_ENOTFOUND / SF_EKAFKA with *why set to
 * librdkafka's error name (static). Logs nothing: callers poll this. */
int sf_kafka_lso_get(sf_kafka_lso_t *l, const char *topic, int32_t partition,
                     int timeout_ms, int64_t *offset, const char **why);

/* ---- consumer ---- */

typedef struct sf_kafka_consumer sf_kafka_consumer_t;

typedef struct sf_kafka_tp {
  const char *topic; /* borrowed for the callback */
  int32_t partition;
  int64_t offset; /* start offset to use; SF_KAFKA_OFFSET_* allowed */
} sf_kafka_tp_t;

#define SF_KAFKA_OFFSET_BEGINNING (-2)
#define SF_KAFKA_OFFSET_END (-1)
#define SF_KAFKA_OFFSET_STORED (-1000)

/* On assignment the callback may set each tp's offset (default BEGINNING
 * when nothing is stored); on revoke it gets the partitions being taken
 * away. Runs on the polling thread, inside sf_kafka_consumer_poll. */
typedef void (*sf_kafka_assign_cb)(void *ud, sf_kafka_tp_t *tps, size_t n);
typedef void (*sf_kafka_revoke_cb)(void *ud, const sf_kafka_tp_t *tps,
                                   size_t n);

typedef struct sf_kafka_consumer_opts {
  const char *brokers;
  const char *group_id; /* NULL: no group, use sf_kafka_consumer_assign */
  const char *client_id;
  sf_kafka_assign_cb on_assign; /* may be NULL */
  sf_kafka_revoke_cb on_revoke; /* may be NULL */
  void *cb_ud;
  /* report the end of each partition (a message with eof set) each time
   * the consumer reaches it: for a reader that stops at the end */
  bool partition_eof;
  /* more librdkafka settings ({key, value}, applied last; e.g.
   * fetch.max.bytes); may be NULL */
  const char *(*settings)[2];
  size_t n_settings;
} sf_kafka_consumer_opts_t;

typedef struct sf_kafka_msg {
  const char *topic;
  int32_t partition;
  int64_t offset;
  const void *key;
  size_t key_len;
  const void *value;
  size_t value_len;
  int64_t timestamp_ms;
  /* the end of the partition (opts.partition_eof): offset is the next one
   * to be written; no key, value nor headers */
  bool eof;
  void *priv_; /* private: the rd_kafka_message_t */
} sf_kafka_msg_t;

int sf_kafka_consumer_new(sf_kafka_consumer_t **out,
                          const sf_kafka_consumer_opts_t *opts, sf_log_t *log);
/* Closes (leaving the group) and frees. */
void sf_kafka_consumer_destroy(sf_kafka_consumer_t *c);

/* Needs opts.group_id (SF_ESTATE otherwise). Rebalances use the eager
 * protocol: a revoke of everything, then a fresh assign. */
int sf_kafka_consumer_subscribe(sf_kafka_consumer_t *c,
                                const char *const *topics, size_t n);
/* Assigns explicit partitions and start offsets (no group); n == 0 takes
 * every partition away. */
int sf_kafka_consumer_assign(sf_kafka_consumer_t *c, const sf_kafka_tp_t *tps,
                             size_t n);

/* Commits offsets for the group (each tp's offset: the next one to read),
 * synchronously, for an owner that keeps its offsets in Kafka. Returns 0
 * or SF_EKAFKA (logged with the broker's reason). */
int sf_kafka_consumer_commit(sf_kafka_consumer_t *c, const sf_kafka_tp_t *tps,
                             size_t n);

/* Waits up to timeout_ms and fills msgs with at most max messages (owned
 * by the caller: release each with sf_kafka_msg_destroy). Returns the
 * count (0 on timeout) or a negative code. Partition EOF (unless
 * opts.partition_eof) and transient errors are logged, not returned. */
int sf_kafka_consumer_poll(sf_kafka_consumer_t *c, sf_kafka_msg_t *msgs,
                           size_t max, int timeout_ms);
void sf_kafka_msg_destroy(sf_kafka_msg_t *m);

/* Finds header name in m; returns 0 with value/len borrowed from m, or
 * SF_ENOTFOUND. */
int sf_kafka_msg_header(const sf_kafka_msg_t *m, const char *name,
                        const void **value, size_t *len);

/* Number of partitions of topic (0 if missing), waits up to timeout_ms. */
int sf_kafka_partition_count(sf_kafka_consumer_t *c, const char *topic,
                             int timeout_ms, int32_t *count);
/* Low and high watermark (the next offset to be written; with
 * read_committed, the last stable offset). Asked through a client of its
 * own (made on the first call, freed with c), so the query never waits
 * behind the consumer's fetch in flight. Thread-safe: may be called from
 * threads other than the polling one. */
int sf_kafka_watermarks(sf_kafka_consumer_t *c, const char *topic,
                        int32_t partition, int timeout_ms, int64_t *low,
                        int64_t *high);
/* Current position (next offset to read) of an assigned partition. Returns
 * 0, or SF_ENOTFOUND when the partition is not assigned or nothing has been
 * consumed from it yet. */
int sf_kafka_position(sf_kafka_consumer_t *c, const char *topic,
                      int32_t partition, int64_t *offset);

#endif

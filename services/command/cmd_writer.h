/* cmd_writer: one writer lane, a transactional producer with group commit.
 *
 * One thread owns one transactional Kafka producer (acks=all, idempotence,
 * a stable transactional.id, so that a second instance with the same id
 * fences this one). Units of work (the messages of one command, which must
 * commit together) are submitted from the loop thread; the thread takes
 * everything queued (up to max_batch messages), produces it in ONE Kafka
 * transaction and commits. While one transaction commits, the next batch
 * fills: that is the group commit. The outcome of each unit comes back to
 * the loop thread (done callback) with the partition and offset of every
 * message, and only then are the requests answered.
 *
 * The lanes (cmd_lanes.c) decide which units go to which writer and in
 * what order; the writer commits them in submission order. It knows nothing
 * of the state: the lanes rebuild it.
 *
 * Failure: when a batch fails, its units fail, the writer stops accepting
 * (every unit queued or submitted after it fails with SF_EUNAVAILABLE: it
 * was decided against a state that assumed the failed batch) and reports
 * the failure (failed callback). It accepts units again only after
 * cmd_writer_accept(). When the producer itself is broken (a fatal
 * librdkafka error: the broker was killed mid-transaction, the coordinator
 * moved, INVALID_TXN_STATE, a transaction aborted by the coordinator after
 * its timeout), the writer destroys it, creates a new one and runs
 * init_transactions until the broker answers (which fences the old epoch
 * and aborts whatever it left open), then reports ready again. Only a fence
 * by another instance (a fatal fence of a transaction younger than the
 * transaction timeout: someone else ran init_transactions with our id)
 * stops the writer for good (fatal callback).
 *
 * Threads: every function is called on the loop thread; callbacks fire on
 * the loop thread. */
#ifndef CMD_WRITER_H
#define CMD_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sf/event.h"
#include "sf/log.h"

/* One Kafka message of a unit. The loop fills the input fields; the writer
 * fills the result fields before the done callback. */
typedef struct cmd_msg {
  struct cmd_msg *next;
  const char *topic;    /* borrowed from the settings */
  char key[SF_ID_LEN];  /* partition key: store id or catalog id */
  int32_t to_partition; /* set by the lanes; -1: the partitioner's */
  uint8_t *value;       /* owned (free()d with the message) */
  size_t value_len;
  /* CloudEvents Kafka binding headers */
  char ce_id[SF_ID_LEN];
  char ce_type[64];
  char ce_time[40];
  char ce_subject[128];
  /* The event streams the message moves, hashed (cmd_stream_hash): the
   * store x product of a stock event, and for an order event the order and
   * each line's store x product. The lanes keep units that share a stream
   * in decision order across lanes (cmd_lanes.h). Owned; none for catalog
   * events. */
  uint64_t *streams;
  size_t n_streams;
  /* results */
  int err; /* 0 or a negative SF_E code */
  int32_t partition;
  int64_t offset;
} cmd_msg_t;

/* The hash of the stream named by a and b (e.g. a store id and a product
 * id; b may be ""). Pure. */
uint64_t cmd_stream_hash(const char *a, const char *b);

/* Frees one message (not the ones after it). */
void cmd_msg_free(cmd_msg_t *m);

/* A unit: the messages of one command; they commit or fail together. */
typedef struct cmd_unit {
  struct cmd_unit *next;
  cmd_msg_t *msgs;
  size_t n_msgs;
  uint64_t generation; /* the state generation it was decided against */
  uint64_t lanes;      /* set by the lanes: bit i = touches lane i */
  bool wait_visible;   /* after the commit, wait until read_committed
                          readers can see its messages (catalog events) */
  int err;             /* result: 0 or negative SF_E code */
  uint64_t batch_id;   /* which transaction carried it */
  size_t batch_units;  /* how many units that transaction carried */
  void *ud;            /* the caller's (e.g. the pending HTTP request) */
  unsigned lane;       /* set by the lanes: the lane that commits it */
} cmd_unit_t;

/* Frees a unit and its messages. */
void cmd_unit_free(cmd_unit_t *u);

/* ---- the sink a lane commits to ----
 * A small vtable so that the lanes can run over Kafka (cmd_writer) or over
 * an in-memory sink in the unit tests; the base struct is the first member
 * of each implementation. */
/* Upper bounds (seconds) of the commit-duration histogram's buckets: a
 * transaction takes a few ms here; 20 ms and more is librdkafka's fixed
 * CONCURRENT_TRANSACTIONS backoff, a broker pause or a busy machine. */
#define CMD_COMMIT_BUCKETS 9
extern const double cmd_commit_bounds[CMD_COMMIT_BUCKETS];

typedef struct cmd_writer_stats {
  uint64_t batches, batch_units, batch_msgs, failed_batches, recoveries;
  double commit_seconds_sum;
  /* committed batches by duration: [i] counts (bounds[i-1], bounds[i]];
   * those above the last bound are only in batches */
  uint64_t commit_buckets[CMD_COMMIT_BUCKETS];
} cmd_writer_stats_t;

/* The bucket of a commit that took seconds, or CMD_COMMIT_BUCKETS when it
 * is above the last bound. Pure. */
size_t cmd_writer_commit_bucket(double seconds);

typedef struct cmd_sink cmd_sink_t;
typedef struct cmd_sink_vt {
  void (*submit)(cmd_sink_t *s, cmd_unit_t *unit);
  void (*hold)(cmd_sink_t *s);
  void (*accept)(cmd_sink_t *s, uint64_t generation);
  void (*stats)(cmd_sink_t *s, cmd_writer_stats_t *out);
  void (*destroy)(cmd_sink_t *s);
} cmd_sink_vt_t;
struct cmd_sink {
  const cmd_sink_vt_t *vt;
};

typedef struct cmd_writer cmd_writer_t;

typedef struct cmd_writer_opts {
  const char *brokers;
  const char *transactional_id;
  const char *topic_stock; /* its partition count is reported when ready */
  unsigned lane;           /* for logs */
  size_t max_batch;        /* messages per transaction */
  int64_t linger_us;       /* extra wait for a fuller batch; 0: none */
  /* least time from a commit's return to the next transaction's first
   * message (the units queue meanwhile); 0: none */
  int64_t commit_gap_us;
  const char *kafka_debug; /* librdkafka debug contexts; NULL or "": none */
  int txn_timeout_ms;      /* commit/abort bound */
} cmd_writer_opts_t;

/* Seconds a lane waits before taking its next batch: linger_us, or the
 * rest of gap_us after the last commit returned (committed_at, monotonic
 * seconds; 0: none yet) when that is longer. The broker's coordinator
 * completes a commit (commit markers, then its own record) a moment after
 * answering it and refuses, with CONCURRENT_TRANSACTIONS, a transaction of
 * the same producer that registers partitions before that; librdkafka
 * retries after a fixed 20 ms. A lane idle for longer than the gap waits
 * for nothing. Pure. */
double cmd_writer_pause(int64_t linger_us, int64_t gap_us, double committed_at,
                        double now);

typedef struct cmd_writer_cbs {
  /* once per unit; takes ownership of unit */
  void (*done)(void *ud, cmd_unit_t *unit);
  /* the producer is initialised (at start and after a recovery): nothing
   * this lane wrote before is still open. stock_partitions: the stock
   * topic's partition count (0 when unknown). */
  void (*ready)(void *ud, unsigned lane, int32_t stock_partitions);
  /* a batch failed; the writer accepts nothing until cmd_writer_accept.
   * recovering: the producer is being replaced (no ready until it is). */
  void (*failed)(void *ud, unsigned lane, const char *reason,
                 bool recovering);
  /* fenced by another instance or unusable configuration: this lane is
   * done for good. reason borrowed for the call. */
  void (*fatal)(void *ud, unsigned lane, const char *reason);
  void *ud;
} cmd_writer_cbs_t;

/* Starts the writer thread (it creates the producer and runs
 * init_transactions; ready fires when done). opts strings are borrowed for
 * the writer's life; loop and log are borrowed. Returns 0, SF_ENOMEM or
 * SF_EINTERNAL. */
int cmd_writer_new(cmd_writer_t **out, uv_loop_t *loop,
                   const cmd_writer_opts_t *opts, const cmd_writer_cbs_t *cbs,
                   sf_log_t *log);

/* Queues a unit (ownership passes to the writer; it comes back through the
 * done callback, always, even on shutdown). A unit whose generation is not
 * the accepted one fails with SF_EUNAVAILABLE without reaching Kafka. */
void cmd_writer_submit(cmd_writer_t *w, cmd_unit_t *unit);

/* Stops accepting: queued units fail with SF_EUNAVAILABLE; the batch being
 * committed finishes. */
void cmd_writer_hold(cmd_writer_t *w);

/* Accepts units of generation from now on. */
void cmd_writer_accept(cmd_writer_t *w, uint64_t generation);

/* Stats for /metrics (read on the loop thread). */
void cmd_writer_stats(cmd_writer_t *w, cmd_writer_stats_t *out);

/* Stops the thread (the batch being committed finishes), fails queued
 * units with SF_ECANCELED through the done callback, destroys the
 * producer. Call before closing the loop; the async handle is freed on the
 * loop's next iteration. */
void cmd_writer_destroy(cmd_writer_t *w);

/* The writer as a sink (its cmd_sink_t base). */
cmd_sink_t *cmd_writer_sink(cmd_writer_t *w);

#endif

/* cmd_lanes: the command service's writer lanes, their order and their
 * recovery.
 *
 * The stock partitions are split among N lanes (partition p belongs to lane
 * p mod N; with several instances, the instance's partitions i, i + n, ...
 * belong to lane (p / n) mod N, so that they spread over every lane). Each lane is a cmd_writer: its own thread, its own
 * transactional producer (transactional.id <id> for lane 0, <id>-<k> for
 * lane k) and its own group commit, so N transactions commit at once. The
 * decisions stay on the loop thread against one state (deciding takes
 * microseconds; it is what keeps 200 concurrent sales of 100 units at
 * exactly 100): the lanes parallelise the commit, which is where the time
 * goes (a Kafka transaction takes ~10 ms here, deciding ~2 us).
 *
 * Order. A unit goes to the lane of its store's partition, computed here
 * with the partitioner every client uses (murmur2, as the Java client) and
 * pinned on the message, so each message lands on the partition the lanes
 * routed it to. What must keep decision order is each event stream (a store
 * x product, an order: cmd_msg_t.streams), the unit a stream's log is
 * folded in. So a stock unit that writes partitions of several lanes (a
 * transfer between stores of two lanes, a batch over many stores) commits
 * on its first message's lane as ONE Kafka transaction (both legs or
 * neither) and holds up no lane: it waits only while one of its streams is
 * in flight on another lane, and a unit that shares a stream with a unit
 * waiting or in flight on another lane waits for it in turn. Units of one
 * lane commit in decision order, except that one waiting for a stream lets
 * the lane's other work pass. A catalog unit spans every lane: it is a
 * barrier that waits until every lane has nothing in flight, and the lanes
 * take nothing else until it is committed and, once committed, readable
 * (cmd_writer: wait_visible), so a store or product is visible before any
 * stock event naming it. (A stock unit whose messages name no stream is a
 * barrier too; the pipeline names them all.)
 *
 * Recovery. When a lane's batch fails (or the loop asks, cmd_lanes_resync),
 * writes pause: every lane stops accepting and fails what it has queued,
 * the resync callback fires, and once every lane has nothing in flight and
 * a working producer (a broken one is replaced by its writer, retrying
 * until the broker answers), the state is rebuilt from the log on a thread
 * of its own (retrying until Kafka answers), handed over by the state
 * callback with a new generation, and writes resume. A lane fenced by
 * another instance ends everything: the fatal callback fires once.
 *
 * Threads: every function is called on the loop thread; callbacks fire on
 * the loop thread. */
#ifndef CMD_LANES_H
#define CMD_LANES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cmd_state.h"
#include "cmd_writer.h"
#include "sf/log.h"

#define CMD_MAX_LANES 64

typedef struct cmd_lanes cmd_lanes_t;

typedef struct cmd_lanes_opts {
  const char *brokers;
  const char *transactional_id; /* lane 0; lane k: "<id>-<k>" (the
                                   instance's prefix: cmd_instances.h) */
  const char *topic_catalog;
  const char *topic_stock;
  const char *registry_url; /* schema registry; NULL or "" when none */
  size_t lanes;             /* 1 .. CMD_MAX_LANES */
  /* instances (cmd_instances.h): the instance owns every instances-th
   * stock partition, which its lanes share: lane (p / instances) mod lanes.
   * 0 or 1: a single instance (lane p mod lanes). */
  unsigned instances;
  size_t max_batch;          /* messages per transaction */
  int64_t linger_us;         /* extra wait for a fuller batch; 0: none */
  int64_t commit_gap_us;     /* least time from a commit to the next */
  const char *kafka_debug;   /* librdkafka debug contexts; NULL/"": none */
  int txn_timeout_ms;        /* commit/abort bound */
  int64_t idem_retention_us; /* idempotency keys restored by the rebuild */
  /* optional, borrowed: kept current by every rebuild (cmd_rebuild.h) */
  struct cmd_rebuild_progress *rebuild_progress;
  /* Seams for the unit tests; NULL: the Kafka writer and cmd_rebuild_run.
   * new_sink creates lane wo->lane's sink (callbacks as for a writer);
   * rebuild folds the log into a new state (on the rebuild thread). */
  int (*new_sink)(void *ud, uv_loop_t *loop, const cmd_writer_opts_t *wo,
                  const cmd_writer_cbs_t *cbs, sf_log_t *log,
                  cmd_sink_t **out);
  int (*rebuild)(void *ud, const atomic_bool *stop, cmd_state_t **out,
                 double *seconds, uint64_t *events);
  void *seam_ud;
} cmd_lanes_opts_t;

typedef struct cmd_lanes_cbs {
  /* once per unit; takes ownership of unit */
  void (*done)(void *ud, cmd_unit_t *unit);
  /* a (re)built state is ready; takes ownership of state; generation is
   * the value to tag the units decided against it */
  void (*state)(void *ud, cmd_state_t *state, uint64_t generation,
                double seconds, uint64_t events);
  /* writes paused until the next state callback; reason borrowed */
  void (*resync)(void *ud, const char *reason);
  /* this instance cannot write any more (fenced by another instance, or an
   * unusable configuration); reason borrowed */
  void (*fatal)(void *ud, const char *reason);
  void *ud;
} cmd_lanes_cbs_t;

/* Starts the lanes' writers; the first rebuild follows once every lane
 * has initialised its transactions. opts strings are borrowed for the
 * lanes' life. Returns 0, SF_ENOMEM, SF_EINVAL or SF_EINTERNAL. */
int cmd_lanes_new(cmd_lanes_t **out, uv_loop_t *loop,
                  const cmd_lanes_opts_t *opts, const cmd_lanes_cbs_t *cbs,
                  sf_log_t *log);

/* Routes a unit (its messages' topics and keys) and queues it; ownership
 * passes to the lanes and comes back through the done callback, always. */
void cmd_lanes_submit(cmd_lanes_t *l, cmd_unit_t *unit);

/* Asks for a rebuild of the state from the log (the loop's state no
 * longer matches what it submitted); reason is copied. */
void cmd_lanes_resync(cmd_lanes_t *l, const char *reason);

/* The number of lanes and the stock partitions lane k owns, for logs and
 * /metrics. */
size_t cmd_lanes_count(const cmd_lanes_t *l);

/* Sums of every lane's writer stats (zeros when l is NULL); per_lane
 * (may be NULL) gets
 * cmd_lanes_count() entries. */
void cmd_lanes_stats(cmd_lanes_t *l, cmd_writer_stats_t *sum,
                     cmd_writer_stats_t *per_lane);

/* Units waiting behind a barrier (not yet handed to a writer). */
size_t cmd_lanes_waiting(const cmd_lanes_t *l);

/* Stops every writer and the rebuild (each finishes what it is doing),
 * fails what is left with SF_ECANCELED through the done callback. Handles
 * are freed on the loop's next iteration. */
void cmd_lanes_destroy(cmd_lanes_t *l);

/* ---- pure parts, for the unit tests ---- */

/* The lane of a stock partition. */
unsigned cmd_lanes_of_partition(int32_t partition, size_t lanes);

/* The lane of a stock partition owned by an instance of `instances`
 * (instance i owns the partitions i, i + instances, ...): spreads them over
 * the lanes as cmd_lanes_of_partition(partition / instances, lanes). */
unsigned cmd_lanes_of_owned_partition(int32_t partition, unsigned instances,
                                      size_t lanes);

/* The stock partition of a store id: murmur2 of the key, as librdkafka's
 * murmur2_random and the Java client's default partitioner. */
int32_t cmd_lanes_partition(const char *key, int32_t partitions);

#endif

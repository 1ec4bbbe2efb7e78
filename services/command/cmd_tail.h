/* cmd_tail: keeps folding the events other command instances write.
 *
 * With several instances (cmd_instances.h), each one writes only the stock
 * partitions it owns, and instance 0 alone writes the catalog. An instance
 * rebuilds its state from the whole log at start, and from then on this
 * tail reads, with read_committed, every partition it does not write (the
 * catalog unless it is instance 0, and the other instances' stock
 * partitions) from the offsets the rebuild reached, and folds each event
 * into the state with cmd_state_apply, the function of the rebuild. So a
 * product created through instance 0 becomes known to instance 1 a few
 * tens of milliseconds later, and an order placed through instance 0 can
 * be found (and redirected) by instance 1.
 *
 * The window in between is closed where it matters by cmd_tail_sync: it
 * asks the broker for the last stable offsets of the tailed partitions and
 * calls back once the tail has folded up to them, i.e. once everything
 * committed before the call is in the state (a command naming an unknown
 * product, store or order is decided again then, before it is answered
 * 404).
 *
 * The consumer is polled on the loop thread (rd_kafka_consumer_poll with
 * no wait, from a timer), so the state is only ever touched on the loop;
 * the stable-offset queries run on libuv's thread pool. Every function is
 * called on the loop thread; callbacks fire on the loop thread. */
#ifndef CMD_TAIL_H
#define CMD_TAIL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cmd_instances.h"
#include "cmd_state.h"
#include "sf/log.h"

typedef struct cmd_tail cmd_tail_t;

typedef struct cmd_tail_opts {
  const char *brokers;
  const char *topic_catalog;
  const char *topic_stock;
  cmd_instances_t instances; /* which partitions this instance writes */
  uint64_t poll_ms;          /* period of the poll timer */
  uint64_t sync_timeout_ms;  /* a sync gives up (caught_up false) after it */
  /* schema registry (Confluent wire format): the schema of an id the tail
   * has not seen is fetched from it once, on the loop thread (a short
   * blocking call, once per id); NULL or "": none */
  const char *registry_url;
} cmd_tail_opts_t;

/* Fires once: caught_up is true when everything committed to the tailed
 * partitions before cmd_tail_sync was called is folded into the state;
 * false after the timeout, a broker error, a new state or at destroy. */
typedef void (*cmd_tail_sync_cb)(void *ud, bool caught_up);

/* Creates the consumer (nothing is assigned until cmd_tail_reset). opts
 * strings, loop and log are borrowed for the tail's life. Returns 0,
 * SF_ENOMEM, SF_ECONFIG or SF_EKAFKA. */
int cmd_tail_new(cmd_tail_t **out, uv_loop_t *loop, const cmd_tail_opts_t *o,
                 sf_log_t *log);

/* Folds into state from now on (borrowed until the next reset or
 * destroy), from the positions it records (cmd_state_log_next). Pending
 * syncs fire with false. Returns 0, SF_ENOMEM or SF_EKAFKA (logged; the
 * tail then folds nothing until the next reset). */
int cmd_tail_reset(cmd_tail_t *t, cmd_state_t *state);

/* See cmd_tail_sync_cb. cb never fires inside this call. */
void cmd_tail_sync(cmd_tail_t *t, cmd_tail_sync_cb cb, void *ud);

/* Events folded, and syncs asked, since the start (for /metrics). */
void cmd_tail_stats(const cmd_tail_t *t, uint64_t *folded, uint64_t *syncs);

/* Stops polling; pending syncs fire with false (now, or when their query
 * returns); the consumer and memory are freed once the last query and the
 * timer are done (on later loop iterations). */
void cmd_tail_destroy(cmd_tail_t *t);

#endif

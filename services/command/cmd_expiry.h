/* cmd_expiry: the sweeper that releases the reservations of orders placed
 * longer ago than the configured time-to-live (setting order-ttl-s).
 *
 * Every tick it asks the state for the placed orders that are due
 * (cmd_state_due_orders: OrderPlaced's time + ttl, both from the log, so a
 * restarted service expires the same orders) and expires each one as a
 * system command through the pipeline a cancel takes: decide
 * (cmd_decide_order_expire), fold and commit (cmd_pipeline_commit). The event is
 * an OrderCancelled with cause "expired". An order fulfilled or cancelled
 * meanwhile is not placed any more and is never expired; a failed commit
 * rebuilds the state, so the order is due again at the next tick.
 *
 * Runs on the loop thread. */
#ifndef CMD_EXPIRY_H
#define CMD_EXPIRY_H

#include <stdint.h>
#include <uv.h>

#include "cmd_pipeline.h"
#include "sf/log.h"

typedef struct cmd_expiry cmd_expiry_t;

/* Starts sweeping every interval_ms (ttl_s > 0; pipeline, loop and log are
 * borrowed for the sweeper's life). Returns 0 or SF_ENOMEM. */
int cmd_expiry_new(cmd_expiry_t **out, uv_loop_t *loop, cmd_pipeline_t *pipeline,
                   int64_t ttl_s, uint64_t interval_ms, sf_log_t *log);
/* Stops the timer; the memory goes in its close callback. NULL is a no-op.
 * Commands already handed to the pipeline are answered by it. */
void cmd_expiry_close(cmd_expiry_t *x);

#endif

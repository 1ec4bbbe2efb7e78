/* cmd_expiry: expiry of order reservations. See cmd_expiry.h. */
#include "cmd_expiry.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_state.h"
#include "sf/err.h"

/* Orders expired per tick at most: a backlog (a long ttl lowered, a service
 * down for a while) drains over several ticks instead of one long stall of
 * the loop. */
#define EXPIRY_PER_TICK 256

struct cmd_expiry {
  uv_timer_t timer;
  cmd_pipeline_t *pipeline;
  sf_log_t *log;
  int64_t ttl_us;
  sf_order_line_t *lines; /* CMD_MAX_LINES, for one decision */
  char ids[EXPIRY_PER_TICK][SF_ID_LEN];
};

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The outcome of one expiry: 200 once committed; 503 when the bus did not
 * commit (the order is due again at the next tick). */
static void answer_cb(void *ud, int status, const char *body) {
  cmd_expiry_t *x = ud;
  if (status == 200)
    SF_DEBUG(x->log, "expiry", "order reservation released: %s", body);
  else
    SF_WARN(x->log, "expiry", "expiring an order answered %d: %s", status,
            body);
}

static void expire_one(cmd_expiry_t *x, const char *order_id, int64_t now) {
  cmd_req_t *c = cmd_pipeline_begin_system(x->pipeline, answer_cb, x);
  if (!c)
    return; /* not writing now (rebuilding, out of memory): next tick */
  sf_event_t e;
  cmd_pipeline_envelope(x->pipeline, c, &e, NULL);
  cmd_verdict_t v = cmd_decide_order_expire(cmd_pipeline_state(x->pipeline), order_id,
                                            now, x->ttl_us, x->lines, &e);
  if (v != CMD_OK) {
    cmd_pipeline_refuse(x->pipeline, c, v, "the order is not due or not placed", NULL);
    return;
  }
  SF_INFO(x->log, "expiry", "order %s placed more than %lld s ago: releasing "
                            "its reservation",
          order_id, (long long)(x->ttl_us / 1000000));
  cmd_outgoing_t o = {&e, false, e.store_id};
  cmd_pipeline_commit(x->pipeline, c, &o, 1);
}

static bool keep_cb(void *ud, const char *store_id) {
  return cmd_pipeline_store_is_local(ud, store_id);
}

static void tick_cb(uv_timer_t *t) {
  cmd_expiry_t *x = t->data;
  const cmd_state_t *st = cmd_pipeline_state(x->pipeline);
  if (!st)
    return;
  int64_t now = wall_us();
  /* instances: only the orders of this instance's stores */
  size_t n = cmd_state_due_orders_where(st, now, x->ttl_us, keep_cb, x->pipeline,
                                        x->ids, EXPIRY_PER_TICK);
  for (size_t i = 0; i < n; i++)
    expire_one(x, x->ids[i], now);
}

int cmd_expiry_new(cmd_expiry_t **out, uv_loop_t *loop, cmd_pipeline_t *pipeline,
                   int64_t ttl_s, uint64_t interval_ms, sf_log_t *log) {
  cmd_expiry_t *x = calloc(1, sizeof(*x));
  if (!x)
    return SF_ENOMEM;
  x->lines = calloc(CMD_MAX_LINES, sizeof(*x->lines));
  if (!x->lines) {
    free(x);
    return SF_ENOMEM;
  }
  x->pipeline = pipeline;
  x->log = log;
  x->ttl_us = ttl_s * 1000000;
  uv_timer_init(loop, &x->timer);
  x->timer.data = x;
  uv_timer_start(&x->timer, tick_cb, interval_ms, interval_ms);
  *out = x;
  return 0;
}

static void closed_cb(uv_handle_t *h) {
  cmd_expiry_t *x = h->data;
  free(x->lines);
  free(x);
}

void cmd_expiry_close(cmd_expiry_t *x) {
  if (!x)
    return;
  uv_timer_stop(&x->timer);
  uv_close((uv_handle_t *)&x->timer, closed_cb);
}

/* qry_wait: waits for a position token by polling projector_offsets. See
 * qry_wait.h for the contract.
 *
 * Each wait owns a uv_timer and moves through QUERYING (a QRY_SQL_POSITION
 * query is in flight) and SLEEPING (the timer runs) until it has an
 * outcome; then it is CLOSING: the timer is closed and the user callback
 * fires from the close callback, after which the wait is freed. A cancel
 * during QUERYING is remembered and honoured when the result arrives, so a
 * query callback never sees freed memory. */
#include "qry_wait.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "qry_rows.h"
#include "qry_sql.h"
#include "sf/err.h"

typedef enum wait_state { W_QUERYING, W_SLEEPING, W_CLOSING } wait_state_t;

struct qry_wait {
  qry_waits_t *ws;
  qry_wait_t *prev, *next; /* in ws->head while QUERYING or SLEEPING */
  uv_timer_t timer;
  qry_position_t pos;
  char partition[16];
  uint64_t deadline; /* loop time (ms) */
  qry_wait_cb cb;    /* NULL: start failed, close silently */
  void *ud;
  wait_state_t state;
  bool cancel_requested;
  qry_wait_outcome_t outcome;
};

struct qry_waits {
  uv_loop_t *loop;
  sf_pg_t *pg;
  sf_log_t *log;
  qry_wait_opts_t opts;
  qry_wait_t *head;
  size_t pending; /* allocated waits, until their close callback ran */
  void (*idle_cb)(void *ud);
  void *idle_ud;
  uint64_t started, timeouts, checks;
};

int qry_waits_new(qry_waits_t **out, uv_loop_t *loop, sf_pg_t *pg,
                  const qry_wait_opts_t *opts, sf_log_t *log) {
  if (!out || !loop || !pg || !opts || !opts->group || !opts->topic_catalog ||
      !opts->topic_stock)
    return SF_EINVAL;
  qry_waits_t *ws = calloc(1, sizeof(*ws));
  if (!ws)
    return SF_ENOMEM;
  ws->loop = loop;
  ws->pg = pg;
  ws->log = log;
  ws->opts = *opts;
  if (ws->opts.interval_ms == 0)
    ws->opts.interval_ms = 10;
  *out = ws;
  return 0;
}

static void unlink_wait(qry_wait_t *w) {
  qry_waits_t *ws = w->ws;
  if (w->prev)
    w->prev->next = w->next;
  else if (ws->head == w)
    ws->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->prev = w->next = NULL;
}

static void on_closed(uv_handle_t *h) {
  qry_wait_t *w = h->data;
  qry_waits_t *ws = w->ws;
  ws->pending--;
  if (w->cb) {
    if (w->outcome == QRY_WAIT_TIMEOUT)
      ws->timeouts++;
    w->cb(w->ud, w->outcome);
  }
  free(w);
  if (ws->pending == 0 && ws->idle_cb)
    ws->idle_cb(ws->idle_ud);
}

static void finish(qry_wait_t *w, qry_wait_outcome_t outcome) {
  unlink_wait(w);
  w->state = W_CLOSING;
  w->outcome = outcome;
  uv_close((uv_handle_t *)&w->timer, on_closed);
}

static void on_result(void *ud, int err, const PGresult *res,
                      const char *sqlstate, const char *errmsg);

/* Sends one check. Returns 0 or the error of sf_pg_query. */
static int check(qry_wait_t *w) {
  qry_waits_t *ws = w->ws;
  const char *topic = w->pos.kind == QRY_TOPIC_STOCK ? ws->opts.topic_stock
                                                      : ws->opts.topic_catalog;
  const char *params[3] = {ws->opts.group, topic, w->partition};
  w->state = W_QUERYING;
  ws->checks++;
  return sf_pg_query(ws->pg, QRY_SQL_POSITION, 3, params, on_result, w);
}

static void on_timer(uv_timer_t *t) {
  qry_wait_t *w = t->data;
  int rc = check(w);
  if (rc != 0) {
    SF_WARN(w->ws->log, "wait", "position check not queued: %s",
            sf_strerror(rc));
    finish(w, QRY_WAIT_ERROR);
  }
}

static void on_result(void *ud, int err, const PGresult *res,
                      const char *sqlstate, const char *errmsg) {
  qry_wait_t *w = ud;
  qry_waits_t *ws = w->ws;
  if (w->cancel_requested) {
    finish(w, QRY_WAIT_CANCELED);
    return;
  }
  if (err) {
    if (err != SF_ECANCELED)
      SF_WARN(ws->log, "wait", "position check failed: %s (sqlstate %s): %s",
              sf_strerror(err), sqlstate ? sqlstate : "",
              errmsg ? errmsg : "");
    finish(w, err == SF_ECANCELED ? QRY_WAIT_CANCELED : QRY_WAIT_ERROR);
    return;
  }
  int64_t next = -1;
  int rc = PQntuples(res) > 0 ? qry_row_i64(res, 0, "next_offset", &next)
                              : SF_ENOTFOUND;
  if (rc == 0 && next > w->pos.offset) {
    finish(w, QRY_WAIT_APPLIED);
    return;
  }
  if (rc != 0 && rc != SF_ENOTFOUND) {
    SF_ERROR(ws->log, "wait", "projector_offsets.next_offset unreadable: %s",
             sf_strerror(rc));
    finish(w, QRY_WAIT_ERROR);
    return;
  }
  uint64_t now = uv_now(ws->loop);
  if (now >= w->deadline) {
    SF_INFO(ws->log, "wait",
            "position %s-%" PRId32 "-%" PRId64 " not applied in %" PRIu64
            " ms (next_offset %" PRId64 ")",
            w->pos.kind == QRY_TOPIC_STOCK ? "stock" : "catalog",
            w->pos.partition, w->pos.offset, ws->opts.max_wait_ms, next);
    finish(w, QRY_WAIT_TIMEOUT);
    return;
  }
  uint64_t delay = w->deadline - now;
  if (delay > ws->opts.interval_ms)
    delay = ws->opts.interval_ms;
  w->state = W_SLEEPING;
  uv_timer_start(&w->timer, on_timer, delay, 0);
}

int qry_wait_start(qry_waits_t *ws, const qry_position_t *pos, qry_wait_cb cb,
                   void *ud, qry_wait_t **handle) {
  if (!ws || !pos || !cb)
    return SF_EINVAL;
  qry_wait_t *w = calloc(1, sizeof(*w));
  if (!w)
    return SF_ENOMEM;
  w->ws = ws;
  w->pos = *pos;
  snprintf(w->partition, sizeof(w->partition), "%" PRId32, pos->partition);
  w->deadline = uv_now(ws->loop) + ws->opts.max_wait_ms;
  int rc = uv_timer_init(ws->loop, &w->timer);
  if (rc != 0) {
    SF_ERROR(ws->log, "wait", "uv_timer_init: %s", uv_strerror(rc));
    free(w);
    return SF_EUNAVAILABLE;
  }
  w->timer.data = w;
  ws->pending++;
  rc = check(w);
  if (rc != 0) {
    /* No callback for a wait that failed synchronously: close silently. */
    w->state = W_CLOSING;
    uv_close((uv_handle_t *)&w->timer, on_closed);
    return rc == SF_ENOMEM ? SF_ENOMEM : SF_EUNAVAILABLE;
  }
  w->cb = cb;
  w->ud = ud;
  w->next = ws->head;
  if (ws->head)
    ws->head->prev = w;
  ws->head = w;
  ws->started++;
  if (handle)
    *handle = w;
  return 0;
}

void qry_wait_cancel(qry_wait_t *w) {
  if (!w)
    return;
  switch (w->state) {
  case W_SLEEPING:
    uv_timer_stop(&w->timer);
    finish(w, QRY_WAIT_CANCELED);
    break;
  case W_QUERYING:
    w->cancel_requested = true;
    break;
  case W_CLOSING:
    break;
  }
}

void qry_waits_cancel_all(qry_waits_t *ws) {
  if (!ws)
    return;
  qry_wait_t *w = ws->head;
  while (w) {
    qry_wait_t *next = w->next;
    qry_wait_cancel(w);
    w = next;
  }
}

void qry_waits_set_idle_cb(qry_waits_t *ws, void (*cb)(void *ud), void *ud) {
  ws->idle_cb = cb;
  ws->idle_ud = ud;
}

size_t qry_waits_pending(const qry_waits_t *ws) { return ws ? ws->pending : 0; }

void qry_waits_stats(const qry_waits_t *ws, uint64_t *started,
                     uint64_t *timeouts, uint64_t *checks) {
  *started = ws->started;
  *timeouts = ws->timeouts;
  *checks = ws->checks;
}

void qry_waits_destroy(qry_waits_t *ws) {
  if (!ws)
    return;
  if (ws->pending)
    SF_ERROR(ws->log, "wait", "destroyed with %zu waits pending", ws->pending);
  free(ws);
}

/* qry_wait: waits for a list of position tokens, woken by notifications
 * with a slow safety re-check. See qry_wait.h for the contract.
 *
 * Each wait owns a uv_timer and moves through QUERYING (a QRY_SQL_POSITIONS
 * check is in flight) and SLEEPING (the timer runs: the safety re-check or
 * the deadline, whichever is first) until it has an outcome; then it is
 * CLOSING: the timer is closed and the user callback fires from the close
 * callback, after which the wait is freed. A notification during QUERYING
 * sets `recheck`, honoured when the result arrives; a cancel during
 * QUERYING is remembered the same way, so a query callback never sees freed
 * memory. The positions are sent as three parallel arrays (kind, partition,
 * offset) built once per wait, so one check covers the whole list. */
#include "qry_wait.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_rows.h"
#include "qry_sql.h"
#include "sf/err.h"

#define DEFAULT_INTERVAL_MS 250

typedef enum wait_state { W_QUERYING,
                          W_SLEEPING,
                          W_CLOSING } wait_state_t;

struct qry_wait {
  qry_waits_t *ws;
  qry_wait_t *prev, *next; /* in ws->head while QUERYING or SLEEPING */
  uv_timer_t timer;
  qry_position_t first; /* for the timeout log line */
  size_t n;
  /* Array literals of the statement: "{1,0}", "{3,0}", "{1234,17}". */
  char kinds[2 * QRY_POSITIONS_MAX + 3];
  char parts[11 * QRY_POSITIONS_MAX + 3];
  char offsets[20 * QRY_POSITIONS_MAX + 3];
  uint64_t deadline; /* loop time (ms) */
  qry_wait_cb cb;    /* NULL: start failed, close silently */
  void *ud;
  wait_state_t state;
  bool cancel_requested;
  bool recheck; /* notified while QUERYING */
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
  qry_waits_counters_t counters;
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
    ws->opts.interval_ms = DEFAULT_INTERVAL_MS;
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
      ws->counters.timeouts++;
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
  const char *params[6] = {ws->opts.group, ws->opts.topic_stock,
                           ws->opts.topic_catalog, w->kinds, w->parts,
                           w->offsets};
  w->state = W_QUERYING;
  w->recheck = false;
  ws->counters.checks++;
  return sf_pg_query(ws->pg, QRY_SQL_POSITIONS, 6, params, on_result, w);
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

/* Sleeps until the next safety re-check or the deadline. */
static void sleep_until_next(qry_wait_t *w, uint64_t now) {
  uint64_t delay = w->deadline - now;
  if (delay > w->ws->opts.interval_ms)
    delay = w->ws->opts.interval_ms;
  w->state = W_SLEEPING;
  uv_timer_start(&w->timer, on_timer, delay, 0);
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
  int64_t missing = -1;
  int rc = qry_row_i64(res, 0, "pending", &missing);
  if (rc != 0 || missing < 0) {
    SF_ERROR(ws->log, "wait", "position check: unreadable result: %s",
             sf_strerror(rc ? rc : SF_EPARSE));
    finish(w, QRY_WAIT_ERROR);
    return;
  }
  if (missing == 0) {
    finish(w, QRY_WAIT_APPLIED);
    return;
  }
  uint64_t now = uv_now(ws->loop);
  if (now >= w->deadline) {
    SF_INFO(ws->log, "wait",
            "%" PRId64 " of %zu positions (first %s-%" PRId32 "-%" PRId64
            ") not applied in %" PRIu64 " ms",
            missing, w->n,
            w->first.kind == QRY_TOPIC_STOCK ? "stock" : "catalog",
            w->first.partition, w->first.offset, ws->opts.max_wait_ms);
    finish(w, QRY_WAIT_TIMEOUT);
    return;
  }
  if (w->recheck) {
    /* Notified while this check ran: its snapshot may predate the commit. */
    rc = check(w);
    if (rc != 0) {
      SF_WARN(ws->log, "wait", "position check not queued: %s",
              sf_strerror(rc));
      finish(w, QRY_WAIT_ERROR);
    }
    return;
  }
  sleep_until_next(w, now);
}

/* Appends "v," to buf of cap bytes at *len. Returns false when full. */
static bool append_num(char *buf, size_t cap, size_t *len, long long v) {
  int n = snprintf(buf + *len, cap - *len, "%lld,", v);
  if (n < 0 || (size_t)n >= cap - *len)
    return false;
  *len += (size_t)n;
  return true;
}

/* Fills the array literals of w from n positions. */
static bool build_arrays(qry_wait_t *w, const qry_position_t *pos, size_t n) {
  size_t lk = 1, lp = 1, lo = 1;
  w->kinds[0] = w->parts[0] = w->offsets[0] = '{';
  for (size_t i = 0; i < n; i++)
    if (!append_num(w->kinds, sizeof(w->kinds), &lk,
                    pos[i].kind == QRY_TOPIC_STOCK ? 1 : 0) ||
        !append_num(w->parts, sizeof(w->parts), &lp, pos[i].partition) ||
        !append_num(w->offsets, sizeof(w->offsets), &lo, pos[i].offset))
      return false;
  /* Replace the last comma by the closing brace. */
  w->kinds[lk - 1] = '}';
  w->parts[lp - 1] = '}';
  w->offsets[lo - 1] = '}';
  w->kinds[lk] = w->parts[lp] = w->offsets[lo] = '\0';
  return true;
}

int qry_wait_start(qry_waits_t *ws, const qry_position_t *pos, size_t n,
                   qry_wait_cb cb, void *ud, qry_wait_t **handle) {
  if (!ws || !pos || !cb || n == 0 || n > QRY_POSITIONS_MAX)
    return SF_EINVAL;
  qry_wait_t *w = calloc(1, sizeof(*w));
  if (!w)
    return SF_ENOMEM;
  w->ws = ws;
  w->first = pos[0];
  w->n = n;
  if (!build_arrays(w, pos, n)) {
    free(w);
    return SF_EINVAL;
  }
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
  ws->counters.started++;
  if (handle)
    *handle = w;
  return 0;
}

void qry_waits_notify(qry_waits_t *ws) {
  if (!ws)
    return;
  ws->counters.notifications++;
  qry_wait_t *w = ws->head;
  while (w) {
    qry_wait_t *next = w->next; /* w may finish (unlink) below */
    if (w->state == W_QUERYING) {
      w->recheck = true;
    } else if (w->state == W_SLEEPING) {
      uv_timer_stop(&w->timer);
      int rc = check(w);
      if (rc != 0) {
        SF_WARN(ws->log, "wait", "position check not queued: %s",
                sf_strerror(rc));
        finish(w, QRY_WAIT_ERROR);
      }
    }
    w = next;
  }
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

void qry_waits_stats(const qry_waits_t *ws, qry_waits_counters_t *out) {
  *out = ws->counters;
}

void qry_waits_destroy(qry_waits_t *ws) {
  if (!ws)
    return;
  if (ws->pending)
    SF_ERROR(ws->log, "wait", "destroyed with %zu waits pending", ws->pending);
  free(ws);
}

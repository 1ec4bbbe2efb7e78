/* pg: a pool of non-blocking libpq connections on a libuv loop. See sf/pg.h.
 *
 * Each connection is a small state machine: DOWN (waiting for its backoff
 * timer), CONNECTING (PQconnectPoll driven by a uv_poll on PQsocket) and UP.
 * An UP connection runs one operation at a time: first its setup (SET
 * statement_timeout, then PREPARE of every registered statement, or LISTEN
 * for the dedicated notification connection), then user queries taken from
 * one FIFO queue. A query is sent, flushed (watching writability while
 * PQflush says 1) and its results read as the socket becomes readable; the
 * last result goes to the callback.
 *
 * A connection that fails is finished at once (uv_poll stopped before the
 * socket is closed), its in-flight query fails with SF_EPG and it reconnects
 * after an exponential backoff (100 ms .. 5 s). uv_poll handles are heap
 * allocated because libpq may change the socket while connecting; they are
 * freed in their close callbacks. User callbacks may re-enter the pool
 * (query, close): every path re-checks the pool state after calling one. */
#include "sf/pg.h"

#include "sf/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "pg"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 10000

typedef enum conn_state {
  CONN_UNUSED, /* listener slot before the first sf_pg_listen */
  CONN_DOWN,
  CONN_CONNECTING,
  CONN_UP
} conn_state_t;

typedef enum op_kind {
  OP_NONE,
  OP_SET_TIMEOUT,
  OP_PREPARE,
  OP_LISTEN,
  OP_QUERY
} op_kind_t;

/* A queued or running user query; params are stored after the struct. */
typedef struct query {
  struct query *next;
  bool prepared; /* stmt names a registered statement; else it is SQL */
  char *stmt;
  int n_params;
  const char **values;
  sf_pg_result_cb cb;
  void *ud;
} query_t;

typedef struct stmt {
  char *name;
  char *sql;
} stmt_t;

typedef struct channel {
  char *name;
  sf_pg_notify_cb cb;
  void *ud;
} channel_t;

typedef struct conn {
  sf_pg_t *pg;
  int index;
  bool listener;
  conn_state_t state;
  PGconn *pq;
  uv_poll_t *poll; /* NULL or open; freed in its close callback */
  int poll_fd;
  uv_timer_t timer; /* backoff while DOWN, connect timeout while CONNECTING */
  bool ready;       /* setup done: counted in pg->n_ready */
  bool timeout_set;
  size_t n_prepared; /* statements prepared on this connection */
  size_t n_listened; /* channels LISTENed on this connection */
  op_kind_t op;
  query_t *query; /* with OP_QUERY */
  PGresult *res;  /* result kept while reading an operation's results */
  bool flushing;
  int backoff_ms;
  int failures; /* consecutive failed attempts */
  char last_error[256];
} conn_t;

struct sf_pg {
  uv_loop_t *loop;
  sf_log_t *log;
  char *dsn;
  int pool_size;
  int max_queue;
  int statement_timeout_ms;
  int unavailable_after_ms;
  conn_t *conns; /* pool_size + 1: the last is the listener */
  stmt_t *stmts;
  size_t n_stmts, cap_stmts;
  channel_t *channels;
  size_t n_channels, cap_channels;
  query_t *head, *tail;
  int queued;
  int n_ready;
  uint64_t down_since; /* uv_now when n_ready became 0 */
  uv_timer_t watchdog;
  int open_handles;
  bool closing;
  void (*done)(void *);
  void *done_ud;
};

static void conn_start(conn_t *c);
static void conn_lost(conn_t *c, const char *reason);
static void pool_pump(sf_pg_t *pg);

/* ---- handles ---- */

static void handle_closed(uv_handle_t *h) {
  sf_pg_t *pg = h->data;
  if (h->type == UV_POLL)
    free(h);
  if (--pg->open_handles == 0 && pg->closing) {
    void (*done)(void *) = pg->done;
    void *ud = pg->done_ud;
    for (size_t i = 0; i < pg->n_stmts; i++) {
      free(pg->stmts[i].name);
      free(pg->stmts[i].sql);
    }
    for (size_t i = 0; i < pg->n_channels; i++)
      free(pg->channels[i].name);
    free(pg->stmts);
    free(pg->channels);
    free(pg->conns);
    free(pg->dsn);
    free(pg);
    if (done)
      done(ud);
  }
}

static void poll_close(conn_t *c) {
  if (!c->poll)
    return;
  uv_close((uv_handle_t *)c->poll, handle_closed);
  c->poll = NULL;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches the connection's current socket for events, replacing the poll
 * handle when libpq switched sockets. */
static int poll_arm(conn_t *c, int events) {
  int fd = PQsocket(c->pq);
  if (fd < 0)
    return SF_EIO;
  if (c->poll && c->poll_fd != fd)
    poll_close(c);
  if (!c->poll) {
    c->poll = malloc(sizeof(*c->poll));
    if (!c->poll)
      return SF_ENOMEM;
    int rc = uv_poll_init(c->pg->loop, c->poll, fd);
    if (rc) {
      free(c->poll);
      c->poll = NULL;
      return SF_EIO;
    }
    c->poll->data = c->pg;
    c->pg->open_handles++;
    c->poll_fd = fd;
  }
  /* data points at the pool for handle_closed; the conn is found by fd. */
  return uv_poll_start(c->poll, events, on_poll) ? SF_EIO : 0;
}

static conn_t *conn_of_poll(sf_pg_t *pg, uv_poll_t *h) {
  for (int i = 0; i <= pg->pool_size; i++)
    if (pg->conns[i].poll == h)
      return &pg->conns[i];
  return NULL;
}

/* ---- queue ---- */

static void queue_push(sf_pg_t *pg, query_t *q) {
  q->next = NULL;
  if (pg->tail)
    pg->tail->next = q;
  else
    pg->head = q;
  pg->tail = q;
  pg->queued++;
}

static query_t *queue_pop(sf_pg_t *pg) {
  query_t *q = pg->head;
  if (!q)
    return NULL;
  pg->head = q->next;
  if (!pg->head)
    pg->tail = NULL;
  pg->queued--;
  return q;
}

/* Fails every queued query with err; callbacks may queue more (they are
 * rejected while closing or unavailable, so this terminates). */
static void queue_fail_all(sf_pg_t *pg, int err, const char *msg) {
  query_t *q;
  while ((q = queue_pop(pg))) {
    q->cb(q->ud, err, NULL, "", msg);
    free(q);
  }
}

/* ---- connection life cycle ---- */

static void conn_set_ready(conn_t *c, bool ready) {
  sf_pg_t *pg = c->pg;
  if (c->ready == ready)
    return;
  c->ready = ready;
  if (c->listener)
    return;
  if (ready) {
    if (pg->n_ready++ == 0)
      uv_timer_stop(&pg->watchdog);
  } else if (--pg->n_ready == 0 && !pg->closing) {
    pg->down_since = uv_now(pg->loop);
    uv_timer_again(&pg->watchdog);
  }
}

static void on_conn_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->pg->closing)
    return;
  if (c->state == CONN_DOWN)
    conn_start(c);
  else if (c->state == CONN_CONNECTING)
    conn_lost(c, "connection attempt timed out");
}

/* Copies msg without trailing whitespace. */
static void copy_trimmed(char *dst, size_t cap, const char *msg) {
  snprintf(dst, cap, "%s", msg ? msg : "");
  size_t n = strlen(dst);
  while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
    dst[--n] = '\0';
}

/* Tears the connection down and schedules a reconnect. The in-flight user
 * query, if any, fails with SF_EPG after the state is consistent. */
static void conn_lost(conn_t *c, const char *reason) {
  sf_pg_t *pg = c->pg;
  char why[256];
  copy_trimmed(why, sizeof(why), reason);
  if (c->state == CONN_UP || strcmp(why, c->last_error) != 0)
    SF_WARN(pg->log, MOD, "connection %d%s %s: %s", c->index,
            c->listener ? " (listener)" : "",
            c->state == CONN_UP ? "lost" : "failed", why);
  else
    SF_DEBUG(pg->log, MOD, "connection %d failed again: %s", c->index, why);
  snprintf(c->last_error, sizeof(c->last_error), "%s", why);

  query_t *q = c->op == OP_QUERY ? c->query : NULL;
  c->query = NULL;
  c->op = OP_NONE;
  if (c->res) {
    PQclear(c->res);
    c->res = NULL;
  }
  if (c->poll)
    uv_poll_stop(c->poll); /* before libpq closes the socket */
  poll_close(c);
  if (c->pq) {
    PQfinish(c->pq);
    c->pq = NULL;
  }
  bool was_up = c->state == CONN_UP;
  c->state = CONN_DOWN;
  c->flushing = false;
  c->timeout_set = false;
  c->n_prepared = 0;
  c->n_listened = 0;
  conn_set_ready(c, false);
  if (was_up)
    c->backoff_ms = 0;
  c->failures++;
  c->backoff_ms = c->backoff_ms == 0                   ? BACKOFF_MIN_MS
                  : c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                       : c->backoff_ms * 2;
  if (!pg->closing)
    uv_timer_start(&c->timer, on_conn_timer, (uint64_t)c->backoff_ms, 0);

  if (q) {
    q->cb(q->ud, SF_EPG, NULL, "", why);
    free(q);
  }
}

static void notice_cb(void *arg, const char *message) {
  conn_t *c = arg;
  char msg[512];
  copy_trimmed(msg, sizeof(msg), message);
  SF_INFO(c->pg->log, MOD, "connection %d: server notice: %s", c->index, msg);
}

static void connect_step(conn_t *c);

static void conn_start(conn_t *c) {
  sf_pg_t *pg = c->pg;
  c->pq = PQconnectStart(pg->dsn);
  if (!c->pq) {
    c->state = CONN_CONNECTING;
    conn_lost(c, "out of memory");
    return;
  }
  c->state = CONN_CONNECTING;
  if (PQstatus(c->pq) == CONNECTION_BAD) {
    conn_lost(c, PQerrorMessage(c->pq));
    return;
  }
  PQsetNoticeProcessor(c->pq, notice_cb, c);
  uv_timer_start(&c->timer, on_conn_timer, CONNECT_TIMEOUT_MS, 0);
  /* libpq: start as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
  if (poll_arm(c, UV_WRITABLE) != 0)
    conn_lost(c, "cannot watch the connection socket");
}

static void connect_step(conn_t *c) {
  if (c->poll)
    uv_poll_stop(c->poll); /* the socket may be replaced inside */
  switch (PQconnectPoll(c->pq)) {
  case PGRES_POLLING_READING:
    if (poll_arm(c, UV_READABLE) != 0)
      conn_lost(c, "cannot watch the connection socket");
    return;
  case PGRES_POLLING_WRITING:
    if (poll_arm(c, UV_WRITABLE) != 0)
      conn_lost(c, "cannot watch the connection socket");
    return;
  case PGRES_POLLING_OK:
    break;
  default:
    conn_lost(c, PQerrorMessage(c->pq));
    return;
  }
  uv_timer_stop(&c->timer);
  if (PQsetnonblocking(c->pq, 1) != 0) {
    conn_lost(c, PQerrorMessage(c->pq));
    return;
  }
  if (poll_arm(c, UV_READABLE) != 0) {
    conn_lost(c, "cannot watch the connection socket");
    return;
  }
  c->state = CONN_UP;
  if (c->failures > 0)
    SF_INFO(c->pg->log, MOD, "connection %d%s up after %d failed attempt(s)",
            c->index, c->listener ? " (listener)" : "", c->failures);
  else
    SF_DEBUG(c->pg->log, MOD, "connection %d up", c->index);
  c->failures = 0;
  c->backoff_ms = 0;
  c->last_error[0] = '\0';
  pool_pump(c->pg);
}

/* ---- operations ---- */

/* Flushes the output after a send; watches writability while needed. */
static void conn_after_send(conn_t *c) {
  int r = PQflush(c->pq);
  if (r < 0) {
    conn_lost(c, PQerrorMessage(c->pq));
    return;
  }
  c->flushing = r == 1;
  if (poll_arm(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0)) != 0)
    conn_lost(c, "cannot watch the connection socket");
}

/* Starts the next setup operation if any; returns true when one was sent
 * (or the connection failed trying). */
static bool conn_setup_next(conn_t *c) {
  sf_pg_t *pg = c->pg;
  int ok;
  if (!c->timeout_set && pg->statement_timeout_ms > 0) {
    char sql[64];
    snprintf(sql, sizeof(sql), "SET statement_timeout = %d",
             pg->statement_timeout_ms);
    c->op = OP_SET_TIMEOUT;
    ok = PQsendQuery(c->pq, sql);
  } else if (c->listener && c->n_listened < pg->n_channels) {
    char *id = PQescapeIdentifier(c->pq, pg->channels[c->n_listened].name,
                                  strlen(pg->channels[c->n_listened].name));
    if (!id) {
      conn_lost(c, PQerrorMessage(c->pq));
      return true;
    }
    size_t len = strlen(id) + 8;
    char *sql = malloc(len);
    if (!sql) {
      PQfreemem(id);
      conn_lost(c, "out of memory");
      return true;
    }
    snprintf(sql, len, "LISTEN %s", id);
    PQfreemem(id);
    c->op = OP_LISTEN;
    ok = PQsendQuery(c->pq, sql);
    free(sql);
  } else if (!c->listener && c->n_prepared < pg->n_stmts) {
    const stmt_t *s = &pg->stmts[c->n_prepared];
    c->op = OP_PREPARE;
    ok = PQsendPrepare(c->pq, s->name, s->sql, 0, NULL);
  } else {
    return false;
  }
  if (!ok)
    conn_lost(c, PQerrorMessage(c->pq));
  else
    conn_after_send(c);
  return true;
}

static void conn_send_query(conn_t *c, query_t *q) {
  int ok;
  c->op = OP_QUERY;
  c->query = q;
  if (q->prepared)
    ok = PQsendQueryPrepared(c->pq, q->stmt, q->n_params, q->values, NULL,
                             NULL, 0);
  else if (q->n_params > 0)
    ok = PQsendQueryParams(c->pq, q->stmt, q->n_params, NULL, q->values,
                           NULL, NULL, 0);
  else
    ok = PQsendQuery(c->pq, q->stmt);
  if (!ok)
    conn_lost(c, PQerrorMessage(c->pq));
  else
    conn_after_send(c);
}

/* Gives idle connections work: setup first, then queued queries. */
static void pool_pump(sf_pg_t *pg) {
  for (int i = 0; i <= pg->pool_size && !pg->closing; i++) {
    conn_t *c = &pg->conns[i];
    if (c->state != CONN_UP || c->op != OP_NONE)
      continue;
    if (conn_setup_next(c))
      continue;
    conn_set_ready(c, true);
    if (!c->listener && pg->head)
      conn_send_query(c, queue_pop(pg));
  }
}

/* An internal (setup) operation finished with res. */
static void conn_setup_done(conn_t *c, op_kind_t op, const PGresult *res) {
  sf_pg_t *pg = c->pg;
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  char msg[256];
  copy_trimmed(msg, sizeof(msg),
               res ? PQresultErrorMessage(res) : "no result");
  switch (op) {
  case OP_SET_TIMEOUT:
    if (!ok)
      SF_ERROR(pg->log, MOD, "connection %d: set statement_timeout: %s",
               c->index, msg);
    c->timeout_set = true;
    break;
  case OP_PREPARE:
    /* A statement the server rejects stays unprepared: queries using it get
     * the server's error. Never retried, so log it loudly. */
    if (!ok)
      SF_ERROR(pg->log, MOD, "connection %d: prepare %s: %s", c->index,
               pg->stmts[c->n_prepared].name, msg);
    c->n_prepared++;
    break;
  case OP_LISTEN:
    if (!ok)
      SF_ERROR(pg->log, MOD, "listen %s: %s", pg->channels[c->n_listened].name,
               msg);
    c->n_listened++;
    break;
  default:
    break;
  }
}

static void conn_notifies(conn_t *c) {
  sf_pg_t *pg = c->pg;
  PGnotify *n;
  while (!pg->closing && c->pq && (n = PQnotifies(c->pq))) {
    if (c->listener) {
      for (size_t i = 0; i < pg->n_channels && !pg->closing; i++)
        if (strcmp(pg->channels[i].name, n->relname) == 0)
          pg->channels[i].cb(pg->channels[i].ud, n->relname,
                             n->extra ? n->extra : "");
    }
    PQfreemem(n);
  }
}

/* The current operation returned all its results. */
static void conn_op_done(conn_t *c) {
  sf_pg_t *pg = c->pg;
  op_kind_t op = c->op;
  query_t *q = c->query;
  PGresult *res = c->res;
  c->op = OP_NONE;
  c->query = NULL;
  c->res = NULL;
  bool bad = PQstatus(c->pq) == CONNECTION_BAD;
  char reason[256] = "";
  if (bad)
    copy_trimmed(reason, sizeof(reason), PQerrorMessage(c->pq));

  if (op != OP_QUERY) {
    conn_setup_done(c, op, res);
    PQclear(res);
    if (bad)
      conn_lost(c, reason);
    else
      pool_pump(pg);
    return;
  }

  /* Settle the connection before the callback, which may re-enter. */
  if (bad)
    conn_lost(c, reason);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK ||
      st == PGRES_EMPTY_QUERY) {
    q->cb(q->ud, 0, res, NULL, NULL);
  } else {
    char msg[512];
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    copy_trimmed(msg, sizeof(msg),
                 res ? PQresultErrorMessage(res)
                     : (reason[0] ? reason : "no result"));
    if (!msg[0])
      snprintf(msg, sizeof(msg), "unexpected result %s", PQresStatus(st));
    q->cb(q->ud, SF_EPG, NULL, state ? state : "", msg);
  }
  PQclear(res);
  free(q);
  if (!pg->closing)
    pool_pump(pg);
}

/* Reads whatever arrived and completes the operation when its last result
 * is in. */
static void conn_read(conn_t *c) {
  if (!PQconsumeInput(c->pq)) {
    conn_lost(c, PQerrorMessage(c->pq));
    return;
  }
  conn_notifies(c);
  if (c->pg->closing || c->state != CONN_UP)
    return;
  if (c->op == OP_NONE) {
    if (PQstatus(c->pq) == CONNECTION_BAD)
      conn_lost(c, PQerrorMessage(c->pq));
    return;
  }
  while (!PQisBusy(c->pq)) {
    PGresult *r = PQgetResult(c->pq);
    if (!r) {
      conn_op_done(c);
      return;
    }
    /* Keep the last result, but an error wins over what follows it. */
    if (c->res && PQresultStatus(c->res) == PGRES_FATAL_ERROR) {
      PQclear(r);
    } else {
      PQclear(c->res);
      c->res = r;
    }
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sf_pg_t *pg = h->data;
  conn_t *c = conn_of_poll(pg, h);
  if (!c || pg->closing)
    return;
  if (c->state == CONN_CONNECTING) {
    /* On a socket error (libuv reports POLLERR as UV_EBADF and stops the
     * handle) PQconnectPoll finds the real reason or tries the next host. */
    connect_step(c);
    return;
  }
  if (c->state != CONN_UP)
    return;
  if (status < 0) {
    /* The socket is broken; libpq's message names the reason if it has one. */
    conn_lost(c, PQconsumeInput(c->pq) ? uv_strerror(status)
                                       : PQerrorMessage(c->pq));
    return;
  }
  if (c->flushing && (events & (UV_WRITABLE | UV_READABLE))) {
    if ((events & UV_READABLE) && !PQconsumeInput(c->pq)) {
      conn_lost(c, PQerrorMessage(c->pq));
      return;
    }
    conn_after_send(c);
    if (c->state != CONN_UP || c->flushing)
      return;
  }
  if (events & UV_READABLE)
    conn_read(c);
}

/* No connection for unavailable_after_ms: queued queries would wait for an
 * unknown time, so they fail now. */
static void on_watchdog(uv_timer_t *t) {
  sf_pg_t *pg = t->data;
  if (pg->n_ready > 0 || pg->closing || !pg->head)
    return;
  SF_WARN(pg->log, MOD, "no database connection for %d ms: failing %d "
                        "queued quer%s",
          pg->unavailable_after_ms, pg->queued, pg->queued == 1 ? "y" : "ies");
  queue_fail_all(pg, SF_EPG, "no database connection");
}

/* ---- public API ---- */

int sf_pg_new(sf_pg_t **out, uv_loop_t *loop, const sf_pg_opts_t *opts,
              sf_log_t *log) {
  if (!out || !loop || !opts || !opts->dsn)
    return SF_EINVAL;
  sf_pg_t *pg = calloc(1, sizeof(*pg));
  if (!pg)
    return SF_ENOMEM;
  pg->loop = loop;
  pg->log = log;
  pg->pool_size = opts->pool_size > 0 ? opts->pool_size : 4;
  pg->max_queue = opts->max_queue > 0 ? opts->max_queue : 10000;
  pg->statement_timeout_ms =
      opts->statement_timeout_ms > 0 ? opts->statement_timeout_ms : 0;
  pg->unavailable_after_ms =
      opts->unavailable_after_ms > 0 ? opts->unavailable_after_ms : 5000;
  pg->dsn = strdup(opts->dsn);
  pg->conns = calloc((size_t)pg->pool_size + 1, sizeof(*pg->conns));
  if (!pg->dsn || !pg->conns) {
    free(pg->dsn);
    free(pg->conns);
    free(pg);
    return SF_ENOMEM;
  }
  uv_timer_init(loop, &pg->watchdog);
  pg->watchdog.data = pg;
  pg->open_handles = 1;
  uv_timer_set_repeat(&pg->watchdog, (uint64_t)pg->unavailable_after_ms);
  pg->down_since = uv_now(loop);
  uv_timer_start(&pg->watchdog, on_watchdog,
                 (uint64_t)pg->unavailable_after_ms,
                 (uint64_t)pg->unavailable_after_ms);
  for (int i = 0; i <= pg->pool_size; i++) {
    conn_t *c = &pg->conns[i];
    c->pg = pg;
    c->index = i;
    c->listener = i == pg->pool_size;
    c->state = CONN_UNUSED;
    c->poll_fd = -1;
  }
  for (int i = 0; i < pg->pool_size; i++) {
    conn_t *c = &pg->conns[i];
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    pg->open_handles++;
    c->state = CONN_DOWN;
    conn_start(c);
  }
  *out = pg;
  return 0;
}

int sf_pg_prepare(sf_pg_t *pg, const char *name, const char *sql) {
  if (!pg || !name || !sql || pg->closing)
    return SF_EINVAL;
  for (size_t i = 0; i < pg->n_stmts; i++)
    if (strcmp(pg->stmts[i].name, name) == 0)
      return SF_EEXISTS;
  if (pg->n_stmts == pg->cap_stmts) {
    size_t cap = pg->cap_stmts ? pg->cap_stmts * 2 : 16;
    stmt_t *s = realloc(pg->stmts, cap * sizeof(*s));
    if (!s)
      return SF_ENOMEM;
    pg->stmts = s;
    pg->cap_stmts = cap;
  }
  stmt_t *s = &pg->stmts[pg->n_stmts];
  s->name = strdup(name);
  s->sql = strdup(sql);
  if (!s->name || !s->sql) {
    free(s->name);
    free(s->sql);
    return SF_ENOMEM;
  }
  pg->n_stmts++;
  pool_pump(pg); /* prepare it on idle connections now */
  return 0;
}

static bool pool_unavailable(const sf_pg_t *pg) {
  if (pg->closing || pg->queued >= pg->max_queue)
    return true;
  return pg->n_ready == 0 &&
         uv_now(pg->loop) - pg->down_since >= (uint64_t)pg->unavailable_after_ms;
}

/* Allocates a query with copies of stmt and values in one block. */
static query_t *query_new(bool prepared, const char *stmt, int n,
                          const char *const *values, sf_pg_result_cb cb,
                          void *ud) {
  size_t size = sizeof(query_t) + (size_t)n * sizeof(char *) + strlen(stmt) + 1;
  for (int i = 0; i < n; i++)
    if (values[i])
      size += strlen(values[i]) + 1;
  query_t *q = malloc(size);
  if (!q)
    return NULL;
  q->next = NULL;
  q->prepared = prepared;
  q->n_params = n;
  q->cb = cb;
  q->ud = ud;
  q->values = (const char **)(q + 1);
  char *p = (char *)(q->values + n);
  for (int i = 0; i < n; i++) {
    if (!values[i]) {
      q->values[i] = NULL;
      continue;
    }
    size_t len = strlen(values[i]) + 1;
    memcpy(p, values[i], len);
    q->values[i] = p;
    p += len;
  }
  q->stmt = p;
  memcpy(p, stmt, strlen(stmt) + 1);
  return q;
}

static int pool_submit(sf_pg_t *pg, query_t *q) {
  queue_push(pg, q);
  pool_pump(pg);
  return 0;
}

int sf_pg_query(sf_pg_t *pg, const char *stmt, int n_params,
                const char *const *values, sf_pg_result_cb cb, void *ud) {
  if (!pg || !stmt || !cb || n_params < 0 || (n_params > 0 && !values))
    return SF_EINVAL;
  bool known = false;
  for (size_t i = 0; i < pg->n_stmts && !known; i++)
    known = strcmp(pg->stmts[i].name, stmt) == 0;
  if (!known)
    return SF_ENOTFOUND;
  if (pool_unavailable(pg))
    return SF_EUNAVAILABLE;
  query_t *q = query_new(true, stmt, n_params, values, cb, ud);
  if (!q)
    return SF_ENOMEM;
  return pool_submit(pg, q);
}

int sf_pg_exec(sf_pg_t *pg, const char *sql, sf_pg_result_cb cb, void *ud) {
  if (!pg || !sql || !cb)
    return SF_EINVAL;
  if (pool_unavailable(pg))
    return SF_EUNAVAILABLE;
  query_t *q = query_new(false, sql, 0, NULL, cb, ud);
  if (!q)
    return SF_ENOMEM;
  return pool_submit(pg, q);
}

int sf_pg_query_sql(sf_pg_t *pg, const char *sql, int n_params,
                    const char *const *values, sf_pg_result_cb cb, void *ud) {
  if (!pg || !sql || !cb || n_params < 1 || n_params > SF_PG_MAX_PARAMS ||
      !values)
    return SF_EINVAL;
  if (pool_unavailable(pg))
    return SF_EUNAVAILABLE;
  query_t *q = query_new(false, sql, n_params, values, cb, ud);
  if (!q)
    return SF_ENOMEM;
  return pool_submit(pg, q);
}

int sf_pg_listen(sf_pg_t *pg, const char *channel, sf_pg_notify_cb cb,
                 void *ud) {
  if (!pg || !channel || !*channel || !cb || pg->closing)
    return SF_EINVAL;
  for (size_t i = 0; i < pg->n_channels; i++)
    if (strcmp(pg->channels[i].name, channel) == 0)
      return SF_EEXISTS;
  if (pg->n_channels == pg->cap_channels) {
    size_t cap = pg->cap_channels ? pg->cap_channels * 2 : 4;
    channel_t *ch = realloc(pg->channels, cap * sizeof(*ch));
    if (!ch)
      return SF_ENOMEM;
    pg->channels = ch;
    pg->cap_channels = cap;
  }
  channel_t *ch = &pg->channels[pg->n_channels];
  ch->name = strdup(channel);
  if (!ch->name)
    return SF_ENOMEM;
  ch->cb = cb;
  ch->ud = ud;
  pg->n_channels++;
  conn_t *l = &pg->conns[pg->pool_size];
  if (l->state == CONN_UNUSED) {
    uv_timer_init(pg->loop, &l->timer);
    l->timer.data = l;
    pg->open_handles++;
    l->state = CONN_DOWN;
    conn_start(l);
  } else {
    pool_pump(pg);
  }
  return 0;
}

bool sf_pg_ready(const sf_pg_t *pg) { return pg && pg->n_ready > 0; }

void sf_pg_close(sf_pg_t *pg, void (*done)(void *), void *ud) {
  if (!pg || pg->closing)
    return;
  pg->closing = true;
  pg->done = done;
  pg->done_ud = ud;
  /* Detach in-flight queries first: nothing may touch a connection after
   * it is finished, and callbacks below may re-enter. */
  query_t *inflight = NULL;
  for (int i = 0; i <= pg->pool_size; i++) {
    conn_t *c = &pg->conns[i];
    if (c->state == CONN_UNUSED)
      continue;
    if (c->op == OP_QUERY) {
      c->query->next = inflight;
      inflight = c->query;
    }
    c->query = NULL;
    c->op = OP_NONE;
    if (c->res)
      PQclear(c->res);
    c->res = NULL;
    if (c->poll)
      uv_poll_stop(c->poll);
    poll_close(c);
    if (c->pq)
      PQfinish(c->pq);
    c->pq = NULL;
    c->ready = false;
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    c->timer.data = pg;
  }
  pg->n_ready = 0;
  uv_close((uv_handle_t *)&pg->watchdog, handle_closed);
  while (inflight) {
    query_t *q = inflight;
    inflight = q->next;
    q->cb(q->ud, SF_ECANCELED, NULL, "", "pool closing");
    free(q);
  }
  queue_fail_all(pg, SF_ECANCELED, "pool closing");
}

/* qry_call: the life of one query request, shared by the handlers of
 * qry_handlers.c and qry_changes.c; implemented in qry_call.c.
 *
 * A handler calls qry_call_begin (the one place where checks common to every
 * query endpoint happen: service closing, min_position parsing and, later,
 * authentication), fills the statement parameters, and calls qry_call_run.
 * qry_call_run waits for the position when one was given, runs the
 * statement and hands the result to the handler's render function, which
 * must answer the request. Errors on the way are answered here: 504
 * position_timeout, 503 unavailable, 500 internal.
 *
 * The call lives in the request's memory (sf_http_req_alloc) and so is
 * freed when the request is answered. The calls of one service share a
 * qry_calls_t context (the pool, the position waits, the authentication
 * gate, the shutdown flag and the counters), which the service core
 * creates and consults when it shuts down. Loop thread only. */
#ifndef QRY_CALL_H
#define QRY_CALL_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "qry_params.h"
#include "qry_rows.h"
#include "qry_wait.h"
#include "sf/authn.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

#define QRY_CALL_MAX_PARAMS 8
#define QRY_CALL_TEXT_CAP 48 /* a UUID, an int64 or a bool as text */

/* The context shared by every call of one service. */
typedef struct qry_calls qry_calls_t;

typedef struct qry_calls_counters {
  uint64_t db_queries;     /* statements sent */
  uint64_t db_errors;      /* statements that failed */
  uint64_t db_unavailable; /* requests answered 503 for the database */
} qry_calls_counters_t;

/* Creates the context. pg, waits, authn (NULL: no authentication, unit
 * tests only) and log are borrowed and must outlive it. Returns 0,
 * SF_EINVAL or SF_ENOMEM. */
int qry_calls_new(qry_calls_t **out, sf_pg_t *pg, qry_waits_t *waits,
                  sf_authn_t *authn, sf_log_t *log);

/* Frees the context once no call is in flight (qry_calls_pending is 0). */
void qry_calls_destroy(qry_calls_t *k);

/* Stops taking calls: qry_call_begin answers 503, statements not yet sent
 * answer 503. idle (may be NULL) then fires after each statement's answer,
 * so the caller can check whether everything is drained. */
void qry_calls_shutdown(qry_calls_t *k, void (*idle)(void *ud), void *ud);

/* True after qry_calls_shutdown. */
bool qry_calls_closing(const qry_calls_t *k);

/* Statements sent whose result has not been handled yet. */
uint64_t qry_calls_pending(const qry_calls_t *k);

void qry_calls_stats(const qry_calls_t *k, qry_calls_counters_t *out);

typedef struct qry_call qry_call_t;

/* Answers the request from a successful result. res is borrowed for the
 * duration of the call. */
typedef void (*qry_render_fn)(qry_call_t *c, const PGresult *res);

/* Answers a failure of the call in the caller's own shape (a facade's):
 * status 500, 503 (also service closing or request canceled) or 504
 * (position wait timed out), code the /v1 problem code ("internal",
 * "unavailable", "position_timeout"), detail a sentence. */
typedef void (*qry_fail_fn)(qry_call_t *c, int status, const char *code,
                            const char *detail);

struct qry_call {
  qry_calls_t *calls;
  sf_http_req_t *req;
  const char *stmt;
  int n_params;
  const char *params[QRY_CALL_MAX_PARAMS]; /* borrowed: text[] or request */
  char text[QRY_CALL_MAX_PARAMS][QRY_CALL_TEXT_CAP];
  char like[QRY_LIKE_CAP]; /* ILIKE pattern of ?q= */
  int limit;               /* page size asked for; the statement gets +1 */
  qry_render_fn render;
  size_t n_pos; /* positions of min_position; 0: no wait */
  qry_position_t pos[QRY_POSITIONS_MAX];
  qry_wait_t *wait;              /* while waiting for pos */
  void *ext;                     /* the handler's own state (request memory) */
  const char *store_filter;      /* accounts: the caller's stores as PG array
                               text "{...}", or NULL: sees every store */
  qry_fail_fn fail;              /* NULL: /v1 problem answers */
  const char *sql;               /* qry_call_run_sql: the one-off SQL text */
  const char *const *sql_params; /* and its parameters (borrowed) */
};

/* Starts a query request: answers 503 when the service is shutting down,
 * 400 bad_position when min_position is malformed (a token or a
 * comma-separated list of them), 500 on out of memory,
 * and returns NULL then (the request is answered). Otherwise returns the
 * call, owned by the request. */
qry_call_t *qry_call_begin(qry_calls_t *k, sf_http_req_t *req);

/* Starts a call for a facade that answers in its own shape (the Parse
 * facade): no min_position parsing and no store filter (the caller sets
 * c->n_pos / c->pos and c->store_filter); failures later on go to fail.
 * Returns NULL on out of memory (nothing answered) or, when the service is
 * shutting down, after fail answered 503. */
qry_call_t *qry_call_begin_custom(qry_calls_t *k, sf_http_req_t *req,
                                  qry_fail_fn fail);

/* accounts: registers GET pattern behind the authentication gate (when the
 * service has one): 401 without a valid token; a pattern with {store_id}
 * needs the right to read that store (403), others any signed-in user.
 * Returns 0 or an error of sf_authn_route / sf_http_route. */
int qry_route(qry_calls_t *k, sf_http_server_t *http, const char *pattern,
              sf_http_handler_cb cb, void *ud);

/* Sets parameter i to value (borrowed; NULL = SQL NULL). */
void qry_call_param(qry_call_t *c, int i, const char *value);

/* Sets parameter i to a copy of value formatted as decimal text. */
void qry_call_param_i64(qry_call_t *c, int i, long long value);

/* Runs stmt with parameters 0..n_params-1 (after the position wait, if any)
 * and calls render with the result. Always leads to exactly one answer. */
void qry_call_run(qry_call_t *c, const char *stmt, int n_params,
                  qry_render_fn render);

/* Like qry_call_run for a one-off SQL text (sf_pg_query_sql) with
 * n_params parameters; sql and params are borrowed and must live as long
 * as the request (request memory). label names the statement in logs. */
void qry_call_run_sql(qry_call_t *c, const char *label, const char *sql,
                      int n_params, const char *const *params,
                      qry_render_fn render);

/* Answers a page built by qry_page_build from res: 200, or 404 not_found
 * naming owner when the owner row is missing (owner NULL: no owner row
 * expected), or 500. extra, if not NULL, is merged into the page (ownership
 * taken). */
void qry_call_respond_page(qry_call_t *c, const PGresult *res,
                           const char *key_col, qry_cursor_kind_t kind,
                           const qry_shape_t *shape, const char *owner, json_t *extra);

/* Common answers. */
void qry_respond_not_found(sf_http_req_t *req, const char *what);
void qry_respond_invalid(sf_http_req_t *req, const char *detail);
void qry_respond_bad_cursor(sf_http_req_t *req);
void qry_respond_internal(qry_call_t *c, const char *what);

/* Parses ?limit= and ?cursor= of a list: sets c->limit, parameter after_i
 * to the keyset bound (the cursor's id, or QRY_UUID_MIN / QRY_UUID_MAX when
 * absent, by descending) and parameter limit_i to limit + 1. On bad input
 * answers 422 validation_failed or 400 bad_cursor and returns false. */
bool qry_call_page_params(qry_call_t *c, qry_cursor_kind_t kind,
                          bool descending, int after_i, int limit_i);

#endif

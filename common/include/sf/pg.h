/* pg: a PostgreSQL client pool driven by a libuv loop.
 *
 * A pool holds a few non-blocking libpq connections (PQconnectStart,
 * PQsendQueryPrepared, uv_poll on PQsocket). Statements are registered once
 * with sf_pg_prepare and prepared on every connection as it connects.
 * Queries are queued when all connections are busy (bounded queue) and run
 * in order of submission per connection. A lost connection is reconnected
 * with backoff; its in-flight query fails with SF_EPG (retriable), never
 * silently re-run. Everything runs on the loop thread; not thread-safe.
 * Text format for parameters and results. */
#ifndef SF_PG_H
#define SF_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "sf/log.h"

typedef struct sf_pg sf_pg_t;

/* Fires once per accepted query, on the loop. On success err is 0 and res is
 * the last result (PGRES_TUPLES_OK or PGRES_COMMAND_OK), borrowed for the
 * duration of the call. On failure res is NULL and err is SF_EPG (server or
 * connection error; errmsg gives the reason, sqlstate the SQLSTATE or
 * "") or SF_ECANCELED (pool closing). */
typedef void (*sf_pg_result_cb)(void *ud, int err, const PGresult *res,
                                const char *sqlstate, const char *errmsg);

typedef struct sf_pg_opts {
  const char *dsn;          /* libpq connection string */
  int pool_size;            /* connections; default 4 when <= 0 */
  int max_queue;            /* waiting queries; default 10000 when <= 0 */
  int statement_timeout_ms; /* 0: none */
  int unavailable_after_ms; /* no connection up for this long: queries fail
                               fast with SF_EUNAVAILABLE and queued ones with
                               SF_EPG; default 5000 when <= 0 */
} sf_pg_opts_t;

/* Creates the pool and starts connecting (asynchronously; failures are
 * logged and retried). loop and log are borrowed. */
int sf_pg_new(sf_pg_t **out, uv_loop_t *loop, const sf_pg_opts_t *opts,
              sf_log_t *log);

/* Registers a statement prepared on every connection (now and after
 * reconnects). Call before queries use it. Returns 0, SF_EEXISTS, SF_ENOMEM. */
int sf_pg_prepare(sf_pg_t *pg, const char *name, const char *sql);

/* Runs a registered statement with text parameters (copied; NULL value =
 * SQL NULL). Returns 0 (cb fires exactly once) or SF_EUNAVAILABLE (queue
 * full or no connection for a while; cb never fires); SF_ENOTFOUND for a
 * statement never registered, SF_EINVAL for bad arguments. */
int sf_pg_query(sf_pg_t *pg, const char *stmt, int n_params,
                const char *const *values, sf_pg_result_cb cb, void *ud);

/* Most parameters of one sf_pg_query_sql (PostgreSQL's own limit). */
#define SF_PG_MAX_PARAMS 65535

/* Runs a one-off SQL text with parameters $1..$n_params (PQsendQueryParams:
 * parsed and planned for this call only, not prepared), for statements
 * built per request (the Parse facade's queries). Values are text (copied;
 * NULL = SQL NULL) and never become part of the SQL, so a caller splices
 * only text it controls into sql. Needs at least one parameter (use
 * sf_pg_exec otherwise). Same contract as sf_pg_query; SF_EINVAL for bad
 * arguments. */
int sf_pg_query_sql(sf_pg_t *pg, const char *sql, int n_params,
                    const char *const *values, sf_pg_result_cb cb, void *ud);

/* Runs a plain SQL text (no parameters), e.g. LISTEN; same contract. */
int sf_pg_exec(sf_pg_t *pg, const char *sql, sf_pg_result_cb cb, void *ud);

/* Receives NOTIFY payloads for channel on a dedicated connection (opened on
 * the first call, re-LISTENed after reconnects; notifications sent while it
 * is down are lost). channel is copied; cb runs on the loop with channel and
 * payload borrowed for the call. Returns 0, SF_EEXISTS, SF_ENOMEM,
 * SF_EINVAL. */
typedef void (*sf_pg_notify_cb)(void *ud, const char *channel,
                                const char *payload);
int sf_pg_listen(sf_pg_t *pg, const char *channel, sf_pg_notify_cb cb,
                 void *ud);

/* True while at least one connection is up and prepared. */
bool sf_pg_ready(const sf_pg_t *pg);

/* Fails queued queries with SF_ECANCELED, closes connections; done fires on
 * the loop when all handles are closed, then the pool is freed. */
void sf_pg_close(sf_pg_t *pg, void (*done)(void *), void *ud);

#endif

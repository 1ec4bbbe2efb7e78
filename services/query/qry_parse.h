/* qry_parse: the Parse-compatible REST facade under /parse (issue 11;
 * design and the supported / mapped / refused table: docs/parse-compat.md).
 *
 * qry_parse_register adds the /parse routes to the query service's HTTP
 * server. Every request is first turned into a qry_parse_req_t (the
 * envelope): Parse's two request styles are accepted alike,
 *  - REST: the method as sent, X-Parse-Application-Id,
 *    X-Parse-REST-API-Key / X-Parse-Javascript-Key, X-Parse-Session-Token,
 *    X-Parse-Request-Id, X-Parse-Installation-Id headers, GET parameters in
 *    the query string (where= as JSON text);
 *  - the Parse SDK's: POST with Content-Type text/plain and a JSON body
 *    carrying _method, _ApplicationId, _JavaScriptKey, _ClientVersion,
 *    _InstallationId, _SessionToken (and the query's parameters: where as
 *    an object, limit, skip, order, keys, include, count),
 * then checked (application id), and dispatched: reads to the read handlers
 * of qry_parse.c (SQL over the read models, via qry_parse_query), writes
 * and sign-in to qry_parse_write. Every answer is Parse-shaped: objects
 * with objectId/createdAt/updatedAt, pointers and dates as Parse types,
 * errors {"code": N, "error": "..."} (qry_parse_error). Loop thread only. */
#ifndef QRY_PARSE_H
#define QRY_PARSE_H

#include <jansson.h>
#include <stdbool.h>

#include "qry_parse_query.h"
#include "sf/authn.h"
#include "sf/http.h"
#include "sf/log.h"

/* The forward declarations the facade needs from the service core. */
typedef struct qry_calls qry_calls_t;

/* Parse's error codes that the facade answers (Parse.Error). */
enum {
  QRY_PARSE_OTHER_CAUSE = -1,
  QRY_PARSE_INTERNAL_SERVER_ERROR = 1,
  QRY_PARSE_CONNECTION_FAILED = 100,
  QRY_PARSE_OBJECT_NOT_FOUND = 101,
  QRY_PARSE_INVALID_QUERY = 102,
  QRY_PARSE_INVALID_CLASS_NAME = 103,
  QRY_PARSE_MISSING_OBJECT_ID = 104,
  QRY_PARSE_INVALID_KEY_NAME = 105,
  QRY_PARSE_INVALID_JSON = 107,
  QRY_PARSE_INCORRECT_TYPE = 111,
  QRY_PARSE_OBJECT_TOO_LARGE = 116,
  QRY_PARSE_OPERATION_FORBIDDEN = 119,
  QRY_PARSE_TIMEOUT = 124,
  QRY_PARSE_DUPLICATE_VALUE = 137,
  QRY_PARSE_VALIDATION_ERROR = 142,
  QRY_PARSE_REQUEST_LIMIT_EXCEEDED = 155,
  QRY_PARSE_DUPLICATE_REQUEST = 159,
  QRY_PARSE_USERNAME_MISSING = 200,
  QRY_PARSE_PASSWORD_MISSING = 201,
  QRY_PARSE_USERNAME_TAKEN = 202,
  QRY_PARSE_EMAIL_TAKEN = 203,
  QRY_PARSE_SESSION_MISSING = 206,
  QRY_PARSE_INVALID_SESSION_TOKEN = 209,
};

/* One Parse request, after the envelope is read. Lives in the request's
 * memory (sf_http_req_alloc); strings are borrowed from the request or from
 * body and live as long as the request. */
typedef struct qry_parse_req {
  sf_http_req_t *req;
  const char *method;          /* effective method: _method or the HTTP one */
  const char *path;            /* below /parse, e.g. "/classes/Store/abc" */
  json_t *body;                /* the JSON body without the _keys (owned by
                                the request; an empty object when none) */
  json_t *params;              /* GET parameters as JSON: from the query
                                string (where parsed from text) or from the
                                SDK's body; never NULL */
  const char *session_token;   /* X-Parse-Session-Token / _SessionToken, or
                                NULL; it is a stockflow bearer token */
  const char *request_id;      /* X-Parse-Request-Id, or NULL */
  const char *installation_id; /* X-Parse-Installation-Id /
                                  _InstallationId, or NULL */
} qry_parse_req_t;

/* Parse SDKs end a session on the server (POST /logout) only when its
 * token is "revocable", which they tell by an "r:" in it. The facade hands
 * out stockflow bearer tokens with this prefix (sign-up, login,
 * /users/me, GraphQL's viewer) and takes them with or without it
 * everywhere (REST, SDK body, LiveQuery, GraphQL); /v1 takes only the bare
 * token. These three functions are the only place that knows the prefix:
 * every entry point strips it with qry_parse_bare_token, every answer adds
 * it with qry_parse_client_token or qry_parse_client_token_json. */

/* token without the prefix: a pointer into token (NULL stays NULL). */
const char *qry_parse_bare_token(const char *token);

/* The token a Parse client is given for bare (a stockflow bearer token;
 * borrowed): the prefix, then bare, in req's memory. NULL when bare is NULL
 * or out of memory. */
const char *qry_parse_client_token(sf_http_req_t *req, const char *bare);

/* The same as a new JSON string (the caller owns it); NULL when bare is
 * NULL or out of memory. */
json_t *qry_parse_client_token_json(const char *bare);

/* Parse's error body {"code": code, "error": message} (message borrowed;
 * NULL is ""), new; NULL on out of memory. */
json_t *qry_parse_error_body(int code, const char *message);

/* Answers status with qry_parse_error_body(code, message), and with a
 * Retry-After header when retry_after is not NULL (503s and 429s: when to
 * try again, in seconds). The one writer of the facade's errors. */
void qry_parse_error_retry(sf_http_req_t *req, int status, int code,
                           const char *message, const char *retry_after);

/* qry_parse_error_retry without Retry-After. */
void qry_parse_error(sf_http_req_t *req, int status, int code,
                     const char *message);

/* Answers status with body (ownership taken), application/json. */
void qry_parse_respond(sf_http_req_t *req, int status, json_t *body);

/* The facade: its settings, its write side and its routes. */
typedef struct qry_parse qry_parse_t;

typedef struct qry_parse_opts {
  const char *app_id;      /* STOCKFLOW_PARSE_APP_ID; copied */
  const char *command_url; /* the command service's base URL, for the
                              writes (qry_parse_writes_new); copied there */
} qry_parse_opts_t;

/* Creates the facade and its write side. loop, calls (the query service's
 * call context: pool, position waits, shutdown flag), authn (the
 * bearer-token gate; session tokens are bearer tokens) and log are
 * borrowed and must outlive it. Returns 0, SF_EINVAL or SF_ENOMEM, or an
 * error of qry_parse_writes_new. */
int qry_parse_new(qry_parse_t **out, uv_loop_t *loop, qry_calls_t *calls,
                  sf_authn_t *authn, const qry_parse_opts_t *opts,
                  sf_log_t *log);

/* Adds the /parse routes (not "/parse" itself: the LiveQuery WebSocket's):
 * GET, POST, PUT, DELETE on /parse/classes/{class},
 * /parse/classes/{class}/{id}, /parse/users, /parse/users/me,
 * /parse/login, /parse/logout, /parse/batch, and GET /parse/health.
 * Returns 0 or an error of sf_http_route. */
int qry_parse_register(qry_parse_t *p, sf_http_server_t *http);

/* Stops the facade: new reads are refused by the call context (503, code
 * 100), the write side is closed (qry_parse_writes_close: its requests in
 * flight are answered); done fires on the loop once that is finished.
 * Call once, before the loop is drained. */
void qry_parse_close(qry_parse_t *p, void (*done)(void *ud), void *ud);

/* ---- the checks /graphql shares with /parse (qry_graphql.c) ---- */

/* Checks the Parse credentials of a request: app_id (the application id
 * sent, NULL when none) must be the facade's, else 403
 * {"error": "unauthorized"}; master (a master key was sent) is refused 403
 * code 119. Answers and returns false when refused. */
bool qry_parse_check_app(qry_parse_t *p, sf_http_req_t *req,
                         const char *app_id, bool master);

/* Fires with the session's principal (request memory, borrowed). */
typedef void (*qry_parse_session_cb)(sf_http_req_t *req,
                                     const sf_principal_t *who, void *ud);

/* Authenticates a Parse session token (a stockflow bearer token; borrowed,
 * NULL when none) as the facade's reads do: cb fires once with a valid
 * session (possibly before this returns); otherwise the request is
 * answered in Parse's shape (no token: 403 code 119; invalid: 400 code
 * 209; account database down: 503 code 100) and cb never fires. */
void qry_parse_session(qry_parse_t *p, sf_http_req_t *req, const char *token,
                       qry_parse_session_cb cb, void *ud);

/* Moves a built query's SQL text and parameters (q, see qry_pq_build)
 * into request memory, so that every way the request ends frees them, and
 * frees them in q (the rest of q stays, for the render). Returns false on
 * out of memory (q still owns them then). */
bool qry_parse_move_sql(sf_http_req_t *req, qry_pq_t *q, const char **sql,
                        const char ***params, int *n_params);

/* The query service's call context and log, borrowed by the facade. */
qry_calls_t *qry_parse_calls(qry_parse_t *p);

/* The facade's write side (qry_parse_write.h), or NULL once it is closed;
 * borrowed. */
typedef struct qry_parse_writes qry_parse_writes_t;
qry_parse_writes_t *qry_parse_writes_of(qry_parse_t *p);
sf_log_t *qry_parse_log(qry_parse_t *p);

/* True once the close above has finished. */
bool qry_parse_closed(const qry_parse_t *p);

/* Frees the facade (after qry_parse_close's done; or right after
 * qry_parse_new, when the service failed to start: the write side is then
 * closed on the loop). */
void qry_parse_destroy(qry_parse_t *p);

#endif

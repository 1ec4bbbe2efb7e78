/* qry_parse_write: the writes and sign-in of the Parse facade
 * (docs/parse-compat.md). They are not done here: each one is sent on to
 * the command service's /v1 API over HTTP (sf_upstream, libcurl on the
 * loop) with the caller's session token as its bearer token, so a Parse
 * write passes the same validation, authorization, idempotency and
 * durability as a /v1 one. X-Parse-Request-Id becomes the Idempotency-Key.
 * The /v1 answer is turned into Parse's shape (objectId, createdAt, ...)
 * and its problem codes into Parse error codes.
 *
 * Read-your-writes for unmodified Parse apps: the position token of each
 * write that succeeded is remembered per session token (bounded, expiring)
 * and the facade's next reads by that session wait for it
 * (qry_parse_writes_position). Loop thread only. */
#ifndef QRY_PARSE_WRITE_H
#define QRY_PARSE_WRITE_H

#include <uv.h>

#include "qry_parse.h"
#include "sf/log.h"

typedef struct qry_parse_writes qry_parse_writes_t;

/* What the dispatcher asks for. */
typedef enum qry_parse_op {
  QRY_PARSE_SIGNUP, /* POST /users */
  QRY_PARSE_LOGIN,  /* GET or POST /login */
  QRY_PARSE_LOGOUT, /* POST /logout */
  QRY_PARSE_CREATE, /* POST /classes/{class} */
  QRY_PARSE_UPDATE, /* PUT /classes/{class}/{id} */
  QRY_PARSE_DELETE, /* DELETE /classes/{class}/{id} */
  QRY_PARSE_BATCH,  /* POST /batch */
} qry_parse_op_t;

/* command_url: the command service's base URL ("http://127.0.0.1:8081");
 * copied. loop and log are borrowed. Returns 0, SF_EINVAL or SF_ENOMEM. */
int qry_parse_writes_new(qry_parse_writes_t **out, uv_loop_t *loop,
                         const char *command_url, sf_log_t *log);

/* Handles one write or sign-in request; always answers pr->req exactly
 * once (also when the client goes away first). class_name and object_id
 * are NULL when the path has none. */
void qry_parse_writes_handle(qry_parse_writes_t *w, qry_parse_req_t *pr,
                             qry_parse_op_t op, const char *class_name,
                             const char *object_id);

/* The answer of a write for a caller that shapes it itself (/graphql's
 * mutations): status and the Parse-shaped body (ownership passed; NULL on
 * out of memory) that qry_parse_writes_handle would have answered. */
typedef void (*qry_parse_write_cb)(void *ud, int status, json_t *body);

/* As qry_parse_writes_handle, but the answer goes to cb, which fires
 * exactly once (possibly before this returns; with status 503 code 100
 * when the client goes away first), and the caller answers pr->req
 * itself, after cb. pr and its request must stay valid until then. */
void qry_parse_writes_call(qry_parse_writes_t *w, qry_parse_req_t *pr,
                           qry_parse_op_t op, const char *class_name,
                           const char *object_id, qry_parse_write_cb cb,
                           void *ud);

/* The position token of the last successful write of session_token
 * (NULL: none known, or expired). Borrowed until the next call into w. */
const char *qry_parse_writes_position(qry_parse_writes_t *w,
                                      const char *session_token);

/* Stops: requests in flight are answered 503-shaped Parse errors
 * (code 100), done fires on the loop when nothing is pending any more.
 * Until then w stays valid and qry_parse_writes_handle answers 503; it is
 * freed just before done is called (done may be NULL). Call once. */
void qry_parse_writes_close(qry_parse_writes_t *w, void (*done)(void *ud),
                            void *ud);

#endif

/* authn: the authentication gate both services put in front of their
 * endpoints, on the libuv loop.
 *
 * sf_authn_check reads "Authorization: Bearer <token>", hashes the token
 * (SHA-256) and looks the session and its user up in PostgreSQL through the
 * pool (one prepared statement: not revoked, not expired). A found session
 * becomes a principal {user_id, username, role, store_ids} handed to the
 * callback; a missing, malformed, unknown, revoked or expired token is
 * answered 401 unauthorized by the gate itself (with WWW-Authenticate:
 * Bearer), a database failure 503 unavailable, and the callback does not
 * fire then.
 *
 * A small cache keeps looked-up sessions for at most cache_ms (<= 1000 ms,
 * and never past the session's expiry). The gate LISTENs on the channel
 * stockflow_auth (schemas/migrations/004_auth.sql: a trigger sends the user
 * id on logout, role or store change, user deletion) and drops that user's
 * entries at once, so a revoked token is refused within one second on every
 * instance even when a notification is lost.
 *
 * sf_authn_route registers a gated route: authentication, then the
 * permission check of sf_auth_allows for a store named by a path parameter
 * (answering 403 forbidden itself), then the real handler. Behind the gate,
 * the principal is the request's data pointer (sf_http_req_data), so gated
 * handlers must not call sf_http_req_set_data themselves; read it with
 * sf_authn_principal.
 *
 * Loop thread only; not thread-safe. */
#ifndef SF_AUTHN_H
#define SF_AUTHN_H

#include <stdint.h>
#include <uv.h>

#include "sf/auth.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct sf_authn sf_authn_t;

typedef struct sf_authn_opts {
  int cache_ms;     /* lifetime of a cached session; default (0) 1000;
                       < 0 disables the cache; capped at 1000 */
  size_t cache_max; /* cached sessions; default 10000 */
} sf_authn_opts_t;

/* Creates the gate: registers its statement with pg and LISTENs on
 * stockflow_auth. loop, pg and log are borrowed and must outlive the gate;
 * opts is copied (NULL: defaults). Returns 0, SF_ENOMEM, or an error of
 * sf_pg_prepare / sf_pg_listen (SF_EEXISTS when the pool already has them:
 * one gate per pool). */
int sf_authn_new(sf_authn_t **out, uv_loop_t *loop, sf_pg_t *pg,
                 const sf_authn_opts_t *opts, sf_log_t *log);

/* Frees the gate. Close the pool first (sf_pg_close, and run the loop to
 * its done callback): lookups still in flight refer to the gate. */
void sf_authn_destroy(sf_authn_t *a);

/* Fires when req is authenticated. p lives in request memory until the
 * request is answered; it is also stored as the request's data pointer. */
typedef void (*sf_authn_cb)(sf_http_req_t *req, const sf_principal_t *p,
                            void *ud);

/* Authenticates req. Either cb fires exactly once (possibly before this
 * function returns, on a cache hit) or the gate answers req itself (401,
 * 503 or 500) and cb never fires. */
void sf_authn_check(sf_authn_t *a, sf_http_req_t *req, sf_authn_cb cb,
                    void *ud);

/* The outcome of sf_authn_check_token. */
typedef enum sf_authn_outcome {
  SF_AUTHN_OK,          /* p is the session's principal */
  SF_AUTHN_INVALID,     /* missing, malformed, unknown, revoked or expired */
  SF_AUTHN_UNAVAILABLE, /* the account database did not answer */
  SF_AUTHN_INTERNAL,    /* out of memory or a malformed account row */
} sf_authn_outcome_t;

/* Fires once with the outcome; p (NULL unless SF_AUTHN_OK) lives in request
 * memory and is also the request's data pointer, as behind the gate. */
typedef void (*sf_authn_token_cb)(sf_http_req_t *req,
                                  sf_authn_outcome_t outcome,
                                  const sf_principal_t *p, void *ud);

/* Authenticates token (borrowed; a bearer token that came some other way
 * than the Authorization header, e.g. a Parse session token in a header or
 * a body) with the same cache and look-up as sf_authn_check, but answers
 * nothing itself: cb fires exactly once (possibly before this returns) with
 * the outcome, and the caller answers in its own shape. The token is never
 * logged. */
void sf_authn_check_token(sf_authn_t *a, sf_http_req_t *req,
                          const char *token, sf_authn_token_cb cb, void *ud);

/* Registers method + pattern on s behind the gate. Once authenticated,
 * when store_param is not NULL, action is checked with sf_auth_allows on
 * that path parameter; when NULL, action is checked without a store (use
 * SF_ACT_READ_CATALOG for "any authenticated user"). Refused: 403
 * forbidden, cb does not run. The route's record is owned by the gate.
 * Returns 0, SF_ENOMEM or an error of sf_http_route. */
int sf_authn_route(sf_authn_t *a, sf_http_server_t *s, const char *method,
                   const char *pattern, sf_auth_action_t action,
                   const char *store_param, sf_http_handler_cb cb, void *ud);

/* The principal of a request that passed the gate, or NULL. */
const sf_principal_t *sf_authn_principal(const sf_http_req_t *req);

/* For checks that need the body (a transfer's two stores, a count): true
 * when the request's principal may do action on store_id; otherwise answers
 * 403 forbidden and returns false. */
bool sf_authn_require(sf_http_req_t *req, sf_auth_action_t action,
                      const char *store_id);

/* Answers 403 forbidden (problem+json, code "forbidden"). */
void sf_authn_forbidden(sf_http_req_t *req, const char *detail);

/* The stores the request's principal may see, for filtered lists and the
 * change stream: *out is PostgreSQL array text "{id,id,...}" (lowercase,
 * "{}" for none) in request memory, or NULL when the principal sees every
 * store (admin). Use it as a statement parameter, e.g.
 *   AND ($5::uuid[] IS NULL OR s.id = ANY($5::uuid[]))
 * Returns 0, SF_EINVAL (no principal: the request did not pass the gate) or
 * SF_ENOMEM. */
int sf_authn_store_filter(sf_http_req_t *req, const char **out);

/* Called on the loop for every stockflow_auth notification (logout, role or
 * store change, deleted user) with that user's id (NULL: possibly anyone),
 * after the cache was cleared. Long-lived answers (the change stream) use
 * it to end that user's streams, so that a revoked token or a narrowed
 * store list stops them at once; the client reconnects and is checked
 * again. One callback per gate; NULL removes it. */
typedef void (*sf_authn_revoke_cb)(void *ud, const char *user_id);
void sf_authn_on_revoke(sf_authn_t *a, sf_authn_revoke_cb cb, void *ud);

/* Drops cached sessions at once: of one user (the gate's own instance; other
 * instances learn it from the NOTIFY), or of one token hash. */
void sf_authn_forget_user(sf_authn_t *a, const char *user_id);
void sf_authn_forget_token(sf_authn_t *a,
                           const uint8_t hash[SF_AUTH_HASH_BYTES]);

/* Counters for /metrics: cache hits, database look-ups, refusals (401). */
typedef struct sf_authn_stats {
  uint64_t hits, lookups, refused, notifications;
} sf_authn_stats_t;
void sf_authn_stats(const sf_authn_t *a, sf_authn_stats_t *out);

#endif

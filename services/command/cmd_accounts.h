/* cmd_accounts: account administration, the second half of the users
 * module (cmd_users.h is its public contract). The cmd__users names here
 * are internal to cmd_users.c and cmd_accounts.c, declared in a header only
 * so that both files share one truth (like sf/http_router.h).
 *
 * Routes added by cmd__accounts_register (all gated; docs/api.md,
 * "Account administration"):
 *   GET    /v1/users?role=&limit=&cursor=   admin: the users, paged
 *   GET    /v1/users/{id}                   admin, or the user itself
 *   POST   /v1/users/{id}/disable, /enable  admin: a disabled user's
 *                                           sessions are revoked at once
 *   POST   /v1/users/{id}/password          admin: reset (given or
 *                                           generated, shown once); every
 *                                           session of the user revoked
 *   POST   /v1/users/me/password            the caller: {current_password,
 *                                           new_password}; its other
 *                                           sessions revoked
 *   GET    /v1/sessions                     the caller's live sessions
 *   GET    /v1/users/{id}/sessions          admin, or the user itself
 *   DELETE /v1/sessions/{id}                the caller's own session, or
 *                                           any session for an admin
 * The last enabled admin cannot be disabled or demoted: the database
 * refuses it (schemas/migrations/005_accounts.sql, SQLSTATE SF409) and the
 * answer is 409 last_admin. Sessions are named by an id that is not the
 * token; neither tokens nor their hashes are ever answered or logged.
 * Loop thread only. */
#ifndef CMD_ACCOUNTS_H
#define CMD_ACCOUNTS_H

#include <jansson.h>
#include <stdbool.h>

#include "cmd_users.h"

struct cmd_users {
  uv_loop_t *loop;
  sf_pg_t *pg;
  sf_authn_t *authn;
  sf_log_t *log;
  int64_t ttl_s;
  char admin_username[SF_AUTH_USERNAME_MAX + 1];
  char *admin_password;  /* owned, wiped and freed after the bootstrap */
  char *trusted_proxies; /* owned; NULL: none (opts.trusted_proxies) */
  char dummy_hash[SF_AUTH_PWHASH_MAX];
  sf_auth_limiter_t *per_user, *per_addr;
  sf_uuidgen_t ids;
  uv_timer_t boot_timer, cleanup_timer; /* initialised by the bootstrap */
  bool timers, ready, closing, said_no_password;
  char reason[200];
  cmd_users_stats_t stats;
};

/* Every statement that answers with a user returns these columns first:
 * id, username, email, role, store ids (comma-separated), version,
 * disabled ('t'/'f'). */
#define CMD__USER_COLS                             \
  "u.id::text, u.username, u.email, u.role, "      \
  "array_to_string(u.store_ids, ','), u.version, " \
  "(u.disabled_at IS NOT NULL)"
#define CMD__USER_NCOLS 7

/* A time column as RFC 3339 UTC with microseconds. */
#define CMD__TIME(col)                   \
  "to_char(" col " AT TIME ZONE 'UTC', " \
  "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* A request's context for the gated endpoints; request memory. */
typedef struct cmd__gated {
  cmd_users_t *u;
  sf_http_req_t *req;
  char id[SF_UUID_STR_LEN + 1];
  int limit; /* lists */
} cmd__gated_t;

/* Answers: a problem+json; 503 with Retry-After: 1. */
void cmd__users_problem(sf_http_req_t *req, int status, const char *code,
                        const char *detail);
void cmd__users_unavailable(sf_http_req_t *req, const char *detail);

/* The user of row r, columns from first (CMD__USER_COLS order), or NULL on
 * out of memory. New reference. */
json_t *cmd__users_user_json(const PGresult *res, int r, int first);

/* Answers status with the user of row 0 (and, when generated is not NULL,
 * "generated_password": the one time it is shown). */
void cmd__users_respond_user(sf_http_req_t *req, int status,
                             const PGresult *res, const char *generated);

/* Parses the JSON object body; answers 415/400 itself and returns NULL. */
json_t *cmd__users_parse_body(sf_http_req_t *req);

/* True (after answering 503) when the module is shutting down. */
bool cmd__users_closing(cmd_users_t *u, sf_http_req_t *req);

/* Answers a failed statement: 409 last_admin for SQLSTATE SF409, else logs
 * it and answers 503 (database) or 500 (our bug). */
void cmd__users_db_failed(cmd_users_t *u, sf_http_req_t *req,
                          const char *what, int err, const char *sqlstate,
                          const char *errmsg);

/* Request-memory context, or NULL after answering 500. */
cmd__gated_t *cmd__users_gated_new(cmd_users_t *u, sf_http_req_t *req);

/* Prepares the statements of cmd_accounts.c on u->pg. 0 or the error of
 * sf_pg_prepare. */
int cmd__accounts_prepare(cmd_users_t *u);

/* Adds the routes listed above. 0 or the error of sf_authn_route. */
int cmd__accounts_register(sf_http_server_t *http, cmd_users_t *u);

#endif

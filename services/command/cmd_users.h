/* cmd_users: the account endpoints of the command service (API.md,
 * "Accounts") and the first-admin bootstrap.
 *
 *   POST   /v1/users             sign-up, role viewer (open)
 *   POST   /v1/sessions          login: 201 {token, user, expires_at} (open)
 *   DELETE /v1/sessions/current  logout: 204, the token dies on every
 *                                instance at once (gated)
 *   GET    /v1/users/me          the caller (gated)
 *   PATCH  /v1/users/{id}        role and store_ids (gated, admin only)
 *   and the administration routes of cmd_accounts.h (users listed,
 *   created with a role by an admin through POST /v1/users, disabled,
 *   enabled, passwords reset and changed, sessions listed and revoked by
 *   id).
 *
 * Accounts live in PostgreSQL (schemas/migrations/004_auth.sql), never on
 * the bus. Passwords are hashed and verified with argon2id on the libuv
 * thread pool, never on the loop; a login for an unknown user verifies
 * against a dummy hash so that it costs the same as a wrong password, and
 * both answer the same 401. Logins are limited per username and per client
 * address (sliding window): beyond the limit 429 too_many_requests with
 * Retry-After, before any password work. Passwords and tokens are never
 * logged.
 *
 * Bootstrap: when no admin exists, one is created from admin_username and
 * admin_password (STOCKFLOW_ADMIN_USERNAME, default "admin", and
 * STOCKFLOW_ADMIN_PASSWORD). Without a password and without an admin the
 * service logs an error and cmd_users_ready stays false (so /readyz should
 * answer 503); it checks again every few seconds, in case another instance
 * creates the admin. There is no default password.
 *
 * Shutdown order: cmd_users_shutdown (new account requests get 503; hashing
 * in flight still answers), close the HTTP server (its done fires when
 * every request is answered), close the pool, then sf_authn_destroy and
 * cmd_users_destroy. Loop thread only. */
#ifndef CMD_USERS_H
#define CMD_USERS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sf/auth.h"
#include "sf/authn.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct cmd_users cmd_users_t;

typedef struct cmd_users_opts {
  const char *admin_username;      /* NULL or "": "admin" */
  const char *admin_password;      /* NULL or "": none; copied, and the copy is
                                 wiped once the bootstrap is over */
  int64_t session_ttl_s;           /* default (<= 0) 86400 */
  sf_auth_limiter_opts_t per_user; /* default 5 attempts a minute */
  sf_auth_limiter_opts_t per_addr; /* default 20 attempts a minute */
  /* comma-separated IP addresses of proxies whose X-Real-IP header names
   * the client for per_addr (a gateway); NULL or "": none. Copied. */
  const char *trusted_proxies;
} cmd_users_opts_t;

/* Creates the module: registers its statements with pg and computes the
 * dummy hash (one argon2id hash, on this thread). loop, pg, authn and log
 * are borrowed and must outlive it. Returns 0, SF_EINVAL, SF_ENOMEM,
 * SF_ECONFIG (a bad admin setting or trusted proxy address) or an error of
 * sf_pg_prepare. */
int cmd_users_new(cmd_users_t **out, uv_loop_t *loop, sf_pg_t *pg,
                  sf_authn_t *authn, const cmd_users_opts_t *opts,
                  sf_log_t *log);

/* Adds the account routes to http (the gated ones through authn).
 * Returns 0 or the error of sf_http_route / sf_authn_route. */
int cmd_users_register(sf_http_server_t *http, cmd_users_t *u);

/* Starts the first-admin bootstrap (asynchronous, retried while the
 * database is unreachable) and the hourly clean-up of old sessions; this is
 * where the module's timers start. Returns 0 or SF_EINVAL (called twice or
 * after shutdown). */
int cmd_users_bootstrap(cmd_users_t *u);

/* True once an admin exists (found or created). */
bool cmd_users_ready(const cmd_users_t *u);

/* Why not ready, for /readyz; "" when ready. */
const char *cmd_users_not_ready_reason(const cmd_users_t *u);

/* Stops the bootstrap timer and refuses new account requests (503). */
void cmd_users_shutdown(cmd_users_t *u);

/* Frees the module: when it was bootstrapped, after cmd_users_shutdown and
 * once the loop has run the timers' close and every request was answered;
 * when it was not, at any time. */
void cmd_users_destroy(cmd_users_t *u);

/* Counters for /metrics. */
typedef struct cmd_users_stats {
  uint64_t signups, logins_ok, logins_failed, logins_limited, logouts,
      patches;
} cmd_users_stats_t;
void cmd_users_stats(const cmd_users_t *u, cmd_users_stats_t *out);

#endif

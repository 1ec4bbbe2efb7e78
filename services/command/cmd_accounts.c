/* cmd_accounts: account administration and sessions by id, over sf_pg,
 * with argon2id on the libuv thread pool. See cmd_accounts.h. Passwords
 * given or generated here are copied once, wiped (sodium_memzero) as soon
 * as the hash work is done or the answer is written, and never logged;
 * sessions are named by their id, never by their token or its hash. */
#include "cmd_accounts.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/json.h"
#include "sf/uuid.h"

#define STMT_LIST "cmd_acc_list"
#define STMT_GET "cmd_acc_get"
#define STMT_DISABLE "cmd_acc_disable"
#define STMT_ENABLE "cmd_acc_enable"
#define STMT_RESET "cmd_acc_reset"
#define STMT_HASH_OF "cmd_acc_hash_of"
#define STMT_CHANGE "cmd_acc_change"
#define STMT_SESSIONS "cmd_acc_sessions"
#define STMT_REVOKE_ID "cmd_acc_revoke_id"

static const struct {
  const char *name, *sql;
} statements[] = {
    /* $1 role or NULL, $2 cursor id or NULL, $3 rows */
    {STMT_LIST,
     "SELECT " CMD__USER_COLS " FROM users u "
     "WHERE ($1::text IS NULL OR u.role = $1) "
     "AND ($2::uuid IS NULL OR u.id > $2::uuid) "
     "ORDER BY u.id LIMIT $3::int"},
    {STMT_GET, "SELECT " CMD__USER_COLS " FROM users u WHERE u.id = $1::uuid"},
    /* Disabling revokes every live session in the same statement (the
     * sessions trigger notifies every instance); the version moves only
     * when the state does. */
    {STMT_DISABLE,
     "WITH u AS (UPDATE users AS u "
     "SET disabled_at = coalesce(u.disabled_at, now()), updated_at = now(), "
     "version = u.version + (u.disabled_at IS NULL)::int "
     "WHERE u.id = $1::uuid RETURNING " CMD__USER_COLS "), "
     "s AS (UPDATE sessions SET revoked_at = now() "
     "WHERE user_id = $1::uuid AND revoked_at IS NULL "
     "AND EXISTS (SELECT 1 FROM u)) "
     "SELECT * FROM u"},
    {STMT_ENABLE,
     "UPDATE users AS u SET disabled_at = NULL, updated_at = now(), "
     "version = u.version + (u.disabled_at IS NOT NULL)::int "
     "WHERE u.id = $1::uuid RETURNING " CMD__USER_COLS},
    /* $1 user id, $2 new hash: every session of the user is revoked */
    {STMT_RESET,
     "WITH u AS (UPDATE users AS u SET password_hash = $2, "
     "updated_at = now(), version = u.version + 1 "
     "WHERE u.id = $1::uuid RETURNING " CMD__USER_COLS "), "
     "s AS (UPDATE sessions SET revoked_at = now() "
     "WHERE user_id = $1::uuid AND revoked_at IS NULL "
     "AND EXISTS (SELECT 1 FROM u)) "
     "SELECT * FROM u"},
    {STMT_HASH_OF,
     "SELECT password_hash FROM users WHERE id = $1::uuid "
     "AND disabled_at IS NULL"},
    /* $1 user id, $2 new hash, $3 the caller's token hash: every other
     * session of the user is revoked; the caller's stays */
    {STMT_CHANGE,
     "WITH u AS (UPDATE users AS u SET password_hash = $2, "
     "updated_at = now(), version = u.version + 1 "
     "WHERE u.id = $1::uuid RETURNING " CMD__USER_COLS "), "
     "s AS (UPDATE sessions SET revoked_at = now() "
     "WHERE user_id = $1::uuid AND revoked_at IS NULL "
     "AND token_hash <> $3::bytea AND EXISTS (SELECT 1 FROM u)) "
     "SELECT * FROM u"},
    /* $1 user id, $2 the caller's token hash, $3 cursor id or NULL, $4
     * rows. No row: no such user; one row with a NULL id: no sessions. */
    {STMT_SESSIONS,
     "SELECT s.id::text, u.id::text, " CMD__TIME("s.created_at") ", " CMD__TIME("s.expires_at") ", coalesce(s.token_hash = $2::bytea, false) "
                                                                                                "FROM users u LEFT JOIN sessions s ON s.user_id = u.id "
                                                                                                "AND s.revoked_at IS NULL AND s.expires_at > now() "
                                                                                                "AND ($3::uuid IS NULL OR s.id < $3::uuid) "
                                                                                                "WHERE u.id = $1::uuid ORDER BY s.id DESC NULLS LAST LIMIT $4::int"},
    /* $1 session id, $2 its owner (NULL: any, for an admin) */
    {STMT_REVOKE_ID,
     "UPDATE sessions SET revoked_at = now() WHERE id = $1::uuid "
     "AND revoked_at IS NULL AND expires_at > now() "
     "AND ($2::uuid IS NULL OR user_id = $2::uuid) RETURNING user_id::text"},
};

/* ---- small helpers ---- */

static const sf_principal_t *caller(const cmd__gated_t *g) {
  return sf_authn_principal(g->req);
}

static void not_found(sf_http_req_t *req, const char *what) {
  char detail[64];
  snprintf(detail, sizeof(detail), "%s not found", what);
  cmd__users_problem(req, 404, "not_found", detail);
}

/* The {id} path parameter into g->id; answers 404 for a non-UUID. */
static bool path_id(cmd__gated_t *g, const char *what) {
  const char *id = sf_http_req_param(g->req, "id");
  if (!id || !sf_uuid_valid(id)) {
    not_found(g->req, what);
    return false;
  }
  for (size_t i = 0; i <= SF_UUID_STR_LEN; i++) /* with the NUL */
    g->id[i] = (id[i] >= 'A' && id[i] <= 'F') ? (char)(id[i] - 'A' + 'a')
                                              : id[i];
  return true;
}

/* A gated request's context with the path's id; NULL after answering. */
static cmd__gated_t *start(cmd_users_t *u, sf_http_req_t *req,
                           const char *what) {
  if (cmd__users_closing(u, req))
    return NULL;
  cmd__gated_t *g = cmd__users_gated_new(u, req);
  if (g && what && !path_id(g, what))
    return NULL;
  return g;
}

static void query(cmd__gated_t *g, const char *stmt, int n,
                  const char *const *params, sf_pg_result_cb cb) {
  if (sf_pg_query(g->u->pg, stmt, n, params, cb, g) != 0)
    cmd__users_unavailable(g->req, "the account database is unreachable");
}

/* SHA-256 of the caller's token as bytea text (the gate has checked the
 * header). Returns false after answering 401. */
static bool caller_token_hash(sf_http_req_t *req, char out[67]) {
  const char *token = sf_auth_bearer(sf_http_req_header(req, "Authorization"));
  uint8_t th[SF_AUTH_HASH_BYTES];
  if (!token || sf_auth_token_hash(token, th) != 0) {
    sf_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"stockflow\"");
    cmd__users_problem(req, 401, "unauthorized",
                       "the Authorization header is not a valid bearer token");
    return false;
  }
  sf_auth_hash_bytea(th, out);
  return true;
}

/* ?limit= and ?cursor= of a list: 422 or 400 bad_cursor answered here. */
static bool page_params(cmd__gated_t *g, sf_auth_list_t kind,
                        char after[SF_UUID_STR_LEN + 1], bool *has_after) {
  if (sf_auth_list_limit(sf_http_req_query(g->req, "limit"), &g->limit) != 0) {
    cmd__users_problem(g->req, 422, "validation_failed",
                       "limit: must be an integer from 1 to 500");
    return false;
  }
  const char *cursor = sf_http_req_query(g->req, "cursor");
  *has_after = cursor != NULL;
  if (cursor && sf_auth_cursor_decode(kind, cursor, after) != 0) {
    cmd__users_problem(g->req, 400, "bad_cursor",
                       "cursor: not a cursor of this list");
    return false;
  }
  return true;
}

/* Answers {"items": items, "next_cursor"} (NULL items: out of memory):
 * the cursor after last_id when more rows follow, else null. Takes items. */
static void respond_page(cmd__gated_t *g, json_t *items, sf_auth_list_t kind,
                         const char *last_id, bool more) {
  char cur[SF_AUTH_CURSOR_LEN + 1];
  json_t *body = NULL;
  if (items) {
    if (more && last_id && sf_auth_cursor_encode(kind, last_id, cur) == 0)
      body = json_pack("{s:o, s:s}", "items", items, "next_cursor", cur);
    else
      body = json_pack("{s:o, s:n}", "items", items, "next_cursor");
  }
  if (!body) {
    cmd__users_problem(g->req, 500, "internal", "out of memory");
    return;
  }
  sf_http_respond_json(g->req, 200, body);
}

/* ---- GET /v1/users (admin) ---- */

static void on_list(void *ud, int err, const PGresult *res,
                    const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  if (err) {
    cmd__users_db_failed(g->u, g->req, "user list", err, sqlstate, errmsg);
    return;
  }
  int n = PQntuples(res);
  bool more = n > g->limit;
  if (more)
    n = g->limit;
  json_t *items = json_array();
  for (int r = 0; items && r < n; r++) {
    if (json_array_append_new(items, cmd__users_user_json(res, r, 0)) != 0) {
      json_decref(items);
      items = NULL;
    }
  }
  respond_page(g, items, SF_AUTH_LIST_USERS,
               n ? PQgetvalue(res, n - 1, 0) : NULL, more);
}

static void h_list(sf_http_req_t *req, void *ud) {
  cmd__gated_t *g = start(ud, req, NULL);
  if (!g)
    return;
  char after[SF_UUID_STR_LEN + 1];
  bool has_after;
  const char *role = sf_http_req_query(req, "role");
  sf_role_t r;
  if (role && sf_role_parse(role, &r) != 0) {
    cmd__users_problem(req, 422, "validation_failed",
                       "role: must be one of admin, manager, clerk, viewer");
    return;
  }
  if (!page_params(g, SF_AUTH_LIST_USERS, after, &has_after))
    return;
  char rows[16];
  snprintf(rows, sizeof(rows), "%d", g->limit + 1);
  const char *params[3] = {role, has_after ? after : NULL, rows};
  query(g, STMT_LIST, 3, params, on_list);
}

/* ---- GET /v1/users/{id}; disable, enable ---- */

static void on_user(void *ud, int err, const PGresult *res,
                    const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  if (err)
    cmd__users_db_failed(g->u, g->req, "user look-up", err, sqlstate, errmsg);
  else if (PQntuples(res) != 1)
    not_found(g->req, "user");
  else
    cmd__users_respond_user(g->req, 200, res, NULL);
}

static void h_get(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  if (cmd__users_closing(u, req))
    return;
  const sf_principal_t *p = sf_authn_principal(req);
  if (!sf_auth_may_see_account(p, sf_http_req_param(req, "id"))) {
    sf_authn_forbidden(req, "only an admin reads another user's account");
    return;
  }
  cmd__gated_t *g = start(u, req, "user");
  if (!g)
    return;
  const char *params[1] = {g->id};
  query(g, STMT_GET, 1, params, on_user);
}

static void on_switched(void *ud, int err, const PGresult *res,
                        const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  if (err) {
    cmd__users_db_failed(g->u, g->req, "disable or enable", err, sqlstate,
                         errmsg);
    return;
  }
  if (PQntuples(res) != 1) {
    not_found(g->req, "user");
    return;
  }
  /* This instance drops the user's sessions now; the others on NOTIFY. */
  sf_authn_forget_user(g->u->authn, g->id);
  bool disabled = PQgetvalue(res, 0, 6)[0] == 't';
  SF_INFO(g->u->log, "users", "request %s: user %s %s by %s",
          sf_http_req_id(g->req), g->id, disabled ? "disabled" : "enabled",
          caller(g)->user_id);
  cmd__users_respond_user(g->req, 200, res, NULL);
}

static void h_disable(sf_http_req_t *req, void *ud) {
  cmd__gated_t *g = start(ud, req, "user");
  if (!g)
    return;
  const char *params[1] = {g->id};
  query(g, STMT_DISABLE, 1, params, on_switched);
}

static void h_enable(sf_http_req_t *req, void *ud) {
  cmd__gated_t *g = start(ud, req, "user");
  if (!g)
    return;
  const char *params[1] = {g->id};
  query(g, STMT_ENABLE, 1, params, on_switched);
}

/* ---- passwords: reset by an admin, change by the user ---- */

/* One reset or change in flight. Owned by whoever holds it now (the
 * thread pool, a pg callback); freed by pw_free, which wipes every
 * secret. g lives in request memory. */
typedef struct pw_op {
  uv_work_t work;
  cmd__gated_t *g;
  char *current;                         /* owned; change only: the password given as current */
  char *password;                        /* owned; the new password */
  char stored[SF_AUTH_PWHASH_MAX];       /* change only: the hash it must match */
  char hash[SF_AUTH_PWHASH_MAX];         /* the new hash */
  char generated[SF_AUTH_TOKEN_LEN + 1]; /* reset: shown once */
  char token_hash[67];                   /* change: the caller's session */
  char user_key[80];                     /* change: the login limiter's key */
  bool verified, ok;
} pw_op_t;

static void wipe_str(char *s) {
  if (s) {
    sodium_memzero(s, strlen(s));
    free(s);
  }
}

static void pw_free(pw_op_t *op) {
  if (!op)
    return;
  wipe_str(op->current);
  wipe_str(op->password);
  sodium_memzero(op, sizeof(*op));
  free(op);
}

static pw_op_t *pw_new(cmd__gated_t *g, const char *password,
                       const char *current) {
  pw_op_t *op = calloc(1, sizeof(*op));
  if (!op)
    goto fail;
  op->g = g;
  op->work.data = op;
  if (!password) {
    sf_auth_password_new(op->generated);
    password = op->generated;
  }
  if (!(op->password = strdup(password)) ||
      (current && !(op->current = strdup(current))))
    goto fail;
  return op;
fail:
  pw_free(op);
  cmd__users_problem(g->req, 500, "internal", "out of memory");
  return NULL;
}

/* Worker thread: the op's own bytes and libsodium (thread-safe). */
static void pw_work(uv_work_t *w) {
  pw_op_t *op = w->data;
  op->verified = !op->current || sf_auth_password_verify(op->stored,
                                                         op->current);
  if (op->current)
    sodium_memzero(op->current, strlen(op->current));
  if (op->verified)
    op->ok = sf_auth_password_hash(op->password, op->hash) == 0;
  sodium_memzero(op->password, strlen(op->password));
}

static void pw_queue(pw_op_t *op, uv_after_work_cb after) {
  if (uv_queue_work(op->g->u->loop, &op->work, pw_work, after) != 0) {
    cmd__users_problem(op->g->req, 500, "internal",
                       "cannot queue the password hashing");
    pw_free(op);
  }
}

/* The new password of a body: NULL (none given) or a checked one; false
 * after answering 422. */
static bool new_password(cmd__gated_t *g, json_t *obj, const char *key,
                         bool required, const char **out) {
  char err[256];
  if (sf_json_get_string(obj, key, required, SF_AUTH_PASSWORD_MAX, out, err,
                         sizeof(err)) != 0) {
    cmd__users_problem(g->req, 422, "validation_failed", err);
    return false;
  }
  const char *why = *out ? sf_auth_password_check(*out) : NULL;
  if (why) {
    char detail[128];
    /* the rule's text names "password"; say which one */
    snprintf(detail, sizeof(detail), "%s%s", key, strchr(why, ':'));
    cmd__users_problem(g->req, 422, "validation_failed", detail);
    return false;
  }
  return true;
}

static void on_password_set(void *ud, int err, const PGresult *res,
                            const char *sqlstate, const char *errmsg) {
  pw_op_t *op = ud;
  cmd__gated_t *g = op->g;
  if (err) {
    cmd__users_db_failed(g->u, g->req, "password update", err, sqlstate,
                         errmsg);
  } else if (PQntuples(res) != 1) {
    not_found(g->req, "user");
  } else {
    sf_authn_forget_user(g->u->authn, g->id);
    bool reset = op->current == NULL;
    SF_INFO(g->u->log, "users", "request %s: password of user %s %s by %s",
            sf_http_req_id(g->req), g->id, reset ? "reset" : "changed",
            caller(g)->user_id);
    cmd__users_respond_user(g->req, 200, res,
                            op->generated[0] ? op->generated : NULL);
  }
  pw_free(op);
}

static void after_reset_hash(uv_work_t *w, int status) {
  pw_op_t *op = w->data;
  cmd__gated_t *g = op->g;
  if (g->u->closing || status != 0) {
    cmd__users_unavailable(g->req, "the service is shutting down");
  } else if (!op->ok) {
    cmd__users_problem(g->req, 500, "internal", "password hashing failed");
  } else {
    const char *params[2] = {g->id, op->hash};
    if (sf_pg_query(g->u->pg, STMT_RESET, 2, params, on_password_set, op) ==
        0)
      return;
    cmd__users_unavailable(g->req, "the account database is unreachable");
  }
  pw_free(op);
}

static const char *const reset_keys[] = {"password", NULL};

/* POST /v1/users/{id}/password (admin): body {password?} or none; without
 * a password one is generated and answered once. */
static void h_reset(sf_http_req_t *req, void *ud) {
  cmd__gated_t *g = start(ud, req, "user");
  if (!g)
    return;
  size_t len = 0;
  sf_http_req_body(req, &len);
  json_t *obj = NULL;
  const char *password = NULL;
  if (len > 0) {
    if (!(obj = cmd__users_parse_body(req)))
      return;
    char err[256];
    if (sf_json_only_keys(obj, reset_keys, err, sizeof(err)) != 0) {
      cmd__users_problem(req, 422, "validation_failed", err);
      json_decref(obj);
      return;
    }
    if (!new_password(g, obj, "password", false, &password)) {
      json_decref(obj);
      return;
    }
  }
  pw_op_t *op = pw_new(g, password, NULL);
  json_decref(obj);
  if (op)
    pw_queue(op, after_reset_hash);
}

static void after_change_hash(uv_work_t *w, int status) {
  pw_op_t *op = w->data;
  cmd__gated_t *g = op->g;
  cmd_users_t *u = g->u;
  if (u->closing || status != 0) {
    cmd__users_unavailable(g->req, "the service is shutting down");
  } else if (!op->verified) {
    SF_INFO(u->log, "users", "request %s: password change of user %s "
                             "refused (wrong current password)",
            sf_http_req_id(g->req),
            g->id);
    cmd__users_problem(g->req, 403, "wrong_password",
                       "current_password is not this account's password");
  } else if (!op->ok) {
    cmd__users_problem(g->req, 500, "internal", "password hashing failed");
  } else {
    /* proven: the guesses counted against this username are forgotten */
    sf_auth_limiter_clear(u->per_user, op->user_key);
    const char *params[3] = {g->id, op->hash, op->token_hash};
    if (sf_pg_query(u->pg, STMT_CHANGE, 3, params, on_password_set, op) == 0)
      return;
    cmd__users_unavailable(g->req, "the account database is unreachable");
  }
  pw_free(op);
}

static void on_stored_hash(void *ud, int err, const PGresult *res,
                           const char *sqlstate, const char *errmsg) {
  pw_op_t *op = ud;
  cmd__gated_t *g = op->g;
  if (err) {
    sf_auth_limiter_undo(g->u->per_user, op->user_key);
    cmd__users_db_failed(g->u, g->req, "password look-up", err, sqlstate,
                         errmsg);
  } else if (PQntuples(res) != 1 ||
             strlen(PQgetvalue(res, 0, 0)) >= sizeof(op->stored)) {
    not_found(g->req, "user"); /* deleted or disabled meanwhile */
  } else {
    snprintf(op->stored, sizeof(op->stored), "%s", PQgetvalue(res, 0, 0));
    pw_queue(op, after_change_hash);
    return;
  }
  pw_free(op);
}

static const char *const change_keys[] = {"current_password", "new_password",
                                          NULL};

/* POST /v1/users/me/password: any signed-in user, proving the current
 * password. Wrong guesses count against the username's login limit. */
static void h_change(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  cmd__gated_t *g = start(u, req, NULL);
  if (!g)
    return;
  const sf_principal_t *p = caller(g);
  char th[67];
  if (!caller_token_hash(req, th))
    return;
  json_t *obj = cmd__users_parse_body(req);
  if (!obj)
    return;
  char err[256];
  const char *current = NULL, *password = NULL;
  if (sf_json_only_keys(obj, change_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "current_password", true, SF_AUTH_PASSWORD_MAX,
                         &current, err, sizeof(err))) {
    cmd__users_problem(req, 422, "validation_failed", err);
    json_decref(obj);
    return;
  }
  if (!new_password(g, obj, "new_password", true, &password)) {
    json_decref(obj);
    return;
  }
  snprintf(g->id, sizeof(g->id), "%s", p->user_id);
  pw_op_t *op = pw_new(g, password, current);
  json_decref(obj);
  if (!op)
    return;
  memcpy(op->token_hash, th, sizeof(th));
  snprintf(op->user_key, sizeof(op->user_key), "u:%s", p->username);
  uint64_t wait = sf_auth_limiter_hit(u->per_user, op->user_key,
                                      uv_now(u->loop));
  if (wait) {
    char secs[24];
    snprintf(secs, sizeof(secs), "%" PRIu64, (wait + 999) / 1000);
    sf_http_add_header(req, "Retry-After", secs);
    cmd__users_problem(req, 429, "too_many_requests",
                       "too many password attempts; try again later");
    pw_free(op);
    return;
  }
  const char *params[1] = {g->id};
  if (sf_pg_query(u->pg, STMT_HASH_OF, 1, params, on_stored_hash, op) != 0) {
    sf_auth_limiter_undo(u->per_user, op->user_key);
    cmd__users_unavailable(req, "the account database is unreachable");
    pw_free(op);
  }
}

/* ---- sessions ---- */

static void on_sessions(void *ud, int err, const PGresult *res,
                        const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  if (err) {
    cmd__users_db_failed(g->u, g->req, "session list", err, sqlstate,
                         errmsg);
    return;
  }
  int n = PQntuples(res);
  if (n == 0) {
    not_found(g->req, "user");
    return;
  }
  bool more = n > g->limit;
  if (more)
    n = g->limit;
  json_t *items = json_array();
  int shown = 0;
  for (int r = 0; items && r < n; r++) {
    if (PQgetisnull(res, r, 0))
      continue; /* the user has no (more) sessions */
    json_t *s = json_pack(
        "{s:s, s:s, s:s, s:s, s:b}", "id", PQgetvalue(res, r, 0), "user_id",
        PQgetvalue(res, r, 1), "created_at", PQgetvalue(res, r, 2),
        "expires_at", PQgetvalue(res, r, 3), "current",
        PQgetvalue(res, r, 4)[0] == 't');
    if (json_array_append_new(items, s) != 0) {
      json_decref(items);
      items = NULL;
    }
    shown = r + 1;
  }
  respond_page(g, items, SF_AUTH_LIST_SESSIONS,
               shown ? PQgetvalue(res, shown - 1, 0) : NULL, more);
}

/* The sessions of g->id, newest first. */
static void list_sessions(cmd__gated_t *g) {
  char after[SF_UUID_STR_LEN + 1], th[67], rows[16];
  bool has_after;
  if (!caller_token_hash(g->req, th) ||
      !page_params(g, SF_AUTH_LIST_SESSIONS, after, &has_after))
    return;
  snprintf(rows, sizeof(rows), "%d", g->limit + 1);
  const char *params[4] = {g->id, th, has_after ? after : NULL, rows};
  query(g, STMT_SESSIONS, 4, params, on_sessions);
}

/* GET /v1/sessions: the caller's own. */
static void h_my_sessions(sf_http_req_t *req, void *ud) {
  cmd__gated_t *g = start(ud, req, NULL);
  if (!g)
    return;
  snprintf(g->id, sizeof(g->id), "%s", caller(g)->user_id);
  list_sessions(g);
}

/* GET /v1/users/{id}/sessions: an admin, or the user itself. */
static void h_user_sessions(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  if (cmd__users_closing(u, req))
    return;
  if (!sf_auth_may_see_account(sf_authn_principal(req),
                               sf_http_req_param(req, "id"))) {
    sf_authn_forbidden(req, "only an admin lists another user's sessions");
    return;
  }
  cmd__gated_t *g = start(u, req, "user");
  if (g)
    list_sessions(g);
}

static void on_revoked_id(void *ud, int err, const PGresult *res,
                          const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  if (err) {
    cmd__users_db_failed(g->u, g->req, "session revocation", err, sqlstate,
                         errmsg);
    return;
  }
  if (PQntuples(res) != 1) {
    not_found(g->req, "session");
    return;
  }
  /* This instance drops the owner's cached sessions now (the others
   * re-read theirs on the trigger's NOTIFY). */
  sf_authn_forget_user(g->u->authn, PQgetvalue(res, 0, 0));
  SF_INFO(g->u->log, "users", "request %s: session %s of user %s revoked by %s",
          sf_http_req_id(g->req), g->id, PQgetvalue(res, 0, 0),
          caller(g)->user_id);
  sf_http_respond(g->req, 204, NULL, NULL, 0);
}

/* DELETE /v1/sessions/{id}: a session of the caller, or any for an admin;
 * another user's session is, to a non-admin, an unknown id (404). */
static void h_revoke(sf_http_req_t *req, void *ud) {
  cmd__gated_t *g = start(ud, req, "session");
  if (!g)
    return;
  const sf_principal_t *p = caller(g);
  const char *params[2] = {g->id,
                           p->role == SF_ROLE_ADMIN ? NULL : p->user_id};
  query(g, STMT_REVOKE_ID, 2, params, on_revoked_id);
}

/* ---- wiring ---- */

int cmd__accounts_prepare(cmd_users_t *u) {
  for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++) {
    int rc = sf_pg_prepare(u->pg, statements[i].name, statements[i].sql);
    if (rc) {
      SF_ERROR(u->log, "users", "preparing %s: %s", statements[i].name,
               sf_err_name(rc));
      return rc;
    }
  }
  return 0;
}

int cmd__accounts_register(sf_http_server_t *http, cmd_users_t *u) {
  static const struct {
    const char *method, *pattern;
    sf_auth_action_t action;
    sf_http_handler_cb cb;
  } routes[] = {
      {"GET", "/v1/users", SF_ACT_USER_ADMIN, h_list},
      {"GET", "/v1/users/{id}", SF_ACT_READ_CATALOG, h_get},
      {"POST", "/v1/users/{id}/disable", SF_ACT_USER_ADMIN, h_disable},
      {"POST", "/v1/users/{id}/enable", SF_ACT_USER_ADMIN, h_enable},
      {"POST", "/v1/users/{id}/password", SF_ACT_USER_ADMIN, h_reset},
      {"POST", "/v1/users/me/password", SF_ACT_READ_CATALOG, h_change},
      {"GET", "/v1/sessions", SF_ACT_READ_CATALOG, h_my_sessions},
      {"GET", "/v1/users/{id}/sessions", SF_ACT_READ_CATALOG,
       h_user_sessions},
      {"DELETE", "/v1/sessions/{id}", SF_ACT_READ_CATALOG, h_revoke},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    int rc = sf_authn_route(u->authn, http, routes[i].method,
                            routes[i].pattern, routes[i].action, NULL,
                            routes[i].cb, u);
    if (rc)
      return rc;
  }
  return 0;
}

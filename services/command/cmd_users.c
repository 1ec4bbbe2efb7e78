/* cmd_users: sign-up, login, logout, the caller's account, role changes and
 * the first-admin bootstrap, over sf_pg, with argon2id on the libuv thread
 * pool. See cmd_users.h. Passwords are copied out of the request once,
 * wiped (sodium_memzero) as soon as the hash work is done, and never
 * logged; tokens are never logged either. */
#include "cmd_users.h"
#include "cmd_accounts.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/json.h"
#include "sf/uuid.h"

#define STMT_INSERT "cmd_users_insert"
#define STMT_BY_NAME "cmd_users_by_name"
#define STMT_BY_ID "cmd_users_by_id"
#define STMT_PATCH "cmd_users_patch"
#define STMT_LOGIN "cmd_users_login"
#define STMT_REVOKE "cmd_users_revoke"
#define STMT_ADMINS "cmd_users_admins"
#define STMT_ADMIN_CREATE "cmd_users_admin_create"
#define STMT_CLEANUP "cmd_users_cleanup"

#define USER_COLS CMD__USER_COLS

static const struct {
  const char *name, *sql;
} statements[] = {
    {STMT_INSERT,
     "INSERT INTO users AS u (id, username, email, password_hash, role, "
     "store_ids) VALUES ($1::uuid, $2, $3, $4, coalesce($5, 'viewer'), "
     "coalesce($6::uuid[], '{}')) "
     "ON CONFLICT (username) DO NOTHING RETURNING " USER_COLS},
    {STMT_BY_NAME,
     "SELECT id::text, password_hash, disabled_at IS NOT NULL FROM users "
     "WHERE username = $1"},
    {STMT_BY_ID, "SELECT " USER_COLS " FROM users u WHERE u.id = $1::uuid"},
    {STMT_PATCH,
     "UPDATE users AS u SET role = coalesce($2, u.role), "
     "store_ids = coalesce($3::uuid[], u.store_ids), updated_at = now(), "
     "version = u.version + 1 WHERE u.id = $1::uuid RETURNING " USER_COLS},
    /* $1 token hash, $2 user id, $3 lifetime in seconds, $4 session id.
     * No row when the user was disabled (or deleted) meanwhile. */
    {STMT_LOGIN,
     "WITH s AS (INSERT INTO sessions (id, token_hash, user_id, expires_at) "
     "SELECT $4::uuid, $1::bytea, v.id, "
     "now() + make_interval(secs => $3::double precision) "
     "FROM users v WHERE v.id = $2::uuid AND v.disabled_at IS NULL "
     "RETURNING id, user_id, expires_at) "
     "SELECT " USER_COLS ", "
     "to_char(s.expires_at AT TIME ZONE 'UTC', "
     "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), s.id::text "
     "FROM s JOIN users u ON u.id = s.user_id"},
    {STMT_REVOKE,
     "UPDATE sessions SET revoked_at = now() "
     "WHERE token_hash = $1::bytea AND revoked_at IS NULL"},
    {STMT_ADMINS, "SELECT count(*) FROM users WHERE role = 'admin'"},
    /* $1 id, $2 username, $3 password hash. Creates the admin only while
     * there is none; zero rows when one exists or the name is taken. */
    {STMT_ADMIN_CREATE,
     "INSERT INTO users (id, username, email, password_hash, role) "
     "SELECT $1::uuid, $2, '', $3, 'admin' "
     "WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin') "
     "ON CONFLICT (username) DO NOTHING RETURNING id::text"},
    {STMT_CLEANUP,
     "DELETE FROM sessions WHERE expires_at < now() - interval '1 day' "
     "OR revoked_at < now() - interval '1 day'"},
};

#define BOOT_RETRY_MS 1000
#define BOOT_WAIT_MS 5000
#define CLEANUP_MS (3600 * 1000)

/* ---- answers (shared with cmd_accounts.c) ---- */

void cmd__users_problem(sf_http_req_t *req, int status, const char *code,
                        const char *detail) {
  sf_http_respond_problem(req, status, code, detail, NULL);
}

void cmd__users_unavailable(sf_http_req_t *req, const char *detail) {
  sf_http_add_header(req, "Retry-After", "1");
  cmd__users_problem(req, 503, "unavailable", detail);
}

static void bad_credentials(sf_http_req_t *req) {
  sf_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"stockflow\"");
  cmd__users_problem(req, 401, "unauthorized", "invalid username or password");
}

json_t *cmd__users_user_json(const PGresult *res, int r, int first) {
  json_t *stores = json_array();
  if (!stores)
    return NULL;
  const char *csv = PQgetvalue(res, r, first + 4);
  for (const char *p = csv; *p;) {
    size_t n = strcspn(p, ",");
    if (json_array_append_new(stores, json_stringn(p, n)) != 0) {
      json_decref(stores);
      return NULL;
    }
    p += n;
    if (*p == ',')
      p++;
  }
  return json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:b}", "id",
                   PQgetvalue(res, r, first), "username",
                   PQgetvalue(res, r, first + 1), "email",
                   PQgetvalue(res, r, first + 2), "role",
                   PQgetvalue(res, r, first + 3), "store_ids", stores,
                   "version",
                   (json_int_t)strtoll(PQgetvalue(res, r, first + 5), NULL,
                                       10),
                   "disabled", PQgetvalue(res, r, first + 6)[0] == 't');
}

void cmd__users_respond_user(sf_http_req_t *req, int status,
                             const PGresult *res, const char *generated) {
  json_t *body = cmd__users_user_json(res, 0, 0);
  if (body && generated &&
      json_object_set_new(body, "generated_password",
                          json_string(generated)) != 0) {
    json_decref(body);
    body = NULL;
  }
  if (!body) {
    cmd__users_problem(req, 500, "internal", "out of memory");
    return;
  }
  sf_http_respond_json(req, status, body);
}

static void respond_user(sf_http_req_t *req, int status, const PGresult *res) {
  cmd__users_respond_user(req, status, res, NULL);
}

json_t *cmd__users_parse_body(sf_http_req_t *req) {
  if (!sf_http_req_is_json(req)) {
    cmd__users_problem(req, 415, "unsupported_media_type",
                       "Content-Type must be application/json");
    return NULL;
  }
  size_t len;
  const char *body = sf_http_req_body(req, &len);
  json_t *obj = NULL;
  char err[256];
  if (sf_json_parse_object(body, len, &obj, err, sizeof(err)) != 0) {
    cmd__users_problem(req, 400, "malformed_json", err);
    return NULL;
  }
  return obj;
}

bool cmd__users_closing(cmd_users_t *u, sf_http_req_t *req) {
  if (!u->closing)
    return false;
  cmd__users_unavailable(req, "the service is shutting down");
  return true;
}

void cmd__users_db_failed(cmd_users_t *u, sf_http_req_t *req,
                          const char *what, int err, const char *sqlstate,
                          const char *errmsg) {
  if (err != SF_ECANCELED && sqlstate && strcmp(sqlstate, "SF409") == 0) {
    /* schemas/migrations/005_accounts.sql: users_last_admin */
    cmd__users_problem(req, 409, "last_admin",
                       "the last enabled admin cannot be disabled or demoted");
    return;
  }
  SF_WARN(u->log, "users", "request %s: %s failed (%s %s): %s",
          sf_http_req_id(req), what, sf_err_name(err),
          sqlstate ? sqlstate : "", errmsg ? errmsg : "");
  if (err == SF_ECANCELED || !sqlstate || !*sqlstate ||
      strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57", 2) == 0 ||
      strncmp(sqlstate, "53", 2) == 0 || strncmp(sqlstate, "40", 2) == 0)
    cmd__users_unavailable(req, "the account database is unreachable");
  else
    cmd__users_problem(req, 500, "internal", "internal error");
}

cmd__gated_t *cmd__users_gated_new(cmd_users_t *u, sf_http_req_t *req) {
  cmd__gated_t *g = sf_http_req_alloc(req, sizeof(*g));
  if (!g) {
    cmd__users_problem(req, 500, "internal", "out of memory");
    return NULL;
  }
  memset(g, 0, sizeof(*g));
  g->u = u;
  g->req = req;
  return g;
}

/* ---- password work on the thread pool ---- */

typedef enum op_kind { OP_SIGNUP,
                       OP_LOGIN,
                       OP_ADMIN } op_kind_t;

/* One sign-up, login or admin creation in flight. Owned by whoever holds
 * it now (the thread pool, a pg callback); freed by op_free. */
typedef struct op {
  uv_work_t work;
  cmd_users_t *u;
  sf_http_req_t *req; /* NULL for OP_ADMIN */
  op_kind_t kind;
  char username[SF_AUTH_USERNAME_MAX + 1];
  char *email;    /* owned; sign-up */
  char *password; /* owned; wiped in the worker */
  char hash[SF_AUTH_PWHASH_MAX];
  char id[SF_UUID_STR_LEN + 1];
  bool known;    /* login: the user exists */
  bool disabled; /* login: the user is disabled */
  bool ok;       /* worker result */
  char addr_key[80], user_key[80];
  /* sign-up by an admin: role and stores given (NULL: viewer, none; the
   * stores text is in request memory), the password generated (shown once
   * in the answer, wiped in op_free), and who did it */
  const char *role, *stores;
  char generated[SF_AUTH_TOKEN_LEN + 1];
  char by[SF_UUID_STR_LEN + 1];
  char sid[SF_UUID_STR_LEN + 1]; /* login: the new session's id */
} op_t;

static void op_free(op_t *op) {
  if (!op)
    return;
  if (op->password) {
    sodium_memzero(op->password, strlen(op->password));
    free(op->password);
  }
  free(op->email);
  sodium_memzero(op->hash, sizeof(op->hash));
  sodium_memzero(op->generated, sizeof(op->generated));
  free(op);
}

static op_t *op_new(cmd_users_t *u, sf_http_req_t *req, op_kind_t kind,
                    const char *password) {
  op_t *op = calloc(1, sizeof(*op));
  if (!op)
    return NULL;
  op->u = u;
  op->req = req;
  op->kind = kind;
  op->work.data = op;
  if (password && !(op->password = strdup(password))) {
    free(op);
    return NULL;
  }
  return op;
}

/* Worker thread: only the op's own bytes, the dummy hash (read-only after
 * cmd_users_new) and libsodium, which is thread-safe. */
static void hash_work(uv_work_t *w) {
  op_t *op = w->data;
  if (op->kind == OP_LOGIN)
    op->ok = sf_auth_password_verify(op->known ? op->hash : op->u->dummy_hash,
                                     op->password);
  else
    op->ok = sf_auth_password_hash(op->password, op->hash) == 0;
  sodium_memzero(op->password, strlen(op->password));
}

static int queue_hash(op_t *op, uv_after_work_cb after) {
  return uv_queue_work(op->u->loop, &op->work, hash_work, after);
}

/* ---- POST /v1/users ---- */

static const char *const signup_keys[] = {
    "username", "email", "password", "role", "store_ids", NULL};

static char *store_array(sf_http_req_t *req, const json_t *arr,
                         const char **err);

static void on_signup_inserted(void *ud, int err, const PGresult *res,
                               const char *sqlstate, const char *errmsg) {
  op_t *op = ud;
  if (err) {
    cmd__users_db_failed(op->u, op->req, "sign-up", err, sqlstate, errmsg);
  } else if (PQntuples(res) == 0) {
    char detail[128];
    snprintf(detail, sizeof(detail), "the username \"%s\" is taken",
             op->username);
    cmd__users_problem(op->req, 409, "username_taken", detail);
  } else {
    op->u->stats.signups++;
    if (op->by[0])
      SF_INFO(op->u->log, "users",
              "request %s: user %s created as %s (role %s) by %s",
              sf_http_req_id(op->req), PQgetvalue(res, 0, 0), op->username,
              PQgetvalue(res, 0, 3), op->by);
    else
      SF_INFO(op->u->log, "users", "request %s: user %s signed up as %s",
              sf_http_req_id(op->req), PQgetvalue(res, 0, 0), op->username);
    cmd__users_respond_user(op->req, 201, res,
                            op->generated[0] ? op->generated : NULL);
  }
  op_free(op);
}

static void after_signup_hash(uv_work_t *w, int status) {
  op_t *op = w->data;
  cmd_users_t *u = op->u;
  if (u->closing || status != 0) {
    cmd__users_unavailable(op->req, "the service is shutting down");
  } else if (!op->ok) {
    cmd__users_problem(op->req, 500, "internal", "password hashing failed");
  } else {
    const char *params[6] = {op->id, op->username, op->email,
                             op->hash, op->role, op->stores};
    if (sf_pg_query(u->pg, STMT_INSERT, 6, params, on_signup_inserted, op) ==
        0)
      return;
    cmd__users_unavailable(op->req, "the account database is unreachable");
  }
  op_free(op);
}

/* The sign-up proper. p is the caller when the request carried a token
 * (then already checked), else NULL. role and store_ids make it an admin's
 * creation of an account: they need an admin's token (401 without a token,
 * 403 for another role), and then the password may be left out to have
 * one generated. */
static void signup(cmd_users_t *u, sf_http_req_t *req,
                   const sf_principal_t *p) {
  json_t *obj = cmd__users_parse_body(req);
  if (!obj)
    return;
  char err[256];
  const char *username = NULL, *email = NULL, *password = NULL, *role = NULL;
  const char *stores = NULL;
  char name[SF_AUTH_USERNAME_MAX + 1];
  const char *rule = NULL;
  json_t *arr = json_object_get(obj, "store_ids");
  bool by_admin = p && p->role == SF_ROLE_ADMIN;
  sf_role_t r;
  if (sf_json_only_keys(obj, signup_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "username", true, SF_AUTH_USERNAME_MAX,
                         &username, err, sizeof(err)) ||
      sf_json_get_string(obj, "email", true, SF_AUTH_EMAIL_MAX, &email, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "password", !by_admin, SF_AUTH_PASSWORD_MAX,
                         &password, err, sizeof(err)) ||
      sf_json_get_string(obj, "role", false, 16, &role, err, sizeof(err))) {
    rule = err;
  } else if (sf_auth_username_normalize(username, name) != 0) {
    rule = "username: 1 to 64 characters among letters, digits and . _ @ -";
  } else if (!sf_auth_email_valid(email)) {
    rule = "email: must look like name@domain";
  } else if (password && (rule = sf_auth_password_check(password)) != NULL) {
    /* rule set */
  } else if (role && sf_role_parse(role, &r) != 0) {
    rule = "role: must be one of admin, manager, clerk, viewer";
  } else if (arr && !json_is_null(arr)) {
    stores = store_array(req, arr, &rule); /* NULL sets rule */
  }
  if (rule) {
    cmd__users_problem(req, 422, "validation_failed", rule);
    json_decref(obj);
    return;
  }
  if ((role || stores) && !by_admin) {
    json_decref(obj);
    if (!p) {
      sf_http_add_header(req, "WWW-Authenticate",
                         "Bearer realm=\"stockflow\"");
      cmd__users_problem(req, 401, "unauthorized",
                         "role and store_ids need an admin's bearer token");
    } else {
      sf_authn_forbidden(req, "only an admin gives a role or stores");
    }
    return;
  }
  op_t *op = op_new(u, req, OP_SIGNUP, password);
  if (op && !password) {
    sf_auth_password_new(op->generated);
    if (!(op->password = strdup(op->generated))) {
      op_free(op);
      op = NULL;
    }
  }
  if (op && !(op->email = strdup(email))) {
    op_free(op);
    op = NULL;
  }
  if (op && role)
    op->role = sf_role_name(r); /* static */
  json_decref(obj);
  if (!op) {
    cmd__users_problem(req, 500, "internal", "out of memory");
    return;
  }
  op->stores = stores;
  if (by_admin)
    snprintf(op->by, sizeof(op->by), "%s", p->user_id);
  snprintf(op->username, sizeof(op->username), "%s", name);
  sf_uuid_v7_str(&u->ids, op->id);
  if (queue_hash(op, after_signup_hash) != 0) {
    op_free(op);
    cmd__users_problem(req, 500, "internal", "cannot queue the password hashing");
  }
}

static void signup_authed(sf_http_req_t *req, const sf_principal_t *p,
                          void *ud) {
  signup(ud, req, p);
}

static void h_signup(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  if (cmd__users_closing(u, req))
    return;
  /* Open to anyone; a request that carries a token is checked first, so
   * that an admin may create accounts with a role here. */
  if (sf_http_req_header(req, "Authorization"))
    sf_authn_check(u->authn, req, signup_authed, u);
  else
    signup(u, req, NULL);
}

/* ---- POST /v1/sessions ---- */

static const char *const login_keys[] = {"username", "password", NULL};

/* True when s is an IPv4 or IPv6 address in text form. */
static bool ip_address(const char *s, size_t len) {
  char text[64];
  unsigned char bin[16];
  if (len == 0 || len >= sizeof(text))
    return false;
  memcpy(text, s, len);
  text[len] = '\0';
  return uv_inet_pton(AF_INET, text, bin) == 0 ||
         uv_inet_pton(AF_INET6, text, bin) == 0;
}

/* Calls cb(item, length, ud) for each comma-separated item of list, spaces
 * trimmed, empty items skipped; stops at the first nonzero return and
 * returns it. */
static int each_item(const char *list, int (*cb)(const char *, size_t, void *),
                     void *ud) {
  while (list && *list) {
    const char *end = strchr(list, ',');
    size_t len = end ? (size_t)(end - list) : strlen(list);
    const char *s = list;
    while (len && *s == ' ')
      s++, len--;
    while (len && s[len - 1] == ' ')
      len--;
    int rc = len ? cb(s, len, ud) : 0;
    if (rc)
      return rc;
    list = end ? end + 1 : NULL;
  }
  return 0;
}

static int same_address_cb(const char *item, size_t len, void *ud) {
  const char *addr = ud;
  return strlen(addr) == len && memcmp(item, addr, len) == 0;
}

static int bad_address_cb(const char *item, size_t len, void *ud) {
  (void)ud;
  return !ip_address(item, len);
}

/* The address a login attempt counts against: the peer's, or, when the
 * peer is a trusted proxy (the gateway), the client address it names in
 * X-Real-IP; otherwise every client behind the gateway would share one
 * budget of attempts. */
static void client_key(const cmd_users_t *u, sf_http_req_t *req, char *out,
                       size_t cap) {
  char addr[64];
  if (sf_http_req_peer(req, addr, sizeof(addr)) != 0) {
    snprintf(addr, sizeof(addr), "unknown");
  } else if (u->trusted_proxies &&
             each_item(u->trusted_proxies, same_address_cb, addr)) {
    const char *real = sf_http_req_header(req, "X-Real-IP");
    if (real && ip_address(real, strlen(real)))
      snprintf(addr, sizeof(addr), "%s", real);
  }
  snprintf(out, cap, "a:%s", addr);
}

static void too_many(cmd_users_t *u, sf_http_req_t *req, uint64_t wait_ms,
                     const char *which) {
  char secs[24];
  snprintf(secs, sizeof(secs), "%" PRIu64, (wait_ms + 999) / 1000);
  u->stats.logins_limited++;
  SF_WARN(u->log, "users", "request %s: login refused for %s (too many "
                           "attempts), retry after %s s",
          sf_http_req_id(req), which, secs);
  sf_http_add_header(req, "Retry-After", secs);
  cmd__users_problem(req, 429, "too_many_requests",
                     "too many login attempts; try again later");
}

static void on_session_created(void *ud, int err, const PGresult *res,
                               const char *sqlstate, const char *errmsg) {
  op_t *op = ud;
  cmd_users_t *u = op->u;
  /* op->hash holds the token here (see after_login_verify) */
  if (err) {
    cmd__users_db_failed(u, op->req, "login", err, sqlstate, errmsg);
  } else if (PQntuples(res) != 1) {
    bad_credentials(op->req); /* the user was deleted meanwhile */
  } else {
    json_t *user = cmd__users_user_json(res, 0, 0);
    json_t *body =
        user ? json_pack("{s:s, s:o, s:s, s:s}", "token", op->hash, "user",
                         user, "expires_at",
                         PQgetvalue(res, 0, CMD__USER_NCOLS), "session_id",
                         PQgetvalue(res, 0, CMD__USER_NCOLS + 1))
             : NULL;
    if (!body) {
      cmd__users_problem(op->req, 500, "internal", "out of memory");
    } else {
      u->stats.logins_ok++;
      SF_INFO(u->log, "users", "request %s: user %s logged in (session %s)",
              sf_http_req_id(op->req), op->id, op->sid);
      sf_http_respond_json(op->req, 201, body);
    }
  }
  op_free(op);
}

static void after_login_verify(uv_work_t *w, int status) {
  op_t *op = w->data;
  cmd_users_t *u = op->u;
  if (u->closing || status != 0) {
    cmd__users_unavailable(op->req, "the service is shutting down");
    op_free(op);
    return;
  }
  if (!op->ok || !op->known) {
    u->stats.logins_failed++;
    bad_credentials(op->req);
    op_free(op);
    return;
  }
  if (op->disabled) {
    /* Said only to whoever knows the password. It still counts against
     * the username, not against the address. */
    u->stats.logins_failed++;
    sf_auth_limiter_undo(u->per_addr, op->addr_key);
    SF_INFO(u->log, "users", "request %s: login of disabled user %s refused",
            sf_http_req_id(op->req), op->id);
    cmd__users_problem(op->req, 403, "account_disabled",
                       "this account is disabled; ask an admin to enable it");
    op_free(op);
    return;
  }
  /* A success: the username's failures are forgotten, and this attempt
   * does not count against the address. */
  sf_auth_limiter_clear(u->per_user, op->user_key);
  sf_auth_limiter_undo(u->per_addr, op->addr_key);
  char token[SF_AUTH_TOKEN_LEN + 1];
  uint8_t th[SF_AUTH_HASH_BYTES];
  char hex[67], ttl[24];
  sf_auth_token_new(token);
  sf_auth_token_hash(token, th);
  sf_auth_hash_bytea(th, hex);
  snprintf(ttl, sizeof(ttl), "%" PRId64, u->ttl_s);
  /* the password hash is not needed any more: keep the token there */
  sodium_memzero(op->hash, sizeof(op->hash));
  memcpy(op->hash, token, sizeof(token));
  sodium_memzero(token, sizeof(token));
  sf_uuid_v7_str(&u->ids, op->sid);
  const char *params[4] = {hex, op->id, ttl, op->sid};
  if (sf_pg_query(u->pg, STMT_LOGIN, 4, params, on_session_created, op) != 0) {
    cmd__users_unavailable(op->req, "the account database is unreachable");
    op_free(op);
  }
}

static void on_login_user(void *ud, int err, const PGresult *res,
                          const char *sqlstate, const char *errmsg) {
  op_t *op = ud;
  cmd_users_t *u = op->u;
  if (err) {
    /* not a guess: take the attempts back */
    sf_auth_limiter_undo(u->per_user, op->user_key);
    sf_auth_limiter_undo(u->per_addr, op->addr_key);
    cmd__users_db_failed(u, op->req, "login look-up", err, sqlstate, errmsg);
    op_free(op);
    return;
  }
  if (PQntuples(res) == 1 &&
      strlen(PQgetvalue(res, 0, 1)) < sizeof(op->hash)) {
    op->known = true;
    op->disabled = PQgetvalue(res, 0, 2)[0] == 't';
    snprintf(op->id, sizeof(op->id), "%s", PQgetvalue(res, 0, 0));
    snprintf(op->hash, sizeof(op->hash), "%s", PQgetvalue(res, 0, 1));
  }
  /* Unknown users verify against the dummy hash: same work, same 401. */
  if (u->closing || queue_hash(op, after_login_verify) != 0) {
    cmd__users_unavailable(op->req, "the service is shutting down");
    op_free(op);
  }
}

static void h_login(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  if (cmd__users_closing(u, req))
    return;
  json_t *obj = cmd__users_parse_body(req);
  if (!obj)
    return;
  char err[256];
  const char *username = NULL, *password = NULL;
  if (sf_json_only_keys(obj, login_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "username", true, 256, &username, err,
                         sizeof(err)) ||
      sf_json_get_string(obj, "password", true, SF_AUTH_PASSWORD_MAX,
                         &password, err, sizeof(err))) {
    cmd__users_problem(req, 422, "validation_failed", err);
    json_decref(obj);
    return;
  }
  op_t *op = op_new(u, req, OP_LOGIN, password);
  if (!op) {
    json_decref(obj);
    cmd__users_problem(req, 500, "internal", "out of memory");
    return;
  }
  /* A name that cannot exist is looked up as such (no match): it costs and
   * answers the same as any unknown user. */
  if (sf_auth_username_normalize(username, op->username) != 0)
    snprintf(op->username, sizeof(op->username), "%s", "\x01invalid");
  json_decref(obj);
  client_key(u, req, op->addr_key, sizeof(op->addr_key));
  snprintf(op->user_key, sizeof(op->user_key), "u:%s", op->username);
  uint64_t now = uv_now(u->loop);
  uint64_t wait = sf_auth_limiter_hit(u->per_addr, op->addr_key, now);
  if (wait) {
    too_many(u, req, wait, op->addr_key);
    op_free(op);
    return;
  }
  wait = sf_auth_limiter_hit(u->per_user, op->user_key, now);
  if (wait) {
    sf_auth_limiter_undo(u->per_addr, op->addr_key);
    too_many(u, req, wait, "a username");
    op_free(op);
    return;
  }
  const char *params[1] = {op->username};
  if (sf_pg_query(u->pg, STMT_BY_NAME, 1, params, on_login_user, op) != 0) {
    sf_auth_limiter_undo(u->per_user, op->user_key);
    sf_auth_limiter_undo(u->per_addr, op->addr_key);
    cmd__users_unavailable(req, "the account database is unreachable");
    op_free(op);
  }
}

/* ---- gated: DELETE /v1/sessions/current, GET /v1/users/me ---- */

static void on_revoked(void *ud, int err, const PGresult *res,
                       const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  (void)res;
  if (err) {
    cmd__users_db_failed(g->u, g->req, "logout", err, sqlstate, errmsg);
    return;
  }
  g->u->stats.logouts++;
  sf_http_respond(g->req, 204, NULL, NULL, 0);
}

static void h_logout(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  if (cmd__users_closing(u, req))
    return;
  /* The gate has checked the header: it holds a well-formed token. */
  const char *token = sf_auth_bearer(sf_http_req_header(req, "Authorization"));
  uint8_t th[SF_AUTH_HASH_BYTES];
  if (!token || sf_auth_token_hash(token, th) != 0) {
    bad_credentials(req);
    return;
  }
  cmd__gated_t *g = cmd__users_gated_new(u, req);
  if (!g)
    return;
  /* This instance forgets it now; the others on the trigger's NOTIFY. */
  sf_authn_forget_token(u->authn, th);
  char hex[67];
  sf_auth_hash_bytea(th, hex);
  const char *params[1] = {hex};
  if (sf_pg_query(u->pg, STMT_REVOKE, 1, params, on_revoked, g) != 0)
    cmd__users_unavailable(req, "the account database is unreachable");
}

static void on_user_row(void *ud, int err, const PGresult *res,
                        const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  if (err)
    cmd__users_db_failed(g->u, g->req, "user look-up", err, sqlstate, errmsg);
  else if (PQntuples(res) != 1)
    cmd__users_problem(g->req, 404, "not_found", "user not found");
  else
    respond_user(g->req, 200, res);
}

static void h_me(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  if (cmd__users_closing(u, req))
    return;
  const sf_principal_t *p = sf_authn_principal(req);
  cmd__gated_t *g = p ? cmd__users_gated_new(u, req) : NULL;
  if (!g) {
    if (!p)
      bad_credentials(req);
    return;
  }
  const char *params[1] = {p->user_id};
  if (sf_pg_query(u->pg, STMT_BY_ID, 1, params, on_user_row, g) != 0)
    cmd__users_unavailable(req, "the account database is unreachable");
}

/* ---- PATCH /v1/users/{id} (admin; the gate checked USER_ADMIN) ---- */

static const char *const patch_keys[] = {"role", "store_ids", NULL};

static void on_patched(void *ud, int err, const PGresult *res,
                       const char *sqlstate, const char *errmsg) {
  cmd__gated_t *g = ud;
  if (err) {
    cmd__users_db_failed(g->u, g->req, "user update", err, sqlstate, errmsg);
    return;
  }
  if (PQntuples(res) != 1) {
    cmd__users_problem(g->req, 404, "not_found", "user not found");
    return;
  }
  g->u->stats.patches++;
  /* This instance drops the user's sessions now; the others on NOTIFY. */
  sf_authn_forget_user(g->u->authn, g->id);
  const sf_principal_t *p = sf_authn_principal(g->req);
  SF_INFO(g->u->log, "users", "request %s: user %s set to role %s by %s",
          sf_http_req_id(g->req), g->id, PQgetvalue(res, 0, 3),
          p ? p->user_id : "?");
  respond_user(g->req, 200, res);
}

/* Builds the PostgreSQL array text of arr ("{id,id}") in request memory.
 * Returns NULL with err set when arr is not an array of UUID strings. */
static char *store_array(sf_http_req_t *req, const json_t *arr,
                         const char **err) {
  if (!json_is_array(arr)) {
    *err = "store_ids: must be an array of store ids";
    return NULL;
  }
  size_t n = json_array_size(arr);
  if (n > SF_AUTH_MAX_STORES) {
    *err = "store_ids: at most 1000 stores";
    return NULL;
  }
  char *out = sf_http_req_alloc(req, n * (SF_UUID_STR_LEN + 1) + 3);
  if (!out) {
    *err = "out of memory";
    return NULL;
  }
  size_t len = 0;
  out[len++] = '{';
  for (size_t i = 0; i < n; i++) {
    const char *id = json_string_value(json_array_get(arr, i));
    if (!id || !sf_uuid_valid(id)) {
      *err = "store_ids: every item must be a store id (UUID)";
      return NULL;
    }
    if (i)
      out[len++] = ',';
    for (size_t k = 0; k < SF_UUID_STR_LEN; k++) {
      char c = id[k];
      out[len++] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
  }
  out[len++] = '}';
  out[len] = '\0';
  return out;
}

static void h_patch_user(sf_http_req_t *req, void *ud) {
  cmd_users_t *u = ud;
  if (cmd__users_closing(u, req))
    return;
  const char *id = sf_http_req_param(req, "id");
  json_t *obj = cmd__users_parse_body(req);
  if (!obj)
    return;
  char err[256];
  const char *role = NULL, *rule = NULL;
  char *stores = NULL;
  json_t *arr = json_object_get(obj, "store_ids");
  sf_role_t r;
  if (sf_json_only_keys(obj, patch_keys, err, sizeof(err)) ||
      sf_json_get_string(obj, "role", false, 16, &role, err, sizeof(err)))
    rule = err;
  else if (role && sf_role_parse(role, &r) != 0)
    rule = "role: must be one of admin, manager, clerk, viewer";
  else if (arr && !json_is_null(arr))
    stores = store_array(req, arr, &rule); /* NULL sets rule */
  if (!rule && !role && !stores)
    rule = "body: give role, store_ids or both";
  if (rule) {
    cmd__users_problem(req, 422, "validation_failed", rule);
    json_decref(obj);
    return;
  }
  cmd__gated_t *g = cmd__users_gated_new(u, req);
  if (!g) {
    json_decref(obj);
    return;
  }
  if (!id || !sf_uuid_valid(id)) {
    json_decref(obj);
    cmd__users_problem(req, 404, "not_found", "user not found");
    return;
  }
  snprintf(g->id, sizeof(g->id), "%s", id);
  const char *params[3] = {g->id, role, stores};
  int rc = sf_pg_query(u->pg, STMT_PATCH, 3, params, on_patched, g);
  json_decref(obj); /* role is copied by sf_pg_query */
  if (rc != 0)
    cmd__users_unavailable(req, "the account database is unreachable");
}

/* ---- bootstrap ---- */

static void wipe_admin_password(cmd_users_t *u) {
  if (!u->admin_password)
    return;
  sodium_memzero(u->admin_password, strlen(u->admin_password));
  free(u->admin_password);
  u->admin_password = NULL;
}

static void boot_step(uv_timer_t *t);

static void boot_later(cmd_users_t *u, uint64_t ms) {
  if (!u->closing)
    uv_timer_start(&u->boot_timer, boot_step, ms, 0);
}

static void on_cleanup(void *ud, int err, const PGresult *res,
                       const char *sqlstate, const char *errmsg) {
  cmd_users_t *u = ud;
  (void)sqlstate;
  if (err && err != SF_ECANCELED)
    SF_WARN(u->log, "users", "session clean-up failed: %s",
            errmsg ? errmsg : sf_err_name(err));
  else if (!err && atoi(PQcmdTuples((PGresult *)res)) > 0)
    SF_INFO(u->log, "users", "removed %s old sessions",
            PQcmdTuples((PGresult *)res));
}

static void cleanup_step(uv_timer_t *t) {
  cmd_users_t *u = t->data;
  if (!u->closing)
    sf_pg_query(u->pg, STMT_CLEANUP, 0, NULL, on_cleanup, u);
}

static void became_ready(cmd_users_t *u) {
  u->ready = true;
  u->reason[0] = '\0';
  wipe_admin_password(u);
  uv_timer_start(&u->cleanup_timer, cleanup_step, 0, CLEANUP_MS);
}

static void on_admin_created(void *ud, int err, const PGresult *res,
                             const char *sqlstate, const char *errmsg) {
  op_t *op = ud;
  cmd_users_t *u = op->u;
  if (err) {
    if (err != SF_ECANCELED)
      SF_WARN(u->log, "users", "creating the first admin: %s (%s)",
              errmsg ? errmsg : sf_err_name(err), sqlstate ? sqlstate : "");
    boot_later(u, BOOT_RETRY_MS);
  } else if (PQntuples(res) == 1) {
    SF_INFO(u->log, "users", "created the first admin \"%s\" (user %s)",
            op->username, PQgetvalue(res, 0, 0));
    became_ready(u);
  } else {
    /* An admin appeared meanwhile, or the name belongs to a non-admin:
     * look again. */
    boot_later(u, 0);
  }
  op_free(op);
}

static void after_admin_hash(uv_work_t *w, int status) {
  op_t *op = w->data;
  cmd_users_t *u = op->u;
  if (u->closing || status != 0) {
    op_free(op);
    return;
  }
  if (!op->ok) {
    SF_ERROR(u->log, "users", "hashing the first admin's password failed");
    snprintf(u->reason, sizeof(u->reason), "could not create the first admin");
    op_free(op);
    boot_later(u, BOOT_WAIT_MS);
    return;
  }
  const char *params[3] = {op->id, op->username, op->hash};
  if (sf_pg_query(u->pg, STMT_ADMIN_CREATE, 3, params, on_admin_created, op) !=
      0) {
    op_free(op);
    boot_later(u, BOOT_RETRY_MS);
  }
}

static void on_admin_count(void *ud, int err, const PGresult *res,
                           const char *sqlstate, const char *errmsg) {
  cmd_users_t *u = ud;
  (void)sqlstate;
  if (err) {
    if (err != SF_ECANCELED) {
      SF_WARN(u->log, "users", "looking for an admin: %s",
              errmsg ? errmsg : sf_err_name(err));
      snprintf(u->reason, sizeof(u->reason),
               "the account database is unreachable");
      boot_later(u, BOOT_RETRY_MS);
    }
    return;
  }
  if (strtoll(PQgetvalue(res, 0, 0), NULL, 10) > 0) {
    if (u->admin_password)
      SF_INFO(u->log, "users", "an admin exists; STOCKFLOW_ADMIN_PASSWORD is "
                               "not used");
    became_ready(u);
    return;
  }
  if (!u->admin_password) {
    snprintf(u->reason, sizeof(u->reason),
             "no admin account exists and STOCKFLOW_ADMIN_PASSWORD is not "
             "set");
    if (!u->said_no_password)
      SF_ERROR(u->log, "users", "%s: refusing to become ready (set "
                                "STOCKFLOW_ADMIN_PASSWORD for the first start; there is no "
                                "default password)",
               u->reason);
    u->said_no_password = true;
    boot_later(u, BOOT_WAIT_MS);
    return;
  }
  op_t *op = op_new(u, NULL, OP_ADMIN, u->admin_password);
  if (!op) {
    boot_later(u, BOOT_RETRY_MS);
    return;
  }
  snprintf(op->username, sizeof(op->username), "%s", u->admin_username);
  sf_uuid_v7_str(&u->ids, op->id);
  if (queue_hash(op, after_admin_hash) != 0) {
    op_free(op);
    boot_later(u, BOOT_RETRY_MS);
  }
}

static void boot_step(uv_timer_t *t) {
  cmd_users_t *u = t->data;
  if (u->closing || u->ready)
    return;
  if (sf_pg_query(u->pg, STMT_ADMINS, 0, NULL, on_admin_count, u) != 0) {
    snprintf(u->reason, sizeof(u->reason),
             "the account database is unreachable");
    boot_later(u, BOOT_RETRY_MS);
  }
}

int cmd_users_bootstrap(cmd_users_t *u) {
  if (!u || u->timers || u->closing)
    return SF_EINVAL;
  uv_timer_init(u->loop, &u->boot_timer);
  uv_timer_init(u->loop, &u->cleanup_timer);
  u->boot_timer.data = u->cleanup_timer.data = u;
  u->timers = true;
  boot_later(u, 0);
  return 0;
}

bool cmd_users_ready(const cmd_users_t *u) { return u && u->ready; }

const char *cmd_users_not_ready_reason(const cmd_users_t *u) {
  return u->ready ? "" : u->reason;
}

/* ---- lifecycle ---- */

int cmd_users_register(sf_http_server_t *http, cmd_users_t *u) {
  int rc;
  if ((rc = sf_http_route(http, "POST", "/v1/users", h_signup, u)) != 0 ||
      (rc = sf_http_route(http, "POST", "/v1/sessions", h_login, u)) != 0 ||
      (rc = sf_authn_route(u->authn, http, "DELETE", "/v1/sessions/current",
                           SF_ACT_READ_CATALOG, NULL, h_logout, u)) != 0 ||
      (rc = sf_authn_route(u->authn, http, "GET", "/v1/users/me",
                           SF_ACT_READ_CATALOG, NULL, h_me, u)) != 0 ||
      (rc = sf_authn_route(u->authn, http, "PATCH", "/v1/users/{id}",
                           SF_ACT_USER_ADMIN, NULL, h_patch_user, u)) != 0 ||
      (rc = cmd__accounts_register(http, u)) != 0)
    SF_ERROR(u->log, "users", "adding the account routes: %s",
             sf_err_name(rc));
  return rc;
}

int cmd_users_new(cmd_users_t **out, uv_loop_t *loop, sf_pg_t *pg,
                  sf_authn_t *authn, const cmd_users_opts_t *opts,
                  sf_log_t *log) {
  if (!out || !loop || !pg || !authn || !opts)
    return SF_EINVAL;
  cmd_users_t *u = calloc(1, sizeof(*u));
  if (!u)
    return SF_ENOMEM;
  u->loop = loop;
  u->pg = pg;
  u->authn = authn;
  u->log = log;
  u->ttl_s = opts->session_ttl_s > 0 ? opts->session_ttl_s : 86400;
  sf_uuidgen_init(&u->ids);
  snprintf(u->reason, sizeof(u->reason), "looking for an admin account");
  int rc = sf_auth_username_normalize(
      opts->admin_username && *opts->admin_username ? opts->admin_username
                                                    : "admin",
      u->admin_username);
  if (rc) {
    SF_ERROR(log, "users", "STOCKFLOW_ADMIN_USERNAME: 1 to 64 characters "
                           "among letters, digits and . _ @ -");
    goto fail_opts;
  }
  if (opts->admin_password && *opts->admin_password) {
    const char *why = sf_auth_password_check(opts->admin_password);
    if (why) {
      SF_ERROR(log, "users", "STOCKFLOW_ADMIN_PASSWORD: %s", why);
      rc = SF_ECONFIG;
      goto fail_opts;
    }
    if (!(u->admin_password = strdup(opts->admin_password))) {
      rc = SF_ENOMEM;
      goto fail_opts;
    }
  }
  if (opts->trusted_proxies && *opts->trusted_proxies) {
    if (each_item(opts->trusted_proxies, bad_address_cb, NULL)) {
      SF_ERROR(log, "users", "STOCKFLOW_TRUSTED_PROXIES: a comma-separated "
                             "list of IP addresses");
      rc = SF_ECONFIG;
      goto fail_proxies;
    }
    if (!(u->trusted_proxies = strdup(opts->trusted_proxies))) {
      rc = SF_ENOMEM;
      goto fail_proxies;
    }
  }
  sf_auth_limiter_opts_t pu = opts->per_user, pa = opts->per_addr;
  if (pa.max_attempts <= 0)
    pa.max_attempts = 20;
  if ((rc = sf_auth_limiter_new(&u->per_user, &pu)) != 0)
    goto fail_user;
  if ((rc = sf_auth_limiter_new(&u->per_addr, &pa)) != 0)
    goto fail_addr;
  /* The dummy hash: a random password nobody knows, hashed with the same
   * parameters as real ones, so that unknown users cost a real verify. */
  char dummy[SF_AUTH_TOKEN_LEN + 1];
  sf_auth_token_new(dummy);
  rc = sf_auth_password_hash(dummy, u->dummy_hash);
  sodium_memzero(dummy, sizeof(dummy));
  if (rc)
    goto fail_dummy;
  for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++) {
    rc = sf_pg_prepare(pg, statements[i].name, statements[i].sql);
    if (rc) {
      SF_ERROR(log, "users", "preparing %s: %s", statements[i].name,
               sf_err_name(rc));
      goto fail_dummy;
    }
  }
  if ((rc = cmd__accounts_prepare(u)) != 0)
    goto fail_dummy;
  *out = u;
  return 0;

fail_dummy:
  sf_auth_limiter_destroy(u->per_addr);
fail_addr:
  sf_auth_limiter_destroy(u->per_user);
fail_user:
  free(u->trusted_proxies);
fail_proxies:
  wipe_admin_password(u);
fail_opts:
  free(u);
  return rc;
}

void cmd_users_shutdown(cmd_users_t *u) {
  if (!u || u->closing)
    return;
  u->closing = true;
  if (u->timers) {
    uv_close((uv_handle_t *)&u->boot_timer, NULL);
    uv_close((uv_handle_t *)&u->cleanup_timer, NULL);
  }
}

void cmd_users_destroy(cmd_users_t *u) {
  if (!u)
    return;
  wipe_admin_password(u);
  sf_auth_limiter_destroy(u->per_user);
  sf_auth_limiter_destroy(u->per_addr);
  sodium_memzero(u->dummy_hash, sizeof(u->dummy_hash));
  free(u->trusted_proxies);
  free(u);
}

void cmd_users_stats(const cmd_users_t *u, cmd_users_stats_t *out) {
  *out = u->stats;
}

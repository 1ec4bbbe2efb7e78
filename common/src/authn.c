/* authn: the bearer-token gate on the loop. A request's token hash is
 * looked up in a bounded cache (entries live at most cache_ms, and go at
 * once on a stockflow_auth notification for their user), then in
 * PostgreSQL; the principal found is copied into request memory and handed
 * to the caller. Tokens are never logged. See sf/authn.h. */
#include "sf/authn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uthash.h>

#include "sf/err.h"

#define STMT_SESSION "sf_authn_session"
#define CHANNEL "stockflow_auth"
#define MAX_CACHE_MS 1000

/* $1 token hash (bytea hex); a disabled user's sessions do not count
 * (schemas/migrations/005_accounts.sql). Columns: user id, username, role, store ids
 * (comma-separated), expiry in Unix milliseconds. */
static const char sql_session[] =
    "SELECT u.id::text, u.username, u.role, "
    "array_to_string(u.store_ids, ','), "
    "(extract(epoch FROM s.expires_at) * 1000)::bigint "
    "FROM sessions s JOIN users u ON u.id = s.user_id "
    "WHERE s.token_hash = $1::bytea AND s.revoked_at IS NULL "
    "AND s.expires_at > now() AND u.disabled_at IS NULL";

typedef char store_id_t[SF_UUID_STR_LEN + 1];

typedef struct cache_entry {
  uint8_t hash[SF_AUTH_HASH_BYTES]; /* key */
  uint64_t loaded_ms;               /* uv_now when looked up */
  int64_t expires_ms;               /* session expiry, Unix ms */
  sf_principal_t p;                 /* store_ids points to stores */
  store_id_t *stores;               /* owned */
  UT_hash_handle hh;
} cache_entry_t;

typedef struct route {
  struct route *next;
  sf_authn_t *a;
  sf_auth_action_t action;
  char *store_param; /* owned; NULL: no store */
  sf_http_handler_cb cb;
  void *ud;
} route_t;

struct sf_authn {
  uv_loop_t *loop;
  sf_pg_t *pg;
  sf_log_t *log;
  sf_authn_opts_t o;
  cache_entry_t *cache; /* uthash by hash; iteration = oldest first */
  size_t n_cache;
  uint64_t epoch; /* bumped by every notification: results of look-ups
                     begun before one are used but not cached */
  route_t *routes;
  sf_authn_stats_t stats;
  sf_authn_revoke_cb revoke_cb;
  void *revoke_ud;
};

/* One look-up in flight; lives in request memory. */
typedef struct check {
  sf_authn_t *a;
  sf_http_req_t *req;
  sf_authn_cb cb;
  sf_authn_token_cb tcb; /* sf_authn_check_token: failures go here too */
  void *ud;
  uint64_t epoch;
  uint8_t hash[SF_AUTH_HASH_BYTES];
} check_t;

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- cache ---- */

static void entry_free(cache_entry_t *e) {
  if (!e)
    return;
  free(e->stores);
  free(e);
}

static void cache_remove(sf_authn_t *a, cache_entry_t *e) {
  HASH_DEL(a->cache, e);
  a->n_cache--;
  entry_free(e);
}

static cache_entry_t *cache_find(sf_authn_t *a,
                                 const uint8_t hash[SF_AUTH_HASH_BYTES]) {
  cache_entry_t *e = NULL;
  HASH_FIND(hh, a->cache, hash, SF_AUTH_HASH_BYTES, e);
  /* The table compares with memcmp; confirm in constant time. */
  if (e && !sf_auth_hash_equal(e->hash, hash))
    return NULL;
  if (e && (uv_now(a->loop) - e->loaded_ms >= (uint64_t)a->o.cache_ms ||
            e->expires_ms <= wall_ms())) {
    cache_remove(a, e);
    return NULL;
  }
  return e;
}

/* Parses "id1,id2,..." into a malloc'd array. Returns 0, SF_EPARSE or
 * SF_ENOMEM. */
static int parse_stores(const char *text, store_id_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (!text || !*text)
    return 0;
  size_t len = strlen(text);
  size_t count = (len + 1) / (SF_UUID_STR_LEN + 1);
  if (count * (SF_UUID_STR_LEN + 1) != len + 1)
    return SF_EPARSE;
  store_id_t *s = calloc(count, sizeof(*s));
  if (!s)
    return SF_ENOMEM;
  for (size_t i = 0; i < count; i++) {
    const char *p = text + i * (SF_UUID_STR_LEN + 1);
    memcpy(s[i], p, SF_UUID_STR_LEN);
    s[i][SF_UUID_STR_LEN] = '\0';
    if (!sf_uuid_valid(s[i]) ||
        (i + 1 < count && p[SF_UUID_STR_LEN] != ',')) {
      free(s);
      return SF_EPARSE;
    }
  }
  *out = s;
  *n = count;
  return 0;
}

/* Copies p into request memory and stores it as the request's data.
 * Returns the copy or NULL on out of memory. */
static const sf_principal_t *principal_to_req(sf_http_req_t *req,
                                              const sf_principal_t *p) {
  sf_principal_t *c = sf_http_req_alloc(req, sizeof(*c));
  if (!c)
    return NULL;
  *c = *p;
  c->store_ids = NULL;
  if (p->n_stores) {
    store_id_t *s = sf_http_req_alloc(req, p->n_stores * sizeof(*s));
    if (!s)
      return NULL;
    memcpy(s, p->store_ids, p->n_stores * sizeof(*s));
    c->store_ids = (const store_id_t *)s;
  }
  sf_http_req_set_data(req, c);
  return c;
}

/* ---- answers ---- */

static void unauthorized(sf_authn_t *a, sf_http_req_t *req,
                         const char *detail) {
  a->stats.refused++;
  sf_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"stockflow\"");
  sf_http_respond_problem(req, 401, "unauthorized", detail, NULL);
}

static void unavailable(sf_http_req_t *req) {
  sf_http_add_header(req, "Retry-After", "1");
  sf_http_respond_problem(req, 503, "unavailable",
                          "the account database is unreachable", NULL);
}

void sf_authn_forbidden(sf_http_req_t *req, const char *detail) {
  sf_http_respond_problem(req, 403, "forbidden", detail, NULL);
}

/* ---- the check ---- */

/* A failed check: answered by the gate, or handed to the caller of
 * sf_authn_check_token. */
static void check_failed(check_t *c, sf_authn_outcome_t outcome,
                         const char *detail) {
  if (c->tcb) {
    if (outcome == SF_AUTHN_INVALID)
      c->a->stats.refused++;
    c->tcb(c->req, outcome, NULL, c->ud);
    return;
  }
  switch (outcome) {
  case SF_AUTHN_INVALID:
    unauthorized(c->a, c->req, detail);
    return;
  case SF_AUTHN_UNAVAILABLE:
    unavailable(c->req);
    return;
  case SF_AUTHN_OK:
  case SF_AUTHN_INTERNAL:
    break;
  }
  sf_http_respond_problem(c->req, 500, "internal", detail, NULL);
}

static void deliver(check_t *c, const sf_principal_t *p) {
  const sf_principal_t *copy = principal_to_req(c->req, p);
  if (!copy) {
    check_failed(c, SF_AUTHN_INTERNAL, "out of memory");
    return;
  }
  if (c->tcb)
    c->tcb(c->req, SF_AUTHN_OK, copy, c->ud);
  else
    c->cb(c->req, copy, c->ud);
}

static void on_session(void *ud, int err, const PGresult *res,
                       const char *sqlstate, const char *errmsg) {
  check_t *c = ud;
  sf_authn_t *a = c->a;
  if (err) {
    SF_WARN(a->log, "authn", "request %s: session look-up failed (%s %s): %s",
            sf_http_req_id(c->req), sf_err_name(err), sqlstate ? sqlstate : "",
            errmsg ? errmsg : "");
    check_failed(c, SF_AUTHN_UNAVAILABLE, "the account database is unreachable");
    return;
  }
  if (PQntuples(res) != 1) {
    check_failed(c, SF_AUTHN_INVALID,
                 "the token is unknown, expired or revoked");
    return;
  }
  cache_entry_t *e = calloc(1, sizeof(*e));
  if (!e) {
    check_failed(c, SF_AUTHN_INTERNAL, "out of memory");
    return;
  }
  memcpy(e->hash, c->hash, sizeof(e->hash));
  e->loaded_ms = uv_now(a->loop);
  const char *uid = PQgetvalue(res, 0, 0);
  const char *uname = PQgetvalue(res, 0, 1);
  int rc = 0;
  if (!sf_uuid_valid(uid) || strlen(uname) > SF_AUTH_USERNAME_MAX ||
      sf_role_parse(PQgetvalue(res, 0, 2), &e->p.role) != 0)
    rc = SF_EPARSE;
  if (!rc)
    rc = parse_stores(PQgetvalue(res, 0, 3), &e->stores, &e->p.n_stores);
  if (rc) {
    SF_ERROR(a->log, "authn", "request %s: malformed session row (%s)",
             sf_http_req_id(c->req), sf_err_name(rc));
    entry_free(e);
    check_failed(c, SF_AUTHN_INTERNAL,
                 rc == SF_ENOMEM ? "out of memory" : "malformed account row");
    return;
  }
  snprintf(e->p.user_id, sizeof(e->p.user_id), "%s", uid);
  snprintf(e->p.username, sizeof(e->p.username), "%s", uname);
  e->p.store_ids = (const store_id_t *)e->stores;
  e->expires_ms = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
  sf_principal_t p = e->p;
  /* Cache only when no notification came in while we looked (the row we
   * read may predate a logout), and only if the cache is on. */
  cache_entry_t *old = NULL;
  HASH_FIND(hh, a->cache, c->hash, SF_AUTH_HASH_BYTES, old);
  if (old)
    cache_remove(a, old);
  if (a->o.cache_ms > 0 && c->epoch == a->epoch) {
    if (a->n_cache >= a->o.cache_max)
      cache_remove(a, a->cache); /* the oldest */
    HASH_ADD(hh, a->cache, hash, SF_AUTH_HASH_BYTES, e);
    a->n_cache++;
    deliver(c, &p);
  } else {
    deliver(c, &p); /* copies p before e goes */
    entry_free(e);
  }
}

/* Looks token up (cache, then PostgreSQL) for c, whose callbacks are set. */
static void check_start(check_t *c, const char *token) {
  sf_authn_t *a = c->a;
  c->epoch = a->epoch;
  if (sf_auth_token_hash(token, c->hash) != 0) {
    check_failed(c, SF_AUTHN_INVALID,
                 "the Authorization header is not a valid bearer token");
    return;
  }
  if (a->o.cache_ms > 0) {
    cache_entry_t *e = cache_find(a, c->hash);
    if (e) {
      a->stats.hits++;
      deliver(c, &e->p);
      return;
    }
  }
  char hex[67];
  sf_auth_hash_bytea(c->hash, hex);
  const char *params[1] = {hex};
  a->stats.lookups++;
  int rc = sf_pg_query(a->pg, STMT_SESSION, 1, params, on_session, c);
  if (rc) {
    SF_WARN(a->log, "authn", "request %s: session look-up not queued: %s",
            sf_http_req_id(c->req), sf_err_name(rc));
    check_failed(c, SF_AUTHN_UNAVAILABLE, "the account database is unreachable");
  }
}

static check_t *check_new(sf_authn_t *a, sf_http_req_t *req) {
  check_t *c = sf_http_req_alloc(req, sizeof(*c));
  if (!c)
    return NULL;
  memset(c, 0, sizeof(*c));
  c->a = a;
  c->req = req;
  return c;
}

void sf_authn_check(sf_authn_t *a, sf_http_req_t *req, sf_authn_cb cb,
                    void *ud) {
  const char *hdr = sf_http_req_header(req, "Authorization");
  const char *token = sf_auth_bearer(hdr);
  if (!token) {
    unauthorized(a, req,
                 hdr ? "the Authorization header is not a valid bearer token"
                     : "this endpoint needs Authorization: Bearer <token>");
    return;
  }
  check_t *c = check_new(a, req);
  if (!c) {
    sf_http_respond_problem(req, 500, "internal", "out of memory", NULL);
    return;
  }
  c->cb = cb;
  c->ud = ud;
  check_start(c, token);
}

void sf_authn_check_token(sf_authn_t *a, sf_http_req_t *req,
                          const char *token, sf_authn_token_cb cb, void *ud) {
  if (!token || !*token) {
    a->stats.refused++;
    cb(req, SF_AUTHN_INVALID, NULL, ud);
    return;
  }
  check_t *c = check_new(a, req);
  if (!c) {
    cb(req, SF_AUTHN_INTERNAL, NULL, ud);
    return;
  }
  c->tcb = cb;
  c->ud = ud;
  check_start(c, token);
}

/* ---- gated routes ---- */

static void gated_cb(sf_http_req_t *req, const sf_principal_t *p, void *ud) {
  route_t *r = ud;
  const char *store = r->store_param ? sf_http_req_param(req, r->store_param)
                                     : NULL;
  if (!sf_auth_allows(p, r->action, store)) {
    char detail[160];
    if (r->store_param)
      snprintf(detail, sizeof(detail),
               "role %s may not %s for this store", sf_role_name(p->role),
               sf_auth_action_name(r->action));
    else
      snprintf(detail, sizeof(detail), "role %s may not %s",
               sf_role_name(p->role), sf_auth_action_name(r->action));
    sf_authn_forbidden(req, detail);
    return;
  }
  r->cb(req, r->ud);
}

static void gate_handler(sf_http_req_t *req, void *ud) {
  route_t *r = ud;
  sf_authn_check(r->a, req, gated_cb, r);
}

int sf_authn_route(sf_authn_t *a, sf_http_server_t *s, const char *method,
                   const char *pattern, sf_auth_action_t action,
                   const char *store_param, sf_http_handler_cb cb, void *ud) {
  if (!a || !s || !cb || (unsigned)action >= SF_ACT_COUNT)
    return SF_EINVAL;
  route_t *r = calloc(1, sizeof(*r));
  if (!r)
    return SF_ENOMEM;
  r->a = a;
  r->action = action;
  r->cb = cb;
  r->ud = ud;
  if (store_param && !(r->store_param = strdup(store_param))) {
    free(r);
    return SF_ENOMEM;
  }
  int rc = sf_http_route(s, method, pattern, gate_handler, r);
  if (rc) {
    free(r->store_param);
    free(r);
    return rc;
  }
  r->next = a->routes;
  a->routes = r;
  return 0;
}

const sf_principal_t *sf_authn_principal(const sf_http_req_t *req) {
  return sf_http_req_data(req);
}

bool sf_authn_require(sf_http_req_t *req, sf_auth_action_t action,
                      const char *store_id) {
  const sf_principal_t *p = sf_authn_principal(req);
  if (sf_auth_allows(p, action, store_id))
    return true;
  char detail[160];
  snprintf(detail, sizeof(detail), "role %s may not %s for store %.36s",
           p ? sf_role_name(p->role) : "(none)", sf_auth_action_name(action),
           store_id ? store_id : "(none)");
  sf_authn_forbidden(req, detail);
  return false;
}

/* ---- invalidation ---- */

void sf_authn_forget_user(sf_authn_t *a, const char *user_id) {
  if (!a)
    return;
  a->epoch++;
  cache_entry_t *e, *tmp;
  HASH_ITER(hh, a->cache, e, tmp) {
    if (!user_id || !sf_uuid_valid(user_id) ||
        strncasecmp(e->p.user_id, user_id, SF_UUID_STR_LEN) == 0)
      cache_remove(a, e);
  }
}

void sf_authn_forget_token(sf_authn_t *a,
                           const uint8_t hash[SF_AUTH_HASH_BYTES]) {
  if (!a)
    return;
  a->epoch++;
  cache_entry_t *e = NULL;
  HASH_FIND(hh, a->cache, hash, SF_AUTH_HASH_BYTES, e);
  if (e)
    cache_remove(a, e);
}

static void on_notify(void *ud, const char *channel, const char *payload) {
  sf_authn_t *a = ud;
  (void)channel;
  a->stats.notifications++;
  /* A payload that is not a user id drops everything: safe by default. */
  sf_authn_forget_user(a, payload);
  if (a->revoke_cb)
    a->revoke_cb(a->revoke_ud,
                 payload && sf_uuid_valid(payload) ? payload : NULL);
}

void sf_authn_on_revoke(sf_authn_t *a, sf_authn_revoke_cb cb, void *ud) {
  a->revoke_cb = cb;
  a->revoke_ud = ud;
}

int sf_authn_store_filter(sf_http_req_t *req, const char **out) {
  const sf_principal_t *p = sf_authn_principal(req);
  *out = NULL;
  if (!p)
    return SF_EINVAL;
  if (sf_auth_sees_all_stores(p))
    return 0;
  char *s = sf_http_req_alloc(req, p->n_stores * (SF_UUID_STR_LEN + 1) + 3);
  if (!s)
    return SF_ENOMEM;
  size_t len = 0;
  s[len++] = '{';
  for (size_t i = 0; i < p->n_stores; i++) {
    if (i)
      s[len++] = ',';
    for (size_t k = 0; k < SF_UUID_STR_LEN; k++) {
      char c = p->store_ids[i][k];
      s[len++] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
  }
  s[len++] = '}';
  s[len] = '\0';
  *out = s;
  return 0;
}

/* ---- lifecycle ---- */

int sf_authn_new(sf_authn_t **out, uv_loop_t *loop, sf_pg_t *pg,
                 const sf_authn_opts_t *opts, sf_log_t *log) {
  if (!out || !loop || !pg)
    return SF_EINVAL;
  sf_authn_t *a = calloc(1, sizeof(*a));
  if (!a)
    return SF_ENOMEM;
  a->loop = loop;
  a->pg = pg;
  a->log = log;
  if (opts)
    a->o = *opts;
  if (a->o.cache_ms == 0 || a->o.cache_ms > MAX_CACHE_MS)
    a->o.cache_ms = MAX_CACHE_MS;
  if (a->o.cache_max == 0)
    a->o.cache_max = 10000;
  int rc = sf_pg_prepare(pg, STMT_SESSION, sql_session);
  if (rc) {
    SF_ERROR(log, "authn", "preparing the session look-up: %s",
             sf_err_name(rc));
    free(a);
    return rc;
  }
  rc = sf_pg_listen(pg, CHANNEL, on_notify, a);
  if (rc) {
    SF_ERROR(log, "authn", "listening on %s: %s", CHANNEL, sf_err_name(rc));
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

void sf_authn_destroy(sf_authn_t *a) {
  if (!a)
    return;
  cache_entry_t *e, *tmp;
  HASH_ITER(hh, a->cache, e, tmp) { cache_remove(a, e); }
  route_t *r = a->routes;
  while (r) {
    route_t *next = r->next;
    free(r->store_param);
    free(r);
    r = next;
  }
  free(a);
}

void sf_authn_stats(const sf_authn_t *a, sf_authn_stats_t *out) {
  if (a)
    *out = a->stats;
  else
    memset(out, 0, sizeof(*out));
}

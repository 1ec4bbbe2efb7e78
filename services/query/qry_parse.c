/* qry_parse: the Parse facade's envelope, dispatch and reads (qry_parse.h,
 * docs/parse-compat.md). A request is read into a qry_parse_req_t (REST
 * headers and query string, or the JS SDK's text/plain JSON body with
 * _method and _ApplicationId...), the application id is checked, writes
 * and sign-in go to qry_parse_write, and reads are authenticated with the
 * session token (a stockflow bearer token), turned into one SQL text by
 * qry_parse_query and run through the query service's call context
 * (qry_call: position wait for read-your-writes, 503 / 504 mapping,
 * shutdown drain). Every answer is Parse-shaped. */
#include "qry_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_call.h"
#include "qry_parse_query.h"
#include "qry_parse_write.h"
#include "sf/err.h"
#include "sf/json.h"

typedef enum route_kind {
  R_CLASS,  /* /classes/{class} */
  R_OBJECT, /* /classes/{class}/{id} */
  R_USERS,  /* /users */
  R_ME,     /* /users/me */
  R_LOGIN,  /* /login */
  R_LOGOUT, /* /logout */
  R_BATCH,  /* /batch */
  R_COUNT,
} route_kind_t;

static const char *const route_paths[R_COUNT] = {
    "/parse/classes/{class}", "/parse/classes/{class}/{id}",
    "/parse/users", "/parse/users/me",
    "/parse/login", "/parse/logout",
    "/parse/batch"};

typedef struct route {
  qry_parse_t *p;
  route_kind_t kind;
} route_t;

struct qry_parse {
  uv_loop_t *loop;
  qry_calls_t *calls;
  sf_authn_t *authn;
  sf_log_t *log;
  char *app_id;
  qry_parse_writes_t *writes; /* NULL once closed */
  route_t routes[R_COUNT];
  bool closing, closed;
  void (*closed_cb)(void *ud);
  void *closed_ud;
};

/* ---- answers ---- */

void qry_parse_respond(sf_http_req_t *req, int status, json_t *body) {
  if (!body) {
    sf_http_respond(req, 500, "application/json",
                    "{\"code\":1,\"error\":\"out of memory\"}", 34);
    return;
  }
  sf_http_respond_json(req, status, body);
}

json_t *qry_parse_error_body(int code, const char *message) {
  return json_pack("{s:i,s:s}", "code", code, "error",
                   message ? message : "");
}

void qry_parse_error_retry(sf_http_req_t *req, int status, int code,
                           const char *message, const char *retry_after) {
  /* The header is advice: when it cannot be added (out of memory, or a
   * value relayed from /v1 that is not a valid header), the answer still
   * goes out without it. */
  if (retry_after)
    (void)sf_http_add_header(req, "Retry-After", retry_after);
  qry_parse_respond(req, status, qry_parse_error_body(code, message));
}

void qry_parse_error(sf_http_req_t *req, int status, int code,
                     const char *message) {
  qry_parse_error_retry(req, status, code, message, NULL);
}

/* ---- the session token's prefix (qry_parse.h) ---- */

#define TOKEN_PREFIX "r:"
#define TOKEN_PREFIX_LEN (sizeof(TOKEN_PREFIX) - 1)

const char *qry_parse_bare_token(const char *token) {
  if (token && strncmp(token, TOKEN_PREFIX, TOKEN_PREFIX_LEN) == 0)
    return token + TOKEN_PREFIX_LEN;
  return token;
}

const char *qry_parse_client_token(sf_http_req_t *req, const char *bare) {
  if (!bare)
    return NULL;
  size_t n = strlen(bare);
  char *t = sf_http_req_alloc(req, TOKEN_PREFIX_LEN + n + 1);
  if (!t)
    return NULL;
  memcpy(t, TOKEN_PREFIX, TOKEN_PREFIX_LEN);
  memcpy(t + TOKEN_PREFIX_LEN, bare, n + 1);
  return t;
}

json_t *qry_parse_client_token_json(const char *bare) {
  return bare ? json_sprintf("%s%s", TOKEN_PREFIX, bare) : NULL;
}

/* Failures of a read's call (qry_call_t.fail): Parse's codes. */
static void read_fail(qry_call_t *c, int status, const char *code,
                      const char *detail) {
  (void)code;
  if (status == 504)
    qry_parse_error(c->req, 504, QRY_PARSE_TIMEOUT, "timeout");
  else if (status == 503)
    qry_parse_error(c->req, 503, QRY_PARSE_CONNECTION_FAILED, detail);
  else
    qry_parse_error(c->req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "internal server error");
}

/* ---- the envelope ---- */

bool qry_parse_check_app(qry_parse_t *p, sf_http_req_t *req,
                         const char *app_id, bool master) {
  if (!app_id || strcmp(app_id, p->app_id) != 0) {
    qry_parse_respond(req, 403, json_pack("{s:s}", "error", "unauthorized"));
    return false;
  }
  if (master) {
    qry_parse_error(req, 403, QRY_PARSE_OPERATION_FORBIDDEN,
                    "the master key is not accepted: use an admin account");
    return false;
  }
  return true;
}

/* The JS SDK's keys of the body, which are the envelope, not the object. */
static const char *const sdk_keys[] = {
    "_method", "_ApplicationId", "_JavaScriptKey", "_ClientVersion",
    "_InstallationId", "_SessionToken", "_RevocableSession", "_ContextIDs",
    "_context"};

/* The GET parameters read from a REST query string. */
static const char *const query_names[] = {"limit", "skip", "order",
                                          "keys", "include", "count",
                                          "username", "password"};

/* A string of the body's envelope, or NULL; borrowed from body. */
static const char *body_string(const json_t *body, const char *key) {
  const json_t *v = json_object_get(body, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The envelope and the JSON it holds, freed with the request
 * (sf_http_req_on_free). */
typedef struct envelope {
  qry_parse_req_t pr;
  json_t *raw; /* the parsed body as sent (owns the SDK strings) */
} envelope_t;

static void envelope_free(void *ud);

/* Reads the envelope. Returns true with *out set, or answers and returns
 * false. */
static bool envelope_read(qry_parse_t *p, sf_http_req_t *req,
                          envelope_t **out) {
  envelope_t *e = sf_http_req_alloc(req, sizeof(*e));
  if (!e) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return false;
  }
  memset(e, 0, sizeof(*e));
  if (sf_http_req_on_free(req, envelope_free, e) != 0) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return false;
  }
  qry_parse_req_t *pr = &e->pr;
  pr->req = req;
  pr->method = sf_http_req_method(req);
  pr->path = sf_http_req_path(req) + strlen("/parse");
  pr->session_token =
      qry_parse_bare_token(sf_http_req_header(req, "X-Parse-Session-Token"));
  pr->request_id = sf_http_req_header(req, "X-Parse-Request-Id");
  pr->installation_id = sf_http_req_header(req, "X-Parse-Installation-Id");
  const char *app_id = sf_http_req_header(req, "X-Parse-Application-Id");
  bool master = sf_http_req_header(req, "X-Parse-Master-Key") != NULL;

  size_t len = 0;
  const char *text = sf_http_req_body(req, &len);
  json_t *body = NULL;
  if (len > 0) {
    /* Any content type: the SDK sends JSON as text/plain (no preflight). */
    json_error_t jerr;
    body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!body || !json_is_object(body)) {
      json_decref(body);
      qry_parse_error(req, 400, QRY_PARSE_INVALID_JSON, "invalid JSON");
      return false;
    }
  } else if (!(body = json_object())) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return false;
  }
  e->raw = body;
  *out = e;

  const json_t *m = json_object_get(body, "_method");
  bool sdk = json_object_get(body, "_ApplicationId") != NULL || m;
  if (sdk) {
    if (m && (!json_is_string(m) || strcmp(pr->method, "POST") != 0)) {
      qry_parse_error(req, 400, QRY_PARSE_INVALID_JSON,
                      "_method must be a String on a POST");
      return false;
    }
    if (m)
      pr->method = json_string_value(m);
    if (json_object_get(body, "_ApplicationId"))
      app_id = body_string(body, "_ApplicationId");
    if (json_object_get(body, "_SessionToken"))
      pr->session_token =
          qry_parse_bare_token(body_string(body, "_SessionToken"));
    if (json_object_get(body, "_InstallationId"))
      pr->installation_id = body_string(body, "_InstallationId");
    master = master || json_object_get(body, "_MasterKey") != NULL;
  }
  if (!qry_parse_check_app(p, req, app_id, master))
    return false;
  /* The object / parameters without the envelope's keys. */
  json_t *rest = json_deep_copy(body);
  if (!rest) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return false;
  }
  for (size_t i = 0; i < sizeof(sdk_keys) / sizeof(sdk_keys[0]); i++)
    json_object_del(rest, sdk_keys[i]);
  json_object_del(rest, "_MasterKey");
  pr->body = rest;
  if (sdk && strcmp(pr->method, "GET") == 0) {
    pr->params = json_incref(rest);
    return true;
  }
  /* REST: the query string. */
  json_t *params = json_object();
  pr->params = params;
  if (!params) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return false;
  }
  for (size_t i = 0; i < sizeof(query_names) / sizeof(query_names[0]); i++) {
    const char *v = sf_http_req_query(req, query_names[i]);
    if (v && json_object_set_new(params, query_names[i], json_string(v))) {
      qry_parse_error(req, 400, QRY_PARSE_INVALID_JSON,
                      "a parameter is not valid UTF-8");
      return false;
    }
  }
  const char *where = sf_http_req_query(req, "where");
  if (where) {
    json_error_t jerr;
    json_t *w = json_loads(where, JSON_REJECT_DUPLICATES, &jerr);
    if (!w) {
      qry_parse_error(req, 400, QRY_PARSE_INVALID_JSON,
                      "where is not valid JSON");
      return false;
    }
    json_object_set_new(params, "where", w);
  }
  return true;
}

static void envelope_free(void *ud) {
  envelope_t *e = ud;
  json_decref(e->pr.params);
  json_decref(e->pr.body);
  json_decref(e->raw);
  e->pr.params = e->pr.body = e->raw = NULL;
}

/* ---- reads ---- */

typedef struct read {
  qry_parse_t *p;
  envelope_t *e;
  qry_pq_t q; /* its sql and params moved to request memory: */
  const char *sql;
  const char **params;
  int n_params;
  const char *token;      /* bare: for the position of the last write */
  const char *echo_token; /* /users/me: qry_parse_client_token */
  bool me;
} read_t;

static void render_read(qry_call_t *c, const PGresult *res) {
  read_t *r = c->ext;
  char *text = NULL;
  size_t len = 0;
  int rc = r->q.by_id ? qry_pq_render_one(&r->q, res,
                                          r->me ? r->echo_token : NULL, &text,
                                          &len)
                      : qry_pq_render_list(&r->q, res, &text, &len);
  if (rc == SF_ENOTFOUND && r->me) {
    /* the session's user went between the look-up and the read */
    qry_parse_error(c->req, 400, QRY_PARSE_INVALID_SESSION_TOKEN,
                    "Invalid session token");
    return;
  }
  if (rc == SF_ENOTFOUND) {
    qry_parse_error(c->req, 404, QRY_PARSE_OBJECT_NOT_FOUND,
                    "Object not found.");
    return;
  }
  if (rc) {
    char what[96];
    snprintf(what, sizeof(what), "Parse %s result not shown: %s",
             r->q.cls->name, sf_err_name(rc));
    qry_respond_internal(c, what);
    return;
  }
  sf_http_respond(c->req, 200, "application/json", text, len);
  free(text);
}

bool qry_parse_move_sql(sf_http_req_t *req, qry_pq_t *q, const char **sql_out,
                        const char ***params_out, int *n_out) {
  size_t n = strlen(q->sql) + 1;
  char *sql = sf_http_req_alloc(req, n);
  const char **params =
      sf_http_req_alloc(req, (size_t)q->n_params * sizeof(char *) + 1);
  if (!sql || !params)
    return false;
  memcpy(sql, q->sql, n);
  for (int i = 0; i < q->n_params; i++) {
    params[i] = NULL;
    if (!q->params[i])
      continue;
    size_t pn = strlen(q->params[i]) + 1;
    char *v = sf_http_req_alloc(req, pn);
    if (!v)
      return false;
    memcpy(v, q->params[i], pn);
    params[i] = v;
  }
  *sql_out = sql;
  *params_out = params;
  *n_out = q->n_params;
  qry_pq_free(q); /* the rest of q (class, keys, ...) stays */
  return true;
}

static void run_read(read_t *r, const sf_principal_t *p,
                     const char *class_name, const char *object_id) {
  sf_http_req_t *req = r->e->pr.req;
  qry_call_t *c = qry_call_begin_custom(r->p->calls, req, read_fail);
  if (!c) {
    if (!qry_calls_closing(r->p->calls))
      qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                      "out of memory");
    return;
  }
  c->ext = r;
  const qry_pq_class_t *cls =
      r->me ? qry_pq_user_class() : qry_pq_class(class_name);
  if (!cls) {
    qry_parse_error(req, 400, QRY_PARSE_INVALID_CLASS_NAME,
                    "Invalid class name: only Store, Product, Inventory, "
                    "Transaction and Order are served");
    return;
  }
  const char *filter = NULL;
  if (!r->me && sf_authn_store_filter(req, &filter) != 0) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return;
  }
  c->store_filter = filter;
  int rc = qry_pq_build(cls, r->e->pr.params, r->me ? p->user_id : object_id,
                        filter, &r->q);
  if (rc == SF_EINVAL) {
    qry_parse_error(req, 400, r->q.code, r->q.error);
    return;
  }
  if (rc == SF_ENOTFOUND) {
    qry_parse_error(req, 404, QRY_PARSE_OBJECT_NOT_FOUND, "Object not found.");
    return;
  }
  if (rc || !qry_parse_move_sql(req, &r->q, &r->sql, &r->params,
                                &r->n_params)) {
    qry_pq_free(&r->q);
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return;
  }
  /* Read-your-writes: the session's last write through the facade. */
  const char *pos =
      r->p->writes ? qry_parse_writes_position(r->p->writes, r->token) : NULL;
  if (pos && qry_positions_parse(pos, c->pos, QRY_POSITIONS_MAX, &c->n_pos)) {
    SF_WARN(r->p->log, "parse", "request %s: remembered position not usable",
            sf_http_req_id(req));
    c->n_pos = 0;
  }
  qry_call_run_sql(c, "parse query", r->sql, r->n_params, r->params,
                   render_read);
}

/* The read's state between the session look-up and the query. */
typedef struct pending_read {
  read_t r;
  const char *class_name;
  const char *object_id;
} pending_read_t;

static void on_read_session(sf_http_req_t *req, const sf_principal_t *who,
                            void *ud) {
  (void)req;
  pending_read_t *pr = ud;
  run_read(&pr->r, who, pr->class_name, pr->object_id);
}

/* A session look-up of qry_parse_session. */
typedef struct session {
  qry_parse_session_cb cb;
  void *ud;
} session_t;

static void on_session(sf_http_req_t *req, sf_authn_outcome_t outcome,
                       const sf_principal_t *p, void *ud) {
  session_t *s = ud;
  switch (outcome) {
  case SF_AUTHN_OK:
    s->cb(req, p, s->ud);
    return;
  case SF_AUTHN_INVALID:
    qry_parse_error(req, 400, QRY_PARSE_INVALID_SESSION_TOKEN,
                    "Invalid session token");
    return;
  case SF_AUTHN_UNAVAILABLE:
    qry_parse_error_retry(req, 503, QRY_PARSE_CONNECTION_FAILED,
                          "the account database is unreachable", "1");
    return;
  case SF_AUTHN_INTERNAL:
    break;
  }
  qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                  "internal server error");
}

void qry_parse_session(qry_parse_t *p, sf_http_req_t *req, const char *token,
                       qry_parse_session_cb cb, void *ud) {
  if (!token || !*token) {
    qry_parse_error(req, 403, QRY_PARSE_OPERATION_FORBIDDEN,
                    "Permission denied, user needs to be authenticated.");
    return;
  }
  session_t *s = sf_http_req_alloc(req, sizeof(*s));
  if (!s) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return;
  }
  s->cb = cb;
  s->ud = ud;
  sf_authn_check_token(p->authn, req, token, on_session, s);
}

qry_calls_t *qry_parse_calls(qry_parse_t *p) { return p->calls; }

qry_parse_writes_t *qry_parse_writes_of(qry_parse_t *p) { return p->writes; }

sf_log_t *qry_parse_log(qry_parse_t *p) { return p->log; }

static void start_read(qry_parse_t *p, envelope_t *e, const char *class_name,
                       const char *object_id, bool me) {
  sf_http_req_t *req = e->pr.req;
  pending_read_t *pr = sf_http_req_alloc(req, sizeof(*pr));
  if (!pr) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return;
  }
  memset(pr, 0, sizeof(*pr));
  pr->r.p = p;
  pr->r.e = e;
  pr->r.token = e->pr.session_token;
  pr->r.me = me;
  if (me && e->pr.session_token && /* none: qry_parse_session refuses */
      !(pr->r.echo_token = qry_parse_client_token(req, e->pr.session_token))) {
    qry_parse_error(req, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                    "out of memory");
    return;
  }
  pr->class_name = class_name;
  pr->object_id = object_id;
  qry_parse_session(p, req, e->pr.session_token, on_read_session, pr);
}

/* ---- dispatch ---- */

static void not_allowed(sf_http_req_t *req, const char *method) {
  char msg[96];
  snprintf(msg, sizeof(msg), "%.16s is not served on this path", method);
  qry_parse_error(req, 405, QRY_PARSE_OPERATION_FORBIDDEN, msg);
}

static void dispatch(qry_parse_t *p, route_kind_t kind, envelope_t *e) {
  qry_parse_req_t *pr = &e->pr;
  sf_http_req_t *req = pr->req;
  const char *m = pr->method;
  const char *cls = sf_http_req_param(req, "class");
  const char *id = sf_http_req_param(req, "id");
  bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0,
       put = strcmp(m, "PUT") == 0, del = strcmp(m, "DELETE") == 0;
  qry_parse_op_t op;
  switch (kind) {
  case R_CLASS:
    if (get) {
      start_read(p, e, cls, NULL, false);
      return;
    }
    if (!post)
      break;
    op = QRY_PARSE_CREATE;
    goto write;
  case R_OBJECT:
    if (get) {
      start_read(p, e, cls, id, false);
      return;
    }
    if (!put && !del)
      break;
    op = put ? QRY_PARSE_UPDATE : QRY_PARSE_DELETE;
    goto write;
  case R_USERS:
    if (!post)
      break;
    op = QRY_PARSE_SIGNUP;
    goto write;
  case R_ME:
    if (!get)
      break;
    start_read(p, e, "_User", NULL, true);
    return;
  case R_LOGIN:
    if (!get && !post)
      break;
    op = QRY_PARSE_LOGIN;
    goto write;
  case R_LOGOUT:
    if (!post)
      break;
    op = QRY_PARSE_LOGOUT;
    goto write;
  case R_BATCH:
    if (!post)
      break;
    op = QRY_PARSE_BATCH;
    goto write;
  case R_COUNT:
    break;
  }
  not_allowed(req, m);
  return;
write:
  if (!p->writes) {
    qry_parse_error_retry(req, 503, QRY_PARSE_CONNECTION_FAILED,
                          "service shutting down", "1");
    return;
  }
  qry_parse_writes_handle(p->writes, pr, op, cls, id);
}

static void h_parse(sf_http_req_t *req, void *ud) {
  route_t *rt = ud;
  envelope_t *e = NULL;
  if (envelope_read(rt->p, req, &e))
    dispatch(rt->p, rt->kind, e);
}

static void h_health(sf_http_req_t *req, void *ud) {
  (void)ud;
  qry_parse_respond(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* ---- lifecycle ---- */

int qry_parse_new(qry_parse_t **out, uv_loop_t *loop, qry_calls_t *calls,
                  sf_authn_t *authn, const qry_parse_opts_t *opts,
                  sf_log_t *log) {
  *out = NULL;
  if (!loop || !calls || !authn || !opts || !opts->app_id || !*opts->app_id)
    return SF_EINVAL;
  qry_parse_t *p = calloc(1, sizeof(*p));
  if (!p)
    return SF_ENOMEM;
  p->loop = loop;
  p->calls = calls;
  p->authn = authn;
  p->log = log;
  int rc = SF_ENOMEM;
  if (!(p->app_id = strdup(opts->app_id)))
    goto fail_app_id;
  rc = qry_parse_writes_new(&p->writes, loop, opts->command_url, log);
  if (rc != 0) {
    SF_ERROR(log, "parse", "the facade's write side: %s", sf_strerror(rc));
    goto fail_writes;
  }
  for (int i = 0; i < R_COUNT; i++)
    p->routes[i] = (route_t){p, (route_kind_t)i};
  *out = p;
  return 0;

fail_writes:
  free(p->app_id);
fail_app_id:
  free(p);
  return rc;
}

int qry_parse_register(qry_parse_t *p, sf_http_server_t *http) {
  static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
  int rc = sf_http_route(http, "GET", "/parse/health", h_health, p);
  for (int i = 0; !rc && i < R_COUNT; i++)
    for (size_t m = 0; !rc && m < sizeof(methods) / sizeof(methods[0]); m++)
      rc = sf_http_route(http, methods[m], route_paths[i], h_parse,
                         &p->routes[i]);
  return rc;
}

static void on_writes_closed(void *ud) {
  qry_parse_t *p = ud;
  p->writes = NULL; /* freed by its close */
  p->closed = true;
  if (p->closed_cb)
    p->closed_cb(p->closed_ud);
}

void qry_parse_close(qry_parse_t *p, void (*done)(void *ud), void *ud) {
  if (p->closing)
    return;
  p->closing = true;
  p->closed_cb = done;
  p->closed_ud = ud;
  qry_parse_writes_close(p->writes, on_writes_closed, p);
}

bool qry_parse_closed(const qry_parse_t *p) { return p->closed; }

void qry_parse_destroy(qry_parse_t *p) {
  if (!p)
    return;
  if (!p->closing && p->writes)
    qry_parse_writes_close(p->writes, NULL, NULL);
  free(p->app_id);
  free(p);
}

/* qry_graphql: /graphql (qry_graphql.h). A request is checked with the
 * Parse facade's checks, its document parsed and planned completely before
 * anything runs, and then its root fields are run one after the other: the
 * render of one root's SQL starts the next, and the last one answers. All
 * state lives in the request's memory; what is malloc'd (the document, the
 * JSON) is freed by the request's on_free hook, however the request
 * ends. */
#include "qry_graphql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_call.h"
#include "qry_gql.h"
#include "qry_gql_map.h"
#include "qry_parse_query.h"
#include "qry_parse_write.h"
#include "sf/err.h"

typedef struct exec {
  qry_parse_t *p;
  sf_http_req_t *req;
  const char *token;
  const sf_principal_t *who;
  const char *filter; /* the session's stores (NULL: all) */
  qry_gql_doc_t *doc;
  json_t *vars;
  json_t *data;
  json_t *errors;
  int n, next;
  qry_gqlm_root_t roots[QRY_GRAPHQL_MAX_ROOTS];
  int rc[QRY_GRAPHQL_MAX_ROOTS];
  qry_gql_error_t err[QRY_GRAPHQL_MAX_ROOTS];
  qry_pq_t q;         /* the root running now */
  bool mutation;      /* the operation is a mutation */
  bool needs_session; /* a root other than logIn */
  qry_parse_req_t pr; /* the write running now (mutations) */
} exec_t;

static void exec_free(void *ud) {
  exec_t *x = ud;
  for (int i = 0; i < x->n; i++)
    qry_gqlm_root_free(&x->roots[i]);
  qry_pq_free(&x->q);
  qry_gql_doc_free(x->doc);
  json_decref(x->vars);
  json_decref(x->data);
  json_decref(x->errors);
  x->doc = NULL;
  x->vars = x->data = x->errors = NULL;
  x->n = 0;
}

/* ---- answers ---- */

/* {"message", "locations"?, "path"?, "extensions": {"code": code}};
 * code is a Parse code (an integer) or, when text is set, that text. */
static json_t *gql_error(const qry_gql_error_t *e, const char *path, int code,
                         const char *text) {
  json_t *o = json_pack("{s:s,s:{s:o}}", "message", e->message, "extensions",
                        "code", text ? json_string(text) : json_integer(code));
  if (o && e->line > 0)
    json_object_set_new(o, "locations",
                        json_pack("[{s:i,s:i}]", "line", e->line, "column",
                                  e->col));
  if (o && path)
    json_object_set_new(o, "path", json_pack("[s]", path));
  return o;
}

static void respond_errors(sf_http_req_t *req, int status,
                           const qry_gql_error_t *e, const char *code) {
  json_t *err = gql_error(e, NULL, 0, code);
  json_t *body = err ? json_pack("{s:[o]}", "errors", err) : NULL;
  if (!body) {
    sf_http_respond(req, 500, "application/json",
                    "{\"errors\":[{\"message\":\"out of memory\"}]}", 41);
    return;
  }
  sf_http_respond_json(req, status, body);
}

static void respond_message(sf_http_req_t *req, int status, const char *msg,
                            const char *code) {
  qry_gql_error_t e = {.line = 0};
  snprintf(e.message, sizeof(e.message), "%s", msg);
  respond_errors(req, status, &e, code);
}

/* Failures of a root's call (database down, shutting down, a bug). */
static void call_fail(qry_call_t *c, int status, const char *code,
                      const char *detail) {
  (void)code;
  int parse_code = status == 504   ? QRY_PARSE_TIMEOUT
                   : status == 503 ? QRY_PARSE_CONNECTION_FAILED
                                   : QRY_PARSE_INTERNAL_SERVER_ERROR;
  qry_gql_error_t e = {.line = 0};
  snprintf(e.message, sizeof(e.message), "%s",
           status == 500 ? "internal server error" : detail);
  json_t *err = gql_error(&e, NULL, parse_code, NULL);
  json_t *body = err ? json_pack("{s:n,s:[o]}", "data", "errors", err) : NULL;
  if (!body) {
    sf_http_respond(c->req, 500, "application/json",
                    "{\"errors\":[{\"message\":\"out of memory\"}]}", 41);
    return;
  }
  sf_http_respond_json(c->req, status, body);
}

static void answer(exec_t *x) {
  json_t *body = json_pack("{s:O}", "data", x->data);
  if (body && json_array_size(x->errors) > 0 &&
      json_object_set(body, "errors", x->errors)) {
    json_decref(body);
    body = NULL;
  }
  if (!body) {
    respond_message(x->req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return;
  }
  sf_http_respond_json(x->req, 200, body);
}

/* The field's data is null and the error says why. */
static bool field_error(exec_t *x, const qry_gqlm_root_t *r, int code,
                        const qry_gql_error_t *e) {
  qry_gql_error_t at = *e;
  if (!at.line) {
    at.line = r->field->line;
    at.col = r->field->col;
  }
  json_t *err = gql_error(&at, r->field->alias, code, NULL);
  return err && !json_array_append_new(x->errors, err) &&
         !json_object_set_new(x->data, r->field->alias, json_null());
}

static bool field_message(exec_t *x, const qry_gqlm_root_t *r, int code,
                          const char *msg) {
  qry_gql_error_t e = {.line = 0};
  snprintf(e.message, sizeof(e.message), "%s", msg);
  return field_error(x, r, code, &e);
}

/* ---- running the roots ---- */

static void step(exec_t *x);

/* The viewer answers the session token as logIn hands it out: with the
 * prefix Parse clients take as revocable, whatever way it was sent (Parse
 * Server echoes the token sent, and its tokens all carry the prefix). */
static int shape_viewer(exec_t *x, const qry_gqlm_root_t *r,
                        const json_t *user, json_t **out) {
  const char *token = qry_parse_client_token(x->req, x->token);
  if (!token)
    return SF_ENOMEM;
  return qry_gqlm_shape_viewer(x->doc, r, user, token, out);
}

static void on_rows(qry_call_t *c, const PGresult *res) {
  exec_t *x = c->ext;
  qry_gqlm_root_t *r = &x->roots[x->next];
  char *text = NULL;
  size_t len = 0;
  int rc = r->kind == QRY_GQLM_LIST
               ? qry_pq_render_list(&x->q, res, &text, &len)
               : qry_pq_render_one(&x->q, res, NULL, &text, &len);
  if (rc == SF_ENOTFOUND && r->kind == QRY_GQLM_CREATE)
    rc = SF_EINVAL; /* written, yet not read back: a bug */
  json_t *parse_json = NULL, *shaped = NULL;
  if (rc == SF_ENOTFOUND) {
    if (!field_message(x, r, QRY_PARSE_OBJECT_NOT_FOUND,
                       r->kind == QRY_GQLM_VIEWER ? "Invalid session token"
                                                  : "Object not found.")) {
      qry_respond_internal(c, "graphql: out of memory");
      return;
    }
    x->next++;
    step(x);
    return;
  }
  if (!rc) {
    json_error_t jerr;
    parse_json = json_loadb(text, len, 0, &jerr);
    rc = !parse_json ? SF_EPARSE
         : r->kind == QRY_GQLM_LIST
             ? qry_gqlm_shape_list(x->doc, r, parse_json, &shaped)
         : r->kind == QRY_GQLM_ONE
             ? qry_gqlm_shape_one(x->doc, r, parse_json, &shaped)
         : r->kind == QRY_GQLM_CREATE
             ? qry_gqlm_shape_payload(x->doc, r, parse_json, &shaped)
             : shape_viewer(x, r, parse_json, &shaped);
  }
  free(text);
  json_decref(parse_json);
  if (rc || json_object_set_new(x->data, r->field->alias, shaped)) {
    char what[96];
    snprintf(what, sizeof(what), "graphql %s not shown: %s", r->field->name,
             sf_err_name(rc ? rc : SF_ENOMEM));
    qry_respond_internal(c, what);
    return;
  }
  x->next++;
  step(x);
}

/* Copies the built SQL and its parameters into request memory and runs
 * them. Returns false on out of memory (nothing answered). */
static bool run(exec_t *x, qry_gqlm_root_t *r) {
  sf_http_req_t *req = x->req;
  const char *sql = NULL;
  const char **params = NULL;
  int n_params = 0;
  if (!qry_parse_move_sql(req, &x->q, &sql, &params, &n_params))
    return false;
  qry_call_t *c =
      qry_call_begin_custom(qry_parse_calls(x->p), req, call_fail);
  if (!c)
    return qry_calls_closing(qry_parse_calls(x->p));
  c->ext = x;
  c->store_filter = r->kind == QRY_GQLM_VIEWER ? NULL : x->filter;
  /* Read-your-writes, as on /parse: every read waits for the session's
   * last write through the facade (a created object's own, too). */
  const char *pos =
      qry_parse_writes_position(qry_parse_writes_of(x->p), x->token);
  if (pos && qry_positions_parse(pos, c->pos, QRY_POSITIONS_MAX, &c->n_pos))
    c->n_pos = 0;
  qry_call_run_sql(c, "graphql query", sql, n_params, params, on_rows);
  return true;
}

/* The answer of a mutation's write (the facade's write path, Parse's
 * shape): an error is the field's; logIn and logOut are shaped from it; a
 * created object is read back (after its position) for its payload. */
static void on_written(void *ud, int status, json_t *body) {
  exec_t *x = ud;
  qry_gqlm_root_t *r = &x->roots[x->next];
  bool ok = body != NULL;
  if (ok && (status < 200 || status > 299)) {
    const json_t *code = json_object_get(body, "code");
    const char *msg = json_string_value(json_object_get(body, "error"));
    ok = field_message(x, r,
                       json_is_integer(code) ? (int)json_integer_value(code)
                                             : QRY_PARSE_OTHER_CAUSE,
                       msg ? msg : "the write failed");
  } else if (ok && r->kind == QRY_GQLM_CREATE) {
    const char *oid = json_string_value(json_object_get(body, "objectId"));
    memset(&x->q, 0, sizeof(x->q));
    int rc = oid ? qry_pq_build(r->cls, r->params, oid, x->filter, &x->q)
                 : SF_EPARSE;
    json_decref(body);
    if (rc == 0) {
      if (!run(x, r)) {
        qry_pq_free(&x->q);
        respond_message(x->req, 500, "out of memory",
                        "INTERNAL_SERVER_ERROR");
      }
      return; /* on_rows goes on */
    }
    respond_message(x->req, 500, "the created object was not read back",
                    "INTERNAL_SERVER_ERROR");
    return;
  } else if (ok) {
    json_t *shaped = NULL;
    ok = qry_gqlm_shape_payload(x->doc, r, r->kind == QRY_GQLM_LOGIN ? body : NULL,
                                &shaped) == 0 &&
         !json_object_set_new(x->data, r->field->alias, shaped);
  }
  json_decref(body);
  if (!ok) {
    respond_message(x->req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return;
  }
  x->next++;
  step(x);
}

static void start_write(exec_t *x, qry_parse_writes_t *w,
                        qry_gqlm_root_t *r) {
  x->pr = (qry_parse_req_t){.req = x->req,
                            .method = "POST",
                            .path = "",
                            .body = r->body,
                            .params = r->body,
                            .session_token = x->token};
  qry_parse_op_t op = r->kind == QRY_GQLM_LOGIN    ? QRY_PARSE_LOGIN
                      : r->kind == QRY_GQLM_LOGOUT ? QRY_PARSE_LOGOUT
                                                   : QRY_PARSE_CREATE;
  qry_parse_writes_call(w, &x->pr, op,
                        r->kind == QRY_GQLM_CREATE ? r->cls->name : NULL,
                        NULL, on_written, x);
}

static void step(exec_t *x) {
  /* A client that went away gets no more queries run for it; the answer
   * (dropped) frees the request. */
  if (sf_http_req_canceled(x->req)) {
    respond_message(x->req, 503, "request canceled", "CANCELED");
    return;
  }
  for (; x->next < x->n; x->next++) {
    qry_gqlm_root_t *r = &x->roots[x->next];
    bool ok = true;
    if (x->rc[x->next] == SF_EINVAL) {
      ok = field_error(x, r, r->code, &x->err[x->next]);
    } else if (r->kind == QRY_GQLM_TYPENAME) {
      ok = !json_object_set_new(x->data, r->field->alias,
                                json_string(x->mutation ? "Mutation"
                                                        : "Query"));
    } else if (r->kind == QRY_GQLM_LOGIN || r->kind == QRY_GQLM_LOGOUT ||
               r->kind == QRY_GQLM_CREATE) {
      qry_parse_writes_t *w = qry_parse_writes_of(x->p);
      if (w) {
        start_write(x, w, r);
        return; /* on_written goes on */
      }
      ok = field_message(x, r, QRY_PARSE_CONNECTION_FAILED,
                         "service shutting down");
    } else {
      const char *id = r->kind == QRY_GQLM_VIEWER ? x->who->user_id
                       : r->kind == QRY_GQLM_ONE  ? r->object_id
                                                  : NULL;
      memset(&x->q, 0, sizeof(x->q));
      int rc = r->kind == QRY_GQLM_ONE && !*id
                   ? SF_ENOTFOUND
                   : qry_pq_build(r->cls, r->params, id,
                                  r->kind == QRY_GQLM_VIEWER ? NULL
                                                             : x->filter,
                                  &x->q);
      if (rc == SF_EINVAL) {
        ok = field_message(x, r, x->q.code, x->q.error);
      } else if (rc == SF_ENOTFOUND) {
        ok = field_message(x, r, QRY_PARSE_OBJECT_NOT_FOUND,
                           "Object not found.");
      } else if (rc == 0) {
        if (!run(x, r)) {
          qry_pq_free(&x->q);
          respond_message(x->req, 500, "out of memory",
                          "INTERNAL_SERVER_ERROR");
        }
        return; /* on_rows goes on */
      } else {
        ok = false;
      }
    }
    if (!ok) {
      respond_message(x->req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
      return;
    }
  }
  answer(x);
}

/* ---- the request ---- */

/* The document, variables and operation name of the request; answers and
 * returns false when they are missing or malformed. */
static bool read_request(exec_t *x, const char **query, size_t *qlen,
                         const char **op_name, json_t **body_out) {
  sf_http_req_t *req = x->req;
  *body_out = NULL;
  if (strcmp(sf_http_req_method(req), "GET") == 0) {
    *query = sf_http_req_query(req, "query");
    *op_name = sf_http_req_query(req, "operationName");
    const char *vars = sf_http_req_query(req, "variables");
    if (vars && *vars) {
      json_error_t jerr;
      x->vars = json_loads(vars, JSON_REJECT_DUPLICATES, &jerr);
      if (!json_is_object(x->vars) && !json_is_null(x->vars)) {
        respond_message(req, 400, "variables must be a JSON object",
                        "BAD_REQUEST");
        return false;
      }
    }
    if (!*query) {
      respond_message(req, 400, "GET query missing.", "BAD_REQUEST");
      return false;
    }
    *qlen = strlen(*query);
    return true;
  }
  size_t len = 0;
  const char *text = sf_http_req_body(req, &len);
  json_error_t jerr;
  json_t *body = len ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)
                     : NULL;
  if (!json_is_object(body)) {
    json_decref(body);
    respond_message(req, 400,
                    "POST body must be a JSON object with a query",
                    "BAD_REQUEST");
    return false;
  }
  *body_out = body;
  const json_t *q = json_object_get(body, "query");
  const json_t *v = json_object_get(body, "variables");
  const json_t *o = json_object_get(body, "operationName");
  if (!json_is_string(q) || (v && !json_is_object(v) && !json_is_null(v)) ||
      (o && !json_is_string(o) && !json_is_null(o))) {
    respond_message(req, 400,
                    "query must be a String, variables an Object, "
                    "operationName a String",
                    "BAD_REQUEST");
    return false;
  }
  *query = json_string_value(q);
  *qlen = json_string_length(q);
  *op_name = json_string_value(o);
  if (json_is_object(v))
    x->vars = json_incref((json_t *)v);
  return true;
}

/* Reads, parses and plans the request. Returns true when it is ready to
 * run, else answers and returns false. */
static bool prepare(exec_t *x) {
  sf_http_req_t *req = x->req;
  const char *query = NULL, *op_name = NULL;
  size_t qlen = 0;
  json_t *body = NULL;
  if (!read_request(x, &query, &qlen, &op_name, &body)) {
    json_decref(body);
    return false;
  }
  qry_gql_error_t e;
  int rc = qry_gql_parse(query, qlen, &x->doc, &e);
  const qry_gql_op_t *op = NULL;
  if (!rc && !(op = qry_gql_pick(x->doc, op_name, &e)))
    rc = SF_EPARSE;
  json_decref(body); /* query and op_name are not used after this */
  if (rc == SF_ENOMEM) {
    respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return false;
  }
  if (rc) {
    respond_errors(req, 400, &e, "GRAPHQL_PARSE_FAILED");
    return false;
  }
  bool get = strcmp(sf_http_req_method(req), "GET") == 0;
  if (op->kind == QRY_GQL_SUBSCRIPTION ||
      (op->kind == QRY_GQL_MUTATION && get)) {
    e.line = op->line;
    e.col = op->col;
    snprintf(e.message, sizeof(e.message), "%s",
             get ? "Mutations are sent with POST."
                 : "Subscriptions are not served: use LiveQuery on /parse.");
    respond_errors(req, 400, &e, "GRAPHQL_VALIDATION_FAILED");
    return false;
  }
  x->mutation = op->kind == QRY_GQL_MUTATION;
  const qry_gql_sel_t *fields[QRY_GRAPHQL_MAX_ROOTS];
  int n = qry_gqlm_roots(x->doc, op, fields, QRY_GRAPHQL_MAX_ROOTS, &e);
  if (n < 0) {
    respond_errors(req, 400, &e, "GRAPHQL_VALIDATION_FAILED");
    return false;
  }
  for (int i = 0; i < n; i++) {
    rc = qry_gqlm_plan(x->doc, op, fields[i], x->vars, &x->roots[i],
                       &x->err[i]);
    x->rc[i] = rc;
    x->n = i + 1; /* freed by exec_free from here on */
    if (rc == SF_EPARSE) {
      respond_errors(req, 400, &x->err[i], "GRAPHQL_VALIDATION_FAILED");
      return false;
    }
    if (rc && rc != SF_EINVAL) {
      respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
      return false;
    }
    /* logIn is the one root field that needs no session */
    if (x->roots[i].kind != QRY_GQLM_LOGIN &&
        !(x->roots[i].kind == QRY_GQLM_TYPENAME && x->mutation))
      x->needs_session = true;
  }
  if (!(x->data = json_object()) || !(x->errors = json_array())) {
    respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return false;
  }
  return true;
}

static void on_session(sf_http_req_t *req, const sf_principal_t *who,
                       void *ud) {
  exec_t *x = ud;
  x->who = who;
  if (sf_authn_store_filter(req, &x->filter) != 0) {
    respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return;
  }
  step(x);
}

/* The checks of /parse first (application id, master key); then the
 * document, so that a logIn needs no session; then the session. */
static void h_graphql(sf_http_req_t *req, void *ud) {
  qry_parse_t *p = ud;
  const char *app = sf_http_req_header(req, "X-Parse-Application-Id");
  bool master = sf_http_req_header(req, "X-Parse-Master-Key") != NULL;
  if (!qry_parse_check_app(p, req, app, master))
    return;
  exec_t *x = sf_http_req_alloc(req, sizeof(*x));
  if (!x || (memset(x, 0, sizeof(*x)), sf_http_req_on_free(req, exec_free,
                                                           x) != 0)) {
    respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return;
  }
  x->p = p;
  x->req = req;
  x->token =
      qry_parse_bare_token(sf_http_req_header(req, "X-Parse-Session-Token"));
  if (x->token && !*x->token)
    x->token = NULL;
  if (!prepare(x))
    return;
  if (x->needs_session || x->token) {
    qry_parse_session(p, req, x->token, on_session, x);
    return;
  }
  step(x);
}

int qry_graphql_register(qry_parse_t *p, sf_http_server_t *http) {
  int rc = sf_http_route(http, "POST", "/graphql", h_graphql, p);
  return rc ? rc : sf_http_route(http, "GET", "/graphql", h_graphql, p);
}

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
  qry_pq_t q; /* the root running now */
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

static void on_rows(qry_call_t *c, const PGresult *res) {
  exec_t *x = c->ext;
  qry_gqlm_root_t *r = &x->roots[x->next];
  char *text = NULL;
  size_t len = 0;
  int rc = r->kind == QRY_GQLM_LIST
               ? qry_pq_render_list(&x->q, res, &text, &len)
               : qry_pq_render_one(&x->q, res, NULL, &text, &len);
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
             : qry_gqlm_shape_viewer(x->doc, r, parse_json, x->token, &shaped);
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
  qry_call_run_sql(c, "graphql query", sql, n_params, params, on_rows);
  return true;
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
                                json_string("Query"));
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

static void on_session(sf_http_req_t *req, const sf_principal_t *who,
                       void *ud) {
  exec_t *x = ud;
  x->who = who;
  if (sf_authn_store_filter(req, &x->filter) != 0) {
    respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return;
  }
  const char *query = NULL, *op_name = NULL;
  size_t qlen = 0;
  json_t *body = NULL;
  if (!read_request(x, &query, &qlen, &op_name, &body)) {
    json_decref(body);
    return;
  }
  qry_gql_error_t e;
  int rc = qry_gql_parse(query, qlen, &x->doc, &e);
  const qry_gql_op_t *op = NULL;
  if (!rc && !(op = qry_gql_pick(x->doc, op_name, &e)))
    rc = SF_EPARSE;
  json_decref(body); /* query and op_name are not used after this */
  if (rc == SF_ENOMEM) {
    respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return;
  }
  if (rc) {
    respond_errors(req, 400, &e, "GRAPHQL_PARSE_FAILED");
    return;
  }
  if (op->kind != QRY_GQL_QUERY) {
    e.line = op->line;
    e.col = op->col;
    snprintf(e.message, sizeof(e.message), "%s",
             op->kind == QRY_GQL_MUTATION
                 ? "Mutations are not served yet: write through /parse "
                   "(docs/parse-compat.md)."
                 : "Subscriptions are not served: use LiveQuery on /parse.");
    respond_errors(req, 400, &e, "GRAPHQL_VALIDATION_FAILED");
    return;
  }
  const qry_gql_sel_t *fields[QRY_GRAPHQL_MAX_ROOTS];
  int n = qry_gqlm_roots(x->doc, op, fields, QRY_GRAPHQL_MAX_ROOTS, &e);
  if (n < 0) {
    respond_errors(req, 400, &e, "GRAPHQL_VALIDATION_FAILED");
    return;
  }
  for (int i = 0; i < n; i++) {
    rc = qry_gqlm_plan(x->doc, op, fields[i], x->vars, &x->roots[i],
                       &x->err[i]);
    x->rc[i] = rc;
    x->n = i + 1; /* freed by exec_free from here on */
    if (rc == SF_EPARSE) {
      respond_errors(req, 400, &x->err[i], "GRAPHQL_VALIDATION_FAILED");
      return;
    }
    if (rc && rc != SF_EINVAL) {
      respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
      return;
    }
  }
  if (!(x->data = json_object()) || !(x->errors = json_array())) {
    respond_message(req, 500, "out of memory", "INTERNAL_SERVER_ERROR");
    return;
  }
  step(x);
}

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
  x->token = sf_http_req_header(req, "X-Parse-Session-Token");
  qry_parse_session(p, req, x->token, on_session, x);
}

int qry_graphql_register(qry_parse_t *p, sf_http_server_t *http) {
  int rc = sf_http_route(http, "POST", "/graphql", h_graphql, p);
  return rc ? rc : sf_http_route(http, "GET", "/graphql", h_graphql, p);
}

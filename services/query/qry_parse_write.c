/* qry_parse_write: the Parse facade's writes and sign-in, sent on to the
 * command service (see qry_parse_write.h; the mapping itself is the pure
 * qry_parse_map, the per-session positions qry_parse_pos).
 *
 * Each request becomes a job that owns copies of what it needs (the
 * request's memory goes with its answer) and has at most one /v1 request
 * in flight on the shared sf_upstream client. A sign-up is two steps
 * (POST /v1/users, then POST /v1/sessions); a batch is one step per item,
 * in order. The job ends by answering its request exactly once: with the
 * result, or, when the client went away first (on_close), by canceling the
 * /v1 request and giving the dropped answer the server still needs. On
 * close, the upstream client fails what is in flight with SF_ECANCELED,
 * which answers 503 code 100 through the same path. */
#include "qry_parse_write.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qry_parse_map.h"
#include "qry_parse_pos.h"
#include "sf/err.h"
#include "sf/json.h"
#include "sf/upstream.h"

#define UPSTREAM_TIMEOUT_MS 10000
#define UPSTREAM_MAX_BODY (1024 * 1024)
#define POSITION_SESSIONS 10000
#define POSITION_TTL_MS 60000
#define BATCH_MAX 50
#define HEADER_MAX 320
#define TOKEN_MAX 255

typedef struct job job_t;

struct qry_parse_writes {
  uv_loop_t *loop;
  sf_log_t *log;
  char *base_url; /* without a trailing '/' */
  sf_upstream_t *up;
  qry_parse_pos_t *pos;
  bool closing;
  void (*done)(void *ud);
  void *done_ud;
};

struct job {
  qry_parse_writes_t *w;
  sf_http_req_t *req;
  qry_parse_write_cb cb; /* set: the answer goes there, not to req */
  void *cb_ud;
  qry_parse_op_t op;
  char *token;      /* the caller's session token, or NULL */
  char *request_id; /* X-Parse-Request-Id, or NULL */
  char real_ip[64]; /* the client's address, for the login limiter */
  char http_id[64]; /* X-Request-Id, to follow a request across services */
  sf_upstream_req_t *up;
  qry_parse_v1_t v1; /* the step in flight */
  json_t *login;     /* sign-up: {username, password} for its step 2 */
  bool signup_user;  /* sign-up: step 1 (POST /v1/users) in flight */
  /* batch */
  json_t *items;   /* the requests array */
  json_t *results; /* one entry per item done */
  size_t index;
};

/* ---- answers ---- */

static void job_free(job_t *j) {
  free(j->token);
  free(j->request_id);
  json_decref(j->v1.body);
  json_decref(j->login);
  json_decref(j->items);
  json_decref(j->results);
  free(j);
}

/* An error answer: to the request, or to cb (qry_parse_writes_call). */
static void answer_error(sf_http_req_t *req, qry_parse_write_cb cb, void *ud,
                         int status, int code, const char *message,
                         const char *retry_after) {
  if (!cb) {
    qry_parse_error_retry(req, status, code, message, retry_after);
    return;
  }
  /* The caller (GraphQL) answers req in its own shape; the advice to retry
   * stays on it. */
  if (retry_after)
    (void)sf_http_add_header(req, "Retry-After", retry_after);
  cb(ud, status, qry_parse_error_body(code, message));
}

/* The job's final answer: exactly once, then the job is gone. */
static void job_answer(job_t *j, int status, json_t *body) {
  if (j->cb) {
    sf_http_req_on_close(j->req, NULL, NULL);
    j->cb(j->cb_ud, status, body);
  } else {
    sf_http_respond_json(j->req, status, body);
  }
  job_free(j);
}

static void job_fail(job_t *j, const qry_parse_fault_t *f,
                     const char *retry_after) {
  if (j->cb)
    sf_http_req_on_close(j->req, NULL, NULL);
  answer_error(j->req, j->cb, j->cb_ud, f->status, f->code, f->message,
               retry_after);
  job_free(j);
}

static void client_gone_cb(sf_http_req_t *req, void *ud) {
  job_t *j = ud;
  sf_upstream_cancel(j->up);
  j->up = NULL;
  if (j->cb) /* its caller answers (dropped) */
    answer_error(req, j->cb, j->cb_ud, 503, QRY_PARSE_CONNECTION_FAILED,
                 "request canceled", NULL);
  else
    sf_http_respond(req, 503, "text/plain", "", 0); /* dropped */
  job_free(j);
}

/* ---- sending ---- */

static bool printable(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n]; n++)
    if (n >= max || s[n] < 0x21 || s[n] > 0x7e)
      return false;
  return n > 0;
}

static void upstream_cb(const sf_upstream_res_t *res, void *ud);

/* Sends j->v1 with idem_key (may be NULL). Returns 0, or an SF_E code with
 * the job untouched. */
static int job_send(job_t *j, const char *idem_key, bool bearer) {
  qry_parse_writes_t *w = j->w;
  if (w->closing)
    return SF_ESTATE;
  char url[512];
  int n = snprintf(url, sizeof(url), "%s%s", w->base_url, j->v1.path);
  if (n < 0 || (size_t)n >= sizeof(url))
    return SF_EINVAL;
  char hdr[5][HEADER_MAX];
  const char *hdrs[5];
  size_t nh = 0;
  snprintf(hdr[nh], HEADER_MAX, "Content-Type: application/json");
  hdrs[nh] = hdr[nh];
  nh++;
  if (bearer && j->token) {
    snprintf(hdr[nh], HEADER_MAX, "Authorization: Bearer %s", j->token);
    hdrs[nh] = hdr[nh];
    nh++;
  }
  if (idem_key) {
    snprintf(hdr[nh], HEADER_MAX, "Idempotency-Key: %s", idem_key);
    hdrs[nh] = hdr[nh];
    nh++;
  }
  if (j->real_ip[0]) {
    snprintf(hdr[nh], HEADER_MAX, "X-Real-IP: %s", j->real_ip);
    hdrs[nh] = hdr[nh];
    nh++;
  }
  if (j->http_id[0]) {
    snprintf(hdr[nh], HEADER_MAX, "X-Request-Id: %s", j->http_id);
    hdrs[nh] = hdr[nh];
    nh++;
  }
  char *body = j->v1.body ? sf_json_dumps(j->v1.body) : NULL;
  if (j->v1.body && !body)
    return SF_ENOMEM;
  sf_upstream_call_t call = {.method = j->v1.method,
                             .url = url,
                             .headers = hdrs,
                             .n_headers = nh,
                             .body = body,
                             .body_len = body ? strlen(body) : 0,
                             .timeout_ms = UPSTREAM_TIMEOUT_MS,
                             /* Several command instances: the one asked
                              * names the store's owner (307). */
                             .max_redirects = 1};
  int rc = sf_upstream_send(w->up, &call, upstream_cb, j, &j->up);
  free(body);
  if (rc != 0)
    SF_WARN(w->log, "parse", "%s %s not sent: %s", j->v1.method, j->v1.path,
            sf_strerror(rc));
  return rc;
}

static void unavailable(qry_parse_fault_t *f, int err) {
  f->status = 503;
  f->code = QRY_PARSE_CONNECTION_FAILED;
  snprintf(f->message, sizeof(f->message),
           err == SF_ETIMEOUT
               ? "the command service did not answer in time; retry with the "
                 "same X-Parse-Request-Id"
               : "the command service is unavailable; retry");
}

/* The outcome of one /v1 call in Parse's terms: true with *answer (new
 * reference) and *status, or false with *f (and *retry_after). */
static bool outcome(job_t *j, const sf_upstream_res_t *res, json_t **answer,
                    int *status, qry_parse_fault_t *f,
                    const char **retry_after) {
  qry_parse_writes_t *w = j->w;
  *answer = NULL;
  *retry_after = NULL;
  if (res->err) {
    if (res->err == SF_ETOOBIG) {
      f->status = 500;
      f->code = QRY_PARSE_INTERNAL_SERVER_ERROR;
      snprintf(f->message, sizeof(f->message), "answer too large");
    } else {
      unavailable(f, res->err);
      *retry_after = "1";
    }
    SF_WARN(w->log, "parse", "%s %s: %s", j->v1.method, j->v1.path,
            sf_strerror(res->err));
    return false;
  }
  json_t *v1 = NULL;
  if (res->body_len)
    v1 = json_loadb(res->body, res->body_len, 0, NULL);
  if (res->status < 200 || res->status > 299) {
    qry_parse_map_problem(res->status,
                          json_string_value(json_object_get(v1, "code")),
                          json_string_value(json_object_get(v1, "detail")),
                          j->op == QRY_PARSE_LOGIN, f);
    if (f->code == QRY_PARSE_CONNECTION_FAILED)
      *retry_after = res->retry_after ? res->retry_after : "1";
    else if (f->code == QRY_PARSE_REQUEST_LIMIT_EXCEEDED)
      *retry_after = res->retry_after;
    json_decref(v1);
    return false;
  }
  if (!v1 && res->status == 204)
    v1 = json_object();
  const char *token = NULL;
  if (j->v1.shape == QRY_PARSE_SHAPE_SIGNUP ||
      j->v1.shape == QRY_PARSE_SHAPE_LOGIN)
    token = json_string_value(json_object_get(v1, "token"));
  char now[32] = "";
  if (j->v1.shape == QRY_PARSE_SHAPE_SIGNUP) {
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) == 0) {
      char rfc[40];
      sf_json_format_time(tv.tv_sec * 1000000 + tv.tv_usec, rfc, sizeof(rfc));
      qry_parse_map_iso(rfc, now);
    }
  }
  *answer = qry_parse_map_answer(j->v1.shape, v1, token, now[0] ? now : NULL,
                                 status);
  const char *position = json_string_value(json_object_get(v1, "position"));
  if (*answer && position && j->token) {
    int rc = qry_parse_pos_put(w->pos, j->token, position, uv_now(w->loop));
    if (rc != 0)
      SF_WARN(w->log, "parse", "position %s not remembered: %s", position,
              sf_strerror(rc));
  }
  json_decref(v1);
  if (!*answer) {
    SF_ERROR(w->log, "parse", "%s %s answered %d without the fields needed",
             j->v1.method, j->v1.path, res->status);
    f->status = 500;
    f->code = QRY_PARSE_INTERNAL_SERVER_ERROR;
    snprintf(f->message, sizeof(f->message), "unexpected answer");
    return false;
  }
  return true;
}

/* ---- batch ---- */

static void batch_next(job_t *j);

static void batch_record(job_t *j, json_t *answer, const qry_parse_fault_t *f) {
  json_t *entry =
      answer ? json_pack("{s:o}", "success", answer)
             : json_pack("{s:o}", "error",
                         qry_parse_error_body(f->code, f->message));
  json_array_append_new(j->results, entry);
  j->index++;
}

/* Runs items from j->index until one is in flight, or answers the batch. */
static void batch_next(job_t *j) {
  while (j->index < json_array_size(j->items)) {
    json_t *item = json_array_get(j->items, j->index);
    qry_parse_op_t op;
    char cls[64], id[128];
    json_t *body = NULL;
    qry_parse_fault_t f;
    json_decref(j->v1.body);
    j->v1.body = NULL;
    if (!qry_parse_map_batch_item(item, &op, cls, sizeof(cls), id, sizeof(id),
                                  &body, &f) ||
        !qry_parse_map_write(op, cls, op == QRY_PARSE_CREATE ? NULL : id, body,
                             &j->v1, &f)) {
      json_decref(body);
      batch_record(j, NULL, &f);
      continue;
    }
    json_decref(body);
    char key[HEADER_MAX];
    if (j->request_id)
      snprintf(key, sizeof(key), "%s-%zu", j->request_id, j->index);
    int rc = job_send(j, j->request_id ? key : NULL, true);
    if (rc == 0)
      return;
    /* Not sent: the service is closing or out of memory; the rest of the
     * batch would fail alike. */
    unavailable(&f, rc);
    job_fail(j, &f, "1");
    return;
  }
  json_t *results = j->results;
  j->results = NULL;
  job_answer(j, 200, results);
}

/* ---- the /v1 answers ---- */

static void upstream_cb(const sf_upstream_res_t *res, void *ud) {
  job_t *j = ud;
  j->up = NULL;
  json_t *answer;
  int status = 0;
  qry_parse_fault_t f;
  const char *retry_after;
  bool ok = outcome(j, res, &answer, &status, &f, &retry_after);
  if (j->op == QRY_PARSE_BATCH) {
    batch_record(j, ok ? answer : NULL, &f);
    batch_next(j);
    return;
  }
  if (ok && j->signup_user) {
    /* Step 2 of a sign-up: the new user's first session. */
    j->signup_user = false;
    json_decref(answer);
    json_decref(j->v1.body);
    j->v1.body = NULL;
    qry_parse_map_login(
        json_string_value(json_object_get(j->login, "username")),
        json_string_value(json_object_get(j->login, "password")), &j->v1, &f);
    j->v1.shape = QRY_PARSE_SHAPE_SIGNUP;
    int rc = job_send(j, NULL, false);
    if (rc != 0) {
      unavailable(&f, rc);
      job_fail(j, &f, "1");
    }
    return;
  }
  if (ok)
    job_answer(j, status, answer);
  else
    job_fail(j, &f, retry_after);
}

/* ---- requests ---- */

static const char *param_string(const qry_parse_req_t *pr, const char *key) {
  const char *v = json_string_value(json_object_get(pr->body, key));
  return v ? v : json_string_value(json_object_get(pr->params, key));
}

/* The address the command service's login limiter counts: the client's,
 * or, when the peer is a local proxy (the gateway), the one it names. */
static void client_address(sf_http_req_t *req, char *out, size_t cap) {
  char peer[64];
  out[0] = '\0';
  if (sf_http_req_peer(req, peer, sizeof(peer)) != 0)
    return;
  const char *real = sf_http_req_header(req, "X-Real-IP");
  bool local = strcmp(peer, "127.0.0.1") == 0 || strcmp(peer, "::1") == 0;
  snprintf(out, cap, "%s",
           local && real && printable(real, 45) ? real : peer);
}

/* Builds j's first step; false with *f set when the request is refused
 * before anything is sent. */
static bool first_step(job_t *j, qry_parse_req_t *pr, const char *class_name,
                       const char *object_id, qry_parse_fault_t *f) {
  switch (j->op) {
  case QRY_PARSE_SIGNUP:
    if (!qry_parse_map_signup(pr->body, &j->v1, f))
      return false;
    /* Step 1 of 2; its answer (the user) only has to be a success. */
    j->v1.shape = QRY_PARSE_SHAPE_DELETED;
    j->signup_user = true;
    j->login = json_pack(
        "{s:O, s:O}", "username", json_object_get(j->v1.body, "username"),
        "password", json_object_get(j->v1.body, "password"));
    return j->login != NULL;
  case QRY_PARSE_LOGIN:
    return qry_parse_map_login(param_string(pr, "username"),
                               param_string(pr, "password"), &j->v1, f);
  case QRY_PARSE_LOGOUT:
    if (!j->token) {
      f->status = 400;
      f->code = QRY_PARSE_INVALID_SESSION_TOKEN;
      snprintf(f->message, sizeof(f->message), "Invalid session token");
      return false;
    }
    qry_parse_map_logout(&j->v1);
    return true;
  case QRY_PARSE_CREATE:
  case QRY_PARSE_UPDATE:
  case QRY_PARSE_DELETE:
    return qry_parse_map_write(j->op, class_name, object_id, pr->body, &j->v1,
                               f);
  case QRY_PARSE_BATCH: {
    json_t *reqs = json_object_get(pr->body, "requests");
    if (!json_is_array(reqs)) {
      f->status = 400;
      f->code = QRY_PARSE_INVALID_JSON;
      snprintf(f->message, sizeof(f->message),
               "requests must be an array of {method, path, body}");
      return false;
    }
    if (json_array_size(reqs) > BATCH_MAX) {
      f->status = 400;
      f->code = QRY_PARSE_INVALID_JSON;
      snprintf(f->message, sizeof(f->message),
               "a batch takes at most %d requests", BATCH_MAX);
      return false;
    }
    j->items = json_incref(reqs);
    j->results = json_array();
    return j->results != NULL;
  }
  }
  return false;
}

static void start(qry_parse_writes_t *w, qry_parse_req_t *pr,
                  qry_parse_op_t op, const char *class_name,
                  const char *object_id, qry_parse_write_cb cb, void *ud) {
  sf_http_req_t *req = pr->req;
  const char *token = pr->session_token && *pr->session_token
                          ? pr->session_token
                          : NULL;
  if (w->closing) {
    answer_error(req, cb, ud, 503, QRY_PARSE_CONNECTION_FAILED,
                 "service shutting down", "1");
    return;
  }
  if (token && !printable(token, TOKEN_MAX)) {
    answer_error(req, cb, ud, 400, QRY_PARSE_INVALID_SESSION_TOKEN,
                 "Invalid session token", NULL);
    return;
  }
  if (pr->request_id && !printable(pr->request_id, 200)) {
    answer_error(req, cb, ud, 400, QRY_PARSE_VALIDATION_ERROR,
                 "X-Parse-Request-Id must be 1 to 200 printable characters",
                 NULL);
    return;
  }
  job_t *j = calloc(1, sizeof(*j));
  if (!j ||
      (token && !(j->token = strdup(token))) ||
      (pr->request_id && !(j->request_id = strdup(pr->request_id)))) {
    SF_ERROR(w->log, "parse", "out of memory for a write");
    if (j)
      job_free(j);
    answer_error(req, cb, ud, 500, QRY_PARSE_INTERNAL_SERVER_ERROR,
                 "out of memory", NULL);
    return;
  }
  j->w = w;
  j->req = req;
  j->cb = cb;
  j->cb_ud = ud;
  j->op = op;
  snprintf(j->http_id, sizeof(j->http_id), "%s", sf_http_req_id(req));
  if (op == QRY_PARSE_LOGIN || op == QRY_PARSE_SIGNUP)
    client_address(req, j->real_ip, sizeof(j->real_ip));
  qry_parse_fault_t f;
  if (!first_step(j, pr, class_name, object_id, &f)) {
    job_fail(j, &f, NULL);
    return;
  }
  sf_http_req_on_close(req, client_gone_cb, j);
  if (op == QRY_PARSE_BATCH) {
    batch_next(j);
    return;
  }
  /* Sign-in carries no bearer token; writes carry the caller's. */
  bool bearer = op != QRY_PARSE_SIGNUP && op != QRY_PARSE_LOGIN;
  bool keyed = op == QRY_PARSE_CREATE || op == QRY_PARSE_UPDATE ||
               op == QRY_PARSE_DELETE;
  int rc = job_send(j, keyed ? j->request_id : NULL, bearer);
  if (rc != 0) {
    unavailable(&f, rc);
    job_fail(j, &f, "1");
  }
}

void qry_parse_writes_handle(qry_parse_writes_t *w, qry_parse_req_t *pr,
                             qry_parse_op_t op, const char *class_name,
                             const char *object_id) {
  start(w, pr, op, class_name, object_id, NULL, NULL);
}

void qry_parse_writes_call(qry_parse_writes_t *w, qry_parse_req_t *pr,
                           qry_parse_op_t op, const char *class_name,
                           const char *object_id, qry_parse_write_cb cb,
                           void *ud) {
  start(w, pr, op, class_name, object_id, cb, ud);
}

const char *qry_parse_writes_position(qry_parse_writes_t *w,
                                      const char *session_token) {
  if (!w || !session_token)
    return NULL;
  return qry_parse_pos_get(w->pos, session_token, uv_now(w->loop));
}

/* ---- lifecycle ---- */

int qry_parse_writes_new(qry_parse_writes_t **out, uv_loop_t *loop,
                         const char *command_url, sf_log_t *log) {
  *out = NULL;
  if (!loop || !command_url ||
      (strncmp(command_url, "http://", 7) != 0 &&
       strncmp(command_url, "https://", 8) != 0)) {
    SF_ERROR(log, "parse", "the command service's URL must be http(s)://...");
    return SF_EINVAL;
  }
  qry_parse_writes_t *w = calloc(1, sizeof(*w));
  if (!w)
    return SF_ENOMEM;
  w->loop = loop;
  w->log = log;
  int rc = SF_ENOMEM;
  if (!(w->base_url = strdup(command_url)))
    goto fail_url;
  size_t n = strlen(w->base_url);
  while (n && w->base_url[n - 1] == '/')
    w->base_url[--n] = '\0';
  rc = qry_parse_pos_new(&w->pos, POSITION_SESSIONS, POSITION_TTL_MS);
  if (rc != 0)
    goto fail_pos;
  rc = sf_upstream_new(&w->up, loop, UPSTREAM_MAX_BODY, log);
  if (rc != 0)
    goto fail_up;
  *out = w;
  return 0;

fail_up:
  qry_parse_pos_destroy(w->pos);
fail_pos:
  free(w->base_url);
fail_url:
  free(w);
  SF_ERROR(log, "parse", "write side not created: %s", sf_strerror(rc));
  return rc;
}

static void upstream_closed_cb(void *ud) {
  qry_parse_writes_t *w = ud;
  void (*done)(void *) = w->done;
  void *done_ud = w->done_ud;
  sf_upstream_destroy(w->up);
  qry_parse_pos_destroy(w->pos);
  free(w->base_url);
  free(w);
  if (done)
    done(done_ud);
}

void qry_parse_writes_close(qry_parse_writes_t *w, void (*done)(void *ud),
                            void *ud) {
  if (w->closing)
    return;
  w->closing = true;
  w->done = done;
  w->done_ud = ud;
  /* Requests in flight fail with SF_ECANCELED: answered 503 code 100. */
  sf_upstream_close(w->up, upstream_closed_cb, w);
}

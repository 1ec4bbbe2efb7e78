/* http: HTTP/1.1 server on libuv with llhttp doing all the parsing (see
 * sf/http.h for the contract; routing, decoding and metrics live in
 * http_router.c).
 *
 * A connection parses with llhttp until a request is complete, then pauses
 * the parser (on_message_complete returns HPE_PAUSED) and hands the request
 * to its handler. Bytes that arrive meanwhile are buffered (up to
 * PIPELINE_CAP, then reading stops) and parsed once the answer is queued, so
 * pipelined requests are answered in order. Reading continues while a
 * request is pending so that a disconnect is seen and the request canceled.
 *
 * Lifetimes: a connection holds one reference per open uv handle (TCP and
 * timer) and one while a request is dispatched. It is freed when the last
 * reference goes: in a close callback, or when a canceled request is finally
 * answered; never inside its own read callback. Requests own an arena of
 * chunks for everything derived from them.
 *
 * Out-of-memory policy: whatever a connection cannot allocate closes that
 * connection (a pending request is canceled); other connections go on.
 * Public functions that allocate report SF_ENOMEM or NULL. */
#include "sf/http.h"
#include "sf/err.h"
#include "sf/http_router.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define READ_CHUNK 16384
#define PIPELINE_CAP 65536 /* buffered bytes while a request is handled */
#define ARENA_CHUNK 4096
#define LINGER_MS 1000 /* draining after the last answer before close */
#define MODULE "http"

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t used, cap;
  max_align_t data[]; /* cap bytes */
} arena_chunk_t;

typedef struct gbuf {
  char *p;
  size_t len, cap;
} gbuf_t;

typedef struct resp_header {
  struct resp_header *next;
  const char *text; /* "Name: value\r\n", request memory */
} resp_header_t;

typedef struct conn conn_t;

/* A function to run when a request is freed (sf_http_req_on_free). */
typedef struct req_cleanup {
  struct req_cleanup *next;
  void (*fn)(void *ud);
  void *ud;
} req_cleanup_t;

struct sf_http_req {
  sf_http_server_t *srv;
  req_cleanup_t *cleanups; /* in the arena; run newest first */
  conn_t *conn;            /* the connection stays allocated while the request lives */
  arena_chunk_t *arena;
  /* Parse accumulators (owned, malloc'd). */
  gbuf_t url, hfield, hvalue, body;
  size_t header_bytes;
  sf__http_kv_t *headers; /* owned array; strings in the arena */
  size_t nheaders, capheaders;
  size_t max_body; /* the limit for this request, set with the headers */
  /* Set at dispatch; strings in the arena or static. */
  const char *method;
  char *path;
  const char *route;
  sf__http_kv_t *params, *query;
  size_t nparams, nquery;
  char id[72];
  bool keep_alive, http10, head, canceled, streaming;
  sf_http_close_cb close_cb;
  sf_http_data_cb data_cb; /* set by sf_http_upgrade: peer bytes go here */
  void *data_ud;
  void *close_ud;
  void *data;
  resp_header_t *rh_head, **rh_tail;
  uint64_t start_ns;
  sf__http_stats_t *stats;
};

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  sf_http_server_t *srv;
  conn_t *prev, *next;
  llhttp_t parser;
  char *in; /* received bytes not yet parsed */
  size_t in_len, in_cap;
  sf_http_req_t *parsing; /* owned: the request being parsed */
  sf_http_req_t *active;  /* dispatched, not yet answered (holds a ref) */
  int refs;
  int err_status; /* set by a parser callback: 413 or 431; -1 = no memory */
  unsigned served;
  bool headers_done, closing, close_after_flush, reading, in_process, eof;
  uv_shutdown_t shutdown_req;
};

/* A body limit of its own for one exact method and path. */
typedef struct body_limit {
  char method[16];
  char path[128];
  size_t max_body;
} body_limit_t;

#define SF__HTTP_MAX_BODY_LIMITS 8

struct sf_http_server {
  uv_loop_t *loop;
  sf_http_limits_t lim;
  body_limit_t body_limits[SF__HTTP_MAX_BODY_LIMITS];
  size_t n_body_limits;
  sf_log_t *log;
  llhttp_settings_t settings;
  sf__http_router_t *router;
  uv_tcp_t listener;
  uv_timer_t done_timer; /* closed at once: gives done a loop callback */
  bool listener_init, listener_closed, done_timer_closed;
  bool closing, done_fired;
  sf_http_done_cb done_cb;
  void *done_ud;
  conn_t *conns;
  size_t nconns;
  int port;
  char id_prefix[17];
  uint64_t id_counter;
};

static void conn_close(conn_t *c);
static void conn_process(conn_t *c);
static void conn_arm(conn_t *c);
static int conn_start_read(conn_t *c);

/* ---- small helpers ---- */

static int gbuf_append(gbuf_t *b, const char *p, size_t n) {
  if (b->cap - b->len < n + 1) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q)
      return SF_ENOMEM;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

static void gbuf_free(gbuf_t *b) {
  free(b->p);
  *b = (gbuf_t){0};
}

static char *req_strndup(sf_http_req_t *r, const char *s, size_t n) {
  char *d = sf_http_req_alloc(r, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

void sf_http_limits_default(sf_http_limits_t *l) {
  l->max_body = 65536;
  l->max_header_bytes = 16384;
  l->max_headers = 64;
  l->header_timeout_ms = 10000;
  l->idle_timeout_ms = 60000;
  l->max_connections = 10000;
}

const char *sf_http_status_text(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Entity";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

/* ---- requests ---- */

static sf_http_req_t *req_new(conn_t *c) {
  sf_http_req_t *r = calloc(1, sizeof(*r));
  if (!r)
    return NULL;
  r->srv = c->srv;
  r->conn = c;
  r->method = "UNKNOWN";
  r->route = "";
  r->rh_tail = &r->rh_head;
  return r;
}

static void req_free(sf_http_req_t *r) {
  for (req_cleanup_t *cl = r->cleanups; cl; cl = cl->next)
    cl->fn(cl->ud);
  arena_chunk_t *ch = r->arena;
  while (ch) {
    arena_chunk_t *next = ch->next;
    free(ch);
    ch = next;
  }
  gbuf_free(&r->url);
  gbuf_free(&r->hfield);
  gbuf_free(&r->hvalue);
  gbuf_free(&r->body);
  free(r->headers);
  free(r);
}

void *sf_http_req_alloc(sf_http_req_t *r, size_t size) {
  const size_t align = alignof(max_align_t);
  if (size > SIZE_MAX / 2)
    return NULL;
  size = (size + align - 1) / align * align;
  if (size == 0)
    size = align;
  arena_chunk_t *ch = r->arena;
  if (!ch || ch->cap - ch->used < size) {
    size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
    ch = malloc(sizeof(*ch) + cap);
    if (!ch)
      return NULL;
    ch->cap = cap;
    ch->used = 0;
    /* Keep the chunk with more room first; big one-offs go behind it. */
    if (r->arena && size > ARENA_CHUNK) {
      ch->next = r->arena->next;
      r->arena->next = ch;
    } else {
      ch->next = r->arena;
      r->arena = ch;
    }
  }
  void *p = (char *)ch->data + ch->used;
  ch->used += size;
  return p;
}

const char *sf_http_req_method(const sf_http_req_t *r) { return r->method; }
const char *sf_http_req_path(const sf_http_req_t *r) {
  return r->path ? r->path : "";
}
const char *sf_http_req_route(const sf_http_req_t *r) { return r->route; }

static const char *kv_find(const sf__http_kv_t *kv, size_t n, const char *name,
                           bool nocase) {
  for (size_t i = 0; i < n; i++)
    if ((nocase ? strcasecmp(kv[i].name, name) : strcmp(kv[i].name, name)) ==
        0)
      return kv[i].value;
  return NULL;
}

const char *sf_http_req_param(const sf_http_req_t *r, const char *name) {
  return kv_find(r->params, r->nparams, name, false);
}
const char *sf_http_req_query(const sf_http_req_t *r, const char *name) {
  return kv_find(r->query, r->nquery, name, false);
}
const char *sf_http_req_header(const sf_http_req_t *r, const char *name) {
  return kv_find(r->headers, r->nheaders, name, true);
}

const char *sf_http_req_body(const sf_http_req_t *r, size_t *len) {
  if (len)
    *len = r->body.len;
  return r->body.p ? r->body.p : "";
}

const char *sf_http_req_id(const sf_http_req_t *r) { return r->id; }

bool sf_http_req_is_json(const sf_http_req_t *r) {
  const char *ct = sf_http_req_header(r, "Content-Type");
  if (!ct)
    return false;
  size_t n = strcspn(ct, "; \t");
  return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

bool sf_http_req_canceled(const sf_http_req_t *r) { return r->canceled; }

int sf_http_req_peer(const sf_http_req_t *r, char *out, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (cap)
    out[0] = '\0';
  if (uv_tcp_getpeername(&r->conn->tcp, (struct sockaddr *)&ss, &len) != 0)
    return SF_EIO;
  int rc = ss.ss_family == AF_INET6
               ? uv_ip6_name((const struct sockaddr_in6 *)&ss, out, cap)
               : uv_ip4_name((const struct sockaddr_in *)&ss, out, cap);
  return rc == 0 ? 0 : SF_EIO;
}
void sf_http_req_set_data(sf_http_req_t *r, void *data) { r->data = data; }
void *sf_http_req_data(const sf_http_req_t *r) { return r->data; }

int sf_http_req_on_free(sf_http_req_t *r, void (*fn)(void *ud), void *ud) {
  if (!fn)
    return SF_EINVAL;
  req_cleanup_t *cl = sf_http_req_alloc(r, sizeof(*cl));
  if (!cl)
    return SF_ENOMEM;
  cl->fn = fn;
  cl->ud = ud;
  cl->next = r->cleanups;
  r->cleanups = cl;
  return 0;
}

void sf_http_req_on_close(sf_http_req_t *r, sf_http_close_cb cb, void *ud) {
  r->close_cb = cb;
  r->close_ud = ud;
}

static bool valid_request_id(const char *s) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return n >= 1 && n <= 64;
}

static void req_set_id(sf_http_req_t *r) {
  const char *h = sf_http_req_header(r, "X-Request-Id");
  if (h && valid_request_id(h)) {
    snprintf(r->id, sizeof(r->id), "%s", h);
    return;
  }
  snprintf(r->id, sizeof(r->id), "%s-%llu", r->srv->id_prefix,
           (unsigned long long)++r->srv->id_counter);
}

/* ---- connection plumbing ---- */

/* Fires done once the server is closing and nothing is left open. done may
 * destroy the server, so callers touch nothing after this. */
static void server_maybe_done(sf_http_server_t *s) {
  if (s->closing && !s->done_fired && s->listener_closed &&
      s->done_timer_closed && s->nconns == 0) {
    s->done_fired = true;
    if (s->done_cb)
      s->done_cb(s->done_ud);
  }
}

static void conn_unref(conn_t *c) {
  if (--c->refs > 0)
    return;
  sf_http_server_t *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  free(c->in);
  free(c);
  server_maybe_done(s); /* may destroy s: nothing after this */
}

/* Ends the request's claim on its connection and frees it. */
static void req_release(sf_http_req_t *r) {
  conn_t *c = r->conn;
  if (c->active == r)
    c->active = NULL;
  req_free(r);
  conn_unref(c);
}

static void handle_close_cb(uv_handle_t *h) { conn_unref(h->data); }

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->parsing) {
    req_free(c->parsing);
    c->parsing = NULL;
  }
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, handle_close_cb);
  uv_close((uv_handle_t *)&c->tcp, handle_close_cb);
  sf_http_req_t *r = c->active;
  if (r && !r->canceled) {
    r->canceled = true;
    sf_http_close_cb cb = r->close_cb;
    r->close_cb = NULL;
    if (cb)
      cb(r, r->close_ud); /* may answer: r is then gone */
  }
}

static void timer_cb(uv_timer_t *t) {
  conn_t *c = t->data;
  SF_DEBUG(c->srv->log, MODULE, "closing connection: %s",
           c->close_after_flush ? "flush timed out"
           : c->parsing         ? "request timed out"
                                : "idle");
  conn_close(c);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  conn_t *c = req->handle->data;
  if (c->closing)
    return;
  if (status < 0 || c->eof) {
    conn_close(c);
    return;
  }
  /* Lingering close: keep reading (and discarding) until the peer closes or
   * a short time passes, so that unread request bytes do not make the
   * kernel reset the connection before the peer reads our answer. */
  uint64_t linger = c->srv->lim.idle_timeout_ms < LINGER_MS
                        ? c->srv->lim.idle_timeout_ms
                        : LINGER_MS;
  uv_timer_start(&c->timer, timer_cb, linger, 0);
}

/* Sends what is queued, then shuts the write side and closes. */
static void conn_close_after_flush(conn_t *c) {
  if (c->close_after_flush || c->closing)
    return;
  c->close_after_flush = true;
  if (!c->reading && !c->eof && conn_start_read(c) != 0) {
    conn_close(c);
    return;
  }
  int rc = uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb);
  if (rc != 0) {
    conn_close(c);
    return;
  }
  /* A peer that never reads must not hold the connection forever. */
  uv_timer_start(&c->timer, timer_cb, c->srv->lim.idle_timeout_ms, 0);
}

typedef struct wreq {
  uv_write_t req;
  conn_t *c;
  sf_http_done_cb done; /* shared writes: fires once the bytes are gone */
  void *done_ud;
  char data[];
} wreq_t;

/* Write callbacks also run (with UV_ECANCELED) while the TCP handle closes,
 * before its close callback, so c is still allocated here. */
static void write_cb(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_t *c = w->c;
  sf_http_done_cb done = w->done;
  void *done_ud = w->done_ud;
  free(w);
  if (!c->closing && status < 0) {
    SF_DEBUG(c->srv->log, MODULE, "write failed: %s", uv_strerror(status));
    conn_close(c);
  }
  if (done)
    done(done_ud);
}

/* Queues len bytes of data (borrowed until done fires) on the connection.
 * On failure the connection is closed, done does not fire and SF_ENOMEM /
 * SF_EIO is returned. */
static int conn_write_shared(conn_t *c, const char *data, size_t len,
                             sf_http_done_cb done, void *ud) {
  wreq_t *w = malloc(sizeof(*w));
  if (!w) {
    conn_close(c);
    return SF_ENOMEM;
  }
  w->c = c;
  w->done = done;
  w->done_ud = ud;
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
  if (rc < 0) {
    free(w);
    SF_DEBUG(c->srv->log, MODULE, "write failed: %s", uv_strerror(rc));
    conn_close(c);
    return SF_EIO;
  }
  return 0;
}

/* Queues a then b (copied) on the connection. On failure the connection is
 * closed and SF_ENOMEM / SF_EIO returned. */
static int conn_write(conn_t *c, const char *a, size_t alen, const char *b,
                      size_t blen) {
  wreq_t *w = malloc(sizeof(*w) + alen + blen);
  if (!w) {
    conn_close(c);
    return SF_ENOMEM;
  }
  w->c = c;
  w->done = NULL;
  w->done_ud = NULL;
  memcpy(w->data, a, alen);
  if (blen)
    memcpy(w->data + alen, b, blen);
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)(alen + blen));
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
  if (rc < 0) {
    free(w);
    SF_DEBUG(c->srv->log, MODULE, "write failed: %s", uv_strerror(rc));
    conn_close(c);
    return SF_EIO;
  }
  return 0;
}

/* ---- answering ---- */

static double elapsed_s(const sf_http_req_t *r) {
  return (double)(uv_hrtime() - r->start_ns) / 1e9;
}

/* Builds status line and headers. Returns 0 or SF_ENOMEM. */
static int build_head(sf_http_req_t *r, gbuf_t *g, int status,
                      const char *ctype, bool has_length, size_t len,
                      bool keep, const char *upgrade) {
  char line[256];
  int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status,
                   sf_http_status_text(status));
  int rc = gbuf_append(g, line, (size_t)n);
  if (rc == 0 && ctype && *ctype) {
    rc = gbuf_append(g, "Content-Type: ", 14);
    if (rc == 0)
      rc = gbuf_append(g, ctype, strlen(ctype));
    if (rc == 0)
      rc = gbuf_append(g, "\r\n", 2);
  }
  if (rc == 0 && has_length) {
    n = snprintf(line, sizeof(line), "Content-Length: %zu\r\n", len);
    rc = gbuf_append(g, line, (size_t)n);
  }
  if (rc == 0) {
    n = snprintf(line, sizeof(line), "X-Request-Id: %s\r\n", r->id);
    rc = gbuf_append(g, line, (size_t)n);
  }
  for (resp_header_t *h = r->rh_head; rc == 0 && h; h = h->next)
    rc = gbuf_append(g, h->text, strlen(h->text));
  if (rc == 0 && upgrade) {
    n = snprintf(line, sizeof(line), "Upgrade: %s\r\nConnection: Upgrade\r\n",
                 upgrade);
    rc = gbuf_append(g, line, (size_t)n);
  } else if (rc == 0 && !keep)
    rc = gbuf_append(g, "Connection: close\r\n", 19);
  else if (rc == 0 && r->http10)
    rc = gbuf_append(g, "Connection: keep-alive\r\n", 24);
  if (rc == 0)
    rc = gbuf_append(g, "\r\n", 2);
  return rc;
}

void sf_http_respond(sf_http_req_t *r, int status, const char *content_type,
                     const char *body, size_t len) {
  conn_t *c = r->conn;
  if (r->streaming) {
    sf_http_stream_end(r); /* misuse: end the stream rather than hang */
    return;
  }
  if (r->canceled || c->closing) {
    req_release(r); /* the answer is dropped */
    return;
  }
  if (status < 100 || status > 999)
    status = 500;
  bool no_body = status == 204 || status == 304 || status < 200;
  bool keep = r->keep_alive && !r->srv->closing;
  gbuf_t g = {0};
  if (build_head(r, &g, status, no_body ? NULL : content_type, !no_body,
                 no_body ? 0 : len, keep, NULL) != 0) {
    gbuf_free(&g);
    conn_close(c);
    req_release(r);
    return;
  }
  if (no_body || r->head)
    len = 0;
  int rc = conn_write(c, g.p, g.len, body, len);
  gbuf_free(&g);
  if (rc == 0)
    sf__http_stats_record(r->stats, r->method, status, elapsed_s(r));
  req_release(r);
  if (rc != 0 || c->closing)
    return;
  c->served++;
  if (!keep) {
    conn_close_after_flush(c);
    return;
  }
  conn_process(c); /* next pipelined request, unless already inside */
}

void sf_http_respond_json(sf_http_req_t *r, int status, json_t *body) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) {
    sf_http_respond_problem(r, 500, "internal", "response not serializable",
                            NULL);
    return;
  }
  sf_http_respond(r, status, "application/json", text, strlen(text));
  free(text);
}

void sf_http_respond_problem(sf_http_req_t *r, int status, const char *code,
                             const char *detail, json_t *extra) {
  if (!code)
    code = "error";
  const char *title = sf_http_status_text(status);
  char type[256];
  snprintf(type, sizeof(type), "https://stockflow.dev/problems/%s", code);
  json_t *o = json_object();
  if (o) {
    int bad = 0;
    bad |= json_object_set_new(o, "type", json_string(type));
    bad |= json_object_set_new(o, "title", json_string(title));
    bad |= json_object_set_new(o, "status", json_integer(status));
    bad |= json_object_set_new(o, "detail", json_string(detail ? detail : title));
    bad |= json_object_set_new(o, "code", json_string(code));
    bad |= json_object_set_new(o, "request_id", json_string(r->id));
    if (!bad && json_is_object(extra))
      bad |= json_object_update_missing(o, extra);
    if (bad) {
      json_decref(o);
      o = NULL;
    }
  }
  json_decref(extra);
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) {
    static const char fallback[] = "{\"status\":500,\"code\":\"internal\"}";
    sf_http_respond(r, 500, "application/problem+json", fallback,
                    sizeof(fallback) - 1);
    return;
  }
  sf_http_respond(r, status, "application/problem+json", text, strlen(text));
  free(text);
}

static bool header_text_ok(const char *s, bool name) {
  if (!*s && name)
    return false;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '\r' || ch == '\n' || ch == 0x7f || (ch < ' ' && ch != '\t'))
      return false;
    if (name && (ch == ':' || ch == ' ' || ch == '\t'))
      return false;
  }
  return true;
}

int sf_http_add_header(sf_http_req_t *r, const char *name, const char *value) {
  if (!name || !value || !header_text_ok(name, true) ||
      !header_text_ok(value, false))
    return SF_EINVAL;
  size_t n = strlen(name) + strlen(value) + 5;
  char *text = sf_http_req_alloc(r, n);
  resp_header_t *h = sf_http_req_alloc(r, sizeof(*h));
  if (!text || !h)
    return SF_ENOMEM;
  snprintf(text, n, "%s: %s\r\n", name, value);
  h->text = text;
  h->next = NULL;
  *r->rh_tail = h;
  r->rh_tail = &h->next;
  return 0;
}

/* ---- streaming ---- */

int sf_http_stream_start(sf_http_req_t *r, int status,
                         const char *content_type) {
  conn_t *c = r->conn;
  if (r->canceled || c->closing)
    return SF_ECANCELED;
  if (r->streaming)
    return SF_ESTATE;
  gbuf_t g = {0};
  int rc = build_head(r, &g, status, content_type, false, 0, false, NULL);
  if (rc == 0)
    rc = conn_write(c, g.p, g.len, NULL, 0);
  gbuf_free(&g);
  if (rc != 0)
    return c->closing ? SF_ECANCELED : rc;
  r->streaming = true;
  /* Latency of a stream is the time to its first byte. */
  sf__http_stats_record(r->stats, r->method, status, elapsed_s(r));
  return 0;
}

int sf_http_stream_write(sf_http_req_t *r, const char *data, size_t len) {
  conn_t *c = r->conn;
  if (r->canceled || c->closing)
    return SF_ECANCELED;
  if (!r->streaming)
    return SF_ESTATE;
  if (len == 0)
    return 0;
  int rc = conn_write(c, data, len, NULL, 0);
  return rc == 0 ? 0 : SF_ECANCELED;
}

int sf_http_stream_write_shared(sf_http_req_t *r, const char *data,
                                size_t len, sf_http_done_cb done, void *ud) {
  conn_t *c = r->conn;
  if (!data || len == 0 || len > UINT32_MAX || !done)
    return SF_EINVAL;
  if (r->canceled || c->closing)
    return SF_ECANCELED;
  if (!r->streaming)
    return SF_ESTATE;
  int rc = conn_write_shared(c, data, len, done, ud);
  return rc == 0 ? 0 : SF_ECANCELED;
}

size_t sf_http_stream_pending(const sf_http_req_t *r) {
  if (r->canceled || r->conn->closing)
    return 0;
  return uv_stream_get_write_queue_size((const uv_stream_t *)&r->conn->tcp);
}

/* Hands bytes buffered before the upgrade (c->in) to the data callback, one
 * loop iteration after sf_http_upgrade returned. */
static void upgrade_flush_cb(uv_timer_t *t) {
  conn_t *c = t->data;
  sf_http_req_t *r = c->active;
  if (c->closing || c->close_after_flush || !r || !r->data_cb ||
      c->in_len == 0)
    return;
  size_t n = c->in_len;
  c->in_len = 0;                       /* before the callback: it may read more into c->in */
  r->data_cb(r, c->in, n, r->data_ud); /* may end r */
}

static bool token_ok(const char *s) {
  if (!*s)
    return false;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch <= ' ' || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch))
      return false;
  }
  return true;
}

int sf_http_upgrade(sf_http_req_t *r, const char *protocol,
                    sf_http_data_cb on_data, void *ud) {
  conn_t *c = r->conn;
  if (!protocol || !token_ok(protocol) || !on_data)
    return SF_EINVAL;
  if (r->canceled || c->closing)
    return SF_ECANCELED;
  if (r->streaming)
    return SF_ESTATE;
  gbuf_t g = {0};
  int rc = build_head(r, &g, 101, NULL, false, 0, false, protocol);
  if (rc == 0)
    rc = conn_write(c, g.p, g.len, NULL, 0);
  gbuf_free(&g);
  if (rc != 0)
    return c->closing ? SF_ECANCELED : rc;
  r->streaming = true;
  r->data_cb = on_data;
  r->data_ud = ud;
  sf__http_stats_record(r->stats, r->method, 101, elapsed_s(r));
  if (c->in_len > 0)
    uv_timer_start(&c->timer, upgrade_flush_cb, 0, 0);
  conn_arm(c); /* reading may have stopped at PIPELINE_CAP */
  return 0;
}

void sf_http_stream_end(sf_http_req_t *r) {
  conn_t *c = r->conn;
  if (!r->canceled && !c->closing)
    conn_close_after_flush(c);
  req_release(r);
}

/* ---- parsing (llhttp callbacks run inside llhttp_execute) ---- */

static int fail_cb(conn_t *c, int status) {
  c->err_status = status;
  return -1;
}

static int header_bytes(conn_t *c, size_t n) {
  sf_http_req_t *r = c->parsing;
  r->header_bytes += n;
  return r->header_bytes > c->srv->lim.max_header_bytes ? fail_cb(c, 431) : 0;
}

static int on_message_begin(llhttp_t *p) {
  conn_t *c = p->data;
  c->parsing = req_new(c);
  if (!c->parsing)
    return fail_cb(c, -1);
  c->headers_done = false;
  /* A new connection's first request counts from accept. */
  if (c->served > 0)
    uv_timer_start(&c->timer, timer_cb, c->srv->lim.header_timeout_ms, 0);
  return 0;
}

static int on_method_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->parsing->method = llhttp_method_name((llhttp_method_t)p->method);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (header_bytes(c, n) != 0)
    return -1;
  return gbuf_append(&c->parsing->url, at, n) == 0 ? 0 : fail_cb(c, -1);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (header_bytes(c, n) != 0)
    return -1;
  return gbuf_append(&c->parsing->hfield, at, n) == 0 ? 0 : fail_cb(c, -1);
}

static int on_header_field_complete(llhttp_t *p) {
  conn_t *c = p->data;
  return c->parsing->nheaders + 1 > c->srv->lim.max_headers ? fail_cb(c, 431)
                                                            : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  if (header_bytes(c, n) != 0)
    return -1;
  return gbuf_append(&c->parsing->hvalue, at, n) == 0 ? 0 : fail_cb(c, -1);
}

static int on_header_value_complete(llhttp_t *p) {
  conn_t *c = p->data;
  sf_http_req_t *r = c->parsing;
  if (r->nheaders == r->capheaders) {
    size_t cap = r->capheaders ? r->capheaders * 2 : 16;
    sf__http_kv_t *kv = realloc(r->headers, cap * sizeof(*kv));
    if (!kv)
      return fail_cb(c, -1);
    r->headers = kv;
    r->capheaders = cap;
  }
  size_t vlen = r->hvalue.len;
  while (vlen && (r->hvalue.p[vlen - 1] == ' ' || r->hvalue.p[vlen - 1] == '\t'))
    vlen--;
  char *name = req_strndup(r, r->hfield.p ? r->hfield.p : "", r->hfield.len);
  char *value = req_strndup(r, r->hvalue.p ? r->hvalue.p : "", vlen);
  if (!name || !value)
    return fail_cb(c, -1);
  r->headers[r->nheaders++] = (sf__http_kv_t){name, value};
  r->hfield.len = 0;
  r->hvalue.len = 0;
  return 0;
}

/* The body limit of the request being parsed: a per-path limit when its
 * method and raw path (without the query) match one exactly. */
static size_t body_limit_for(const sf_http_server_t *s, llhttp_t *p,
                             const sf_http_req_t *r) {
  if (s->n_body_limits == 0 || !r->url.p)
    return s->lim.max_body;
  const char *method = llhttp_method_name((llhttp_method_t)p->method);
  size_t plen = strcspn(r->url.p, "?#");
  for (size_t i = 0; i < s->n_body_limits; i++) {
    const body_limit_t *b = &s->body_limits[i];
    if (strcmp(b->method, method) == 0 && strlen(b->path) == plen &&
        strncmp(b->path, r->url.p, plen) == 0)
      return b->max_body;
  }
  return s->lim.max_body;
}

static int on_headers_complete(llhttp_t *p) {
  conn_t *c = p->data;
  sf_http_req_t *r = c->parsing;
  c->headers_done = true;
  r->http10 = p->http_major == 1 && p->http_minor == 0;
  r->max_body = body_limit_for(c->srv, p, r);
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > r->max_body)
    return fail_cb(c, 413);
  const char *expect = sf_http_req_header(r, "Expect");
  if (expect && strcasecmp(expect, "100-continue") == 0 && !r->http10) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (conn_write(c, cont, sizeof(cont) - 1, NULL, 0) != 0)
      return fail_cb(c, -1);
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn_t *c = p->data;
  sf_http_req_t *r = c->parsing;
  if (r->body.len + n > r->max_body)
    return fail_cb(c, 413);
  return gbuf_append(&r->body, at, n) == 0 ? 0 : fail_cb(c, -1);
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->parsing->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  return HPE_PAUSED;
}

/* ---- dispatch ---- */

/* Makes r the connection's active request (one reference). */
static void conn_activate(conn_t *c, sf_http_req_t *r) {
  c->active = r;
  c->refs++;
  r->start_ns = uv_hrtime();
  r->stats = sf__http_router_unmatched(c->srv->router);
  req_set_id(r);
  uv_timer_stop(&c->timer);
}

static void conn_dispatch(conn_t *c) {
  sf_http_server_t *s = c->srv;
  sf_http_req_t *r = c->parsing;
  c->parsing = NULL;
  conn_activate(c, r);
  r->head = strcmp(r->method, "HEAD") == 0;

  const char *url = r->url.p ? r->url.p : "";
  size_t plen = strcspn(url, "?#");
  int rc = sf__http_decode(r, url, plen, false, &r->path);
  if (rc == 0 && url[plen] == '?') {
    const char *q = url + plen + 1;
    rc = sf__http_parse_query(r, q, strcspn(q, "#"), &r->query, &r->nquery);
  }
  sf__http_match_t m;
  if (rc == 0)
    rc = sf__http_router_match(s->router, r, r->method, url, plen, &m);
  if (rc == SF_EPARSE) {
    sf_http_respond_problem(r, 400, "bad_request",
                            "malformed request target", NULL);
    return;
  }
  if (rc != 0) {
    sf_http_respond_problem(r, 500, "internal", "out of memory", NULL);
    return;
  }
  switch (m.kind) {
  case SF__HTTP_MATCH_FOUND:
    r->route = m.pattern;
    r->stats = m.stats;
    r->params = m.params;
    r->nparams = m.nparams;
    m.cb(r, m.ud);
    return;
  case SF__HTTP_MATCH_NO_METHOD:
    r->route = m.pattern;
    r->stats = m.stats;
    sf_http_add_header(r, "Allow", m.allow);
    sf_http_respond_problem(r, 405, "method_not_allowed",
                            "method not allowed for this path", NULL);
    return;
  case SF__HTTP_MATCH_NO_PATH:
  default:
    sf_http_respond_problem(r, 404, "not_found", "no such resource", NULL);
    return;
  }
}

/* Answers a request the parser rejected, then closes. */
static void conn_parse_error(conn_t *c, llhttp_errno_t err) {
  int status = c->err_status;
  if (status < 0) {
    SF_WARN(c->srv->log, MODULE, "out of memory parsing a request");
    conn_close(c);
    return;
  }
  sf_http_req_t *r = c->parsing;
  c->parsing = NULL;
  if (!r)
    r = req_new(c);
  if (!r) {
    conn_close(c);
    return;
  }
  conn_activate(c, r);
  r->keep_alive = false;
  SF_DEBUG(c->srv->log, MODULE, "rejecting request %s: %s (%s)", r->id,
           llhttp_errno_name(err), llhttp_get_error_reason(&c->parser));
  if (status == 413)
    sf_http_respond_problem(r, 413, "payload_too_large",
                            "request body over the limit", NULL);
  else if (status == 431)
    sf_http_respond_problem(r, 431, "headers_too_large",
                            "request headers over the limit", NULL);
  else
    sf_http_respond_problem(r, 400, "bad_request", "malformed HTTP request",
                            NULL);
}

/* Parses buffered bytes while no request is pending. Re-entrant calls (an
 * answer given inside the handler) return at once; the outer loop goes on. */
static void conn_process(conn_t *c) {
  if (c->in_process)
    return;
  c->in_process = true;
  while (!c->closing && !c->close_after_flush && !c->active && c->in_len) {
    llhttp_errno_t err = llhttp_execute(&c->parser, c->in, c->in_len);
    if (c->closing)
      break; /* a write inside a callback failed */
    size_t used = c->in_len;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      used = (size_t)(llhttp_get_error_pos(&c->parser) - c->in);
      if (err == HPE_PAUSED)
        llhttp_resume(&c->parser);
      else
        llhttp_resume_after_upgrade(&c->parser);
    } else if (err != HPE_OK) {
      c->in_len = 0;
      conn_parse_error(c, err);
      break;
    }
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    if (err == HPE_PAUSED_UPGRADE && c->parsing)
      c->parsing->keep_alive = false;
    if (err != HPE_OK && c->parsing)
      conn_dispatch(c);
  }
  c->in_process = false;
  conn_arm(c);
}

/* Sets the timer and reading state for what the connection waits for. */
static void conn_arm(conn_t *c) {
  if (c->closing || c->close_after_flush)
    return;
  const sf_http_limits_t *lim = &c->srv->lim;
  bool want_read = true;
  if (c->active) {
    if (!c->active->streaming)
      want_read = c->in_len < PIPELINE_CAP;
  } else if (!c->parsing) {
    uv_timer_start(&c->timer, timer_cb,
                   c->served ? lim->idle_timeout_ms : lim->header_timeout_ms,
                   0);
  } else if (c->headers_done) {
    uv_timer_start(&c->timer, timer_cb, lim->idle_timeout_ms, 0);
  }
  if (want_read && !c->reading) {
    if (conn_start_read(c) != 0)
      conn_close(c);
  } else if (!want_read && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  (void)suggested;
  if (c->in_cap - c->in_len < READ_CHUNK) {
    char *p = realloc(c->in, c->in_len + READ_CHUNK);
    if (!p) {
      *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
      return;
    }
    c->in = p;
    c->in_cap = c->in_len + READ_CHUNK;
  }
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  (void)buf;
  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    /* EOF or error: a pending request is canceled (a half-closed peer cannot
     * be told apart from one that went away); a finished answer is still
     * flushed. libuv stops reading after EOF. */
    c->reading = false;
    c->eof = true;
    if (!c->close_after_flush && !c->active &&
        uv_stream_get_write_queue_size(st) > 0)
      conn_close_after_flush(c);
    else
      conn_close(c);
    return;
  }
  sf_http_req_t *r = c->active;
  if (!c->close_after_flush && r && r->data_cb) {
    /* Upgraded: bytes go to the protocol handler, after any bytes still
     * buffered from before the upgrade (so order is kept). */
    size_t n = c->in_len + (size_t)nread;
    c->in_len = 0;
    r->data_cb(r, c->in, n, r->data_ud); /* may end r */
    return;
  }
  if (c->close_after_flush || (r && r->streaming))
    return; /* nothing more is parsed on this connection; discard */
  c->in_len += (size_t)nread;
  conn_process(c);
}

static int conn_start_read(conn_t *c) {
  int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  c->reading = rc == 0;
  return rc;
}

static void reject_close_cb(uv_handle_t *h) { free(h); }

static void connection_cb(uv_stream_t *listener, int status) {
  sf_http_server_t *s = listener->data;
  if (status < 0) {
    SF_WARN(s->log, MODULE, "accept failed: %s", uv_strerror(status));
    return;
  }
  if (s->nconns >= s->lim.max_connections) {
    uv_tcp_t *t = malloc(sizeof(*t));
    if (!t)
      return;
    uv_tcp_init(s->loop, t);
    uv_accept(listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, reject_close_cb);
    SF_WARN(s->log, MODULE, "connection limit %zu reached",
            s->lim.max_connections);
    return;
  }
  conn_t *c = calloc(1, sizeof(*c));
  if (!c) {
    SF_WARN(s->log, MODULE, "out of memory accepting a connection");
    return;
  }
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->refs = 2; /* tcp + timer handles */
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
  if (rc == 0)
    rc = conn_start_read(c);
  if (rc != 0) {
    SF_WARN(s->log, MODULE, "accept failed: %s", uv_strerror(rc));
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_timer_start(&c->timer, timer_cb, s->lim.header_timeout_ms, 0);
}

/* ---- the server ---- */

int sf_http_server_new(sf_http_server_t **out, uv_loop_t *loop,
                       const sf_http_limits_t *limits, sf_log_t *log) {
  if (!out || !loop)
    return SF_EINVAL;
  if (sodium_init() < 0)
    return SF_EINTERNAL;
  sf_http_server_t *s = calloc(1, sizeof(*s));
  if (!s)
    return SF_ENOMEM;
  int rc = sf__http_router_new(&s->router);
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->loop = loop;
  s->log = log;
  if (limits)
    s->lim = *limits;
  else
    sf_http_limits_default(&s->lim);
  s->port = -1;
  llhttp_settings_init(&s->settings);
  s->settings.on_message_begin = on_message_begin;
  s->settings.on_method_complete = on_method_complete;
  s->settings.on_url = on_url;
  s->settings.on_header_field = on_header_field;
  s->settings.on_header_field_complete = on_header_field_complete;
  s->settings.on_header_value = on_header_value;
  s->settings.on_header_value_complete = on_header_value_complete;
  s->settings.on_headers_complete = on_headers_complete;
  s->settings.on_body = on_body;
  s->settings.on_message_complete = on_message_complete;
  unsigned char rnd[8];
  randombytes_buf(rnd, sizeof(rnd));
  for (size_t i = 0; i < sizeof(rnd); i++)
    snprintf(s->id_prefix + 2 * i, 3, "%02x", rnd[i]);
  *out = s;
  return 0;
}

int sf_http_route(sf_http_server_t *s, const char *method, const char *pattern,
                  sf_http_handler_cb cb, void *ud) {
  if (!s)
    return SF_EINVAL;
  return sf__http_router_add(s->router, method, pattern, cb, ud);
}

int sf_http_listen(sf_http_server_t *s, const char *host, int port) {
  if (!s || !host || port < 0 || port > 65535 || s->listener_init ||
      s->closing)
    return SF_EINVAL;
  if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  struct sockaddr_in addr;
  int rc = uv_ip4_addr(host, port, &addr);
  if (rc != 0) {
    SF_ERROR(s->log, MODULE, "bad listen address %s: %s", host,
             uv_strerror(rc));
    return SF_EIO;
  }
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  s->listener_init = true;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, 511, connection_cb);
  if (rc != 0) {
    SF_ERROR(s->log, MODULE, "listen on %s:%d failed: %s", host, port,
             uv_strerror(rc));
    return SF_EIO;
  }
  struct sockaddr_in bound;
  int len = (int)sizeof(bound);
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len) == 0)
    s->port = ntohs(bound.sin_port);
  SF_INFO(s->log, MODULE, "listening on %s:%d", host, s->port);
  return 0;
}

int sf_http_bound_port(const sf_http_server_t *s) { return s ? s->port : -1; }

static void listener_close_cb(uv_handle_t *h) {
  sf_http_server_t *s = h->data;
  s->listener_closed = true;
  server_maybe_done(s);
}

static void done_timer_close_cb(uv_handle_t *h) {
  sf_http_server_t *s = h->data;
  s->done_timer_closed = true;
  server_maybe_done(s);
}

void sf_http_server_close(sf_http_server_t *s, sf_http_done_cb done,
                          void *ud) {
  if (!s || s->closing)
    return;
  s->closing = true;
  s->done_cb = done;
  s->done_ud = ud;
  s->port = -1;
  if (s->listener_init)
    uv_close((uv_handle_t *)&s->listener, listener_close_cb);
  else
    s->listener_closed = true;
  uv_timer_init(s->loop, &s->done_timer);
  s->done_timer.data = s;
  uv_close((uv_handle_t *)&s->done_timer, done_timer_close_cb);
  /* conn_close never frees (handles close later), so next stays valid. */
  for (conn_t *c = s->conns; c; c = c->next)
    conn_close(c);
}

int sf_http_body_limit(sf_http_server_t *s, const char *method,
                       const char *path, size_t max_body) {
  if (!s || !method || !path || max_body == 0 ||
      strlen(method) >= sizeof(s->body_limits[0].method) ||
      strlen(path) >= sizeof(s->body_limits[0].path) || strchr(path, '{') ||
      strchr(path, '?'))
    return SF_EINVAL;
  if (s->n_body_limits == SF__HTTP_MAX_BODY_LIMITS)
    return SF_ENOMEM;
  body_limit_t *b = &s->body_limits[s->n_body_limits++];
  snprintf(b->method, sizeof(b->method), "%s", method);
  snprintf(b->path, sizeof(b->path), "%s", path);
  b->max_body = max_body;
  return 0;
}

void sf_http_server_destroy(sf_http_server_t *s) {
  if (!s)
    return;
  sf__http_router_destroy(s->router);
  free(s);
}

char *sf_http_server_metrics(const sf_http_server_t *s, const char *prefix) {
  if (!s || !prefix)
    return NULL;
  return sf__http_router_metrics(s->router, prefix);
}

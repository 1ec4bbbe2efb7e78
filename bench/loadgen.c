/* loadgen: an HTTP/1.1 load generator on libuv, parsing answers with llhttp.
 *
 * N keep-alive connections each carry one request at a time. Requests are
 * drawn from a small JSON spec of weighted operations (method, path and
 * body templates with {store}, {store2}, {product}, {seq}, {captured}
 * placeholders filled from an id file); an operation may capture a field
 * of its 2xx answer and follow up on the same connection (place an order,
 * then fulfil or cancel it). An operation marked optional is dropped from
 * the mix the first time it answers 404 or 405 (an endpoint not deployed
 * yet), so a mix degrades instead of failing.
 *
 * Closed loop by default (each connection sends its next request when the
 * answer arrives); with --rate it is open loop: connection i owns the send
 * slots i, i + N, i + 2N, ... of a fixed schedule, and latency counts from
 * the slot's intended time, so a stalled server shows in the figures
 * instead of slowing the client down (no coordinated omission). The time
 * from the actual send is reported as well ("service time").
 *
 * Everything runs on one thread and one loop. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench_util.h"

#define RESP_CAP 8192
#define REQ_CAP (512 * 1024) /* a batch of 1,000 movements is ~120 KB */
#define MAX_HEADERS 16
#define MAX_OPS 32

typedef struct op {
  char *name, *method, *path, *body, *capture;
  unsigned weight;
  bool optional, disabled;
  struct op *then; /* follow-ups after a captured answer; borrowed names */
  size_t n_then;
  uint64_t count, ok, skipped; /* measured answers, of which 2xx */
  uint64_t status_class[6];
  bench_hist_t *hist; /* latency of this op (from intended time) */
} op_t;

typedef struct lg lg_t;

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  uv_timer_t timer;
  lg_t *lg;
  llhttp_t parser;
  unsigned idx;
  bool open;      /* tcp handle initialised and not closing */
  bool connected; /* connect succeeded */
  bool busy;      /* a request is in flight */
  bool writing;   /* uv_write pending on req */
  bool answered;  /* message complete seen in the current read */
  bool timer_armed;
  uint64_t intended_ns, sent_ns, slot;
  op_t *op;
  op_t *follow; /* next request is this follow-up */
  char captured[128];
  int status;
  bool keep_alive;
  char *req; /* REQ_CAP bytes */
  size_t req_len;
  char resp[RESP_CAP];
  size_t resp_len;
  bool resp_truncated;
} conn_t;

struct lg {
  uv_loop_t *loop;
  /* options */
  char host[256];
  int port;
  struct sockaddr_in addr;
  unsigned nconns;
  double duration_s, warmup_s, rate;
  uint64_t count; /* fixed number of requests; 0 = duration mode */
  bool sequential;
  const char *headers[MAX_HEADERS];
  size_t n_headers;
  const char *json_out, *capture_out, *label;
  uint64_t seed;
  /* spec and ids */
  op_t ops[MAX_OPS];
  size_t n_ops;
  json_t *spec;
  char **stores, **products;
  size_t n_stores, n_products;
  /* run state */
  conn_t *conns;
  uv_timer_t end_timer, kill_timer;
  uint64_t t_start, t_measure, t_end, t_last;
  bool stopping, killed;
  uint64_t issued, seq;
  uint64_t rng;
  char slab[65536];   /* read buffer: one loop thread, reads never overlap */
  char body[REQ_CAP]; /* request body scratch, same reason */
  /* results */
  bench_hist_t lat, svc;
  uint64_t measured, ok, errors, reconnects, capture_failures, skipped;
  uint64_t status[600];
  char *sample[600]; /* first body seen per non-2xx status */
  json_t *captures;
};

static void conn_send(conn_t *c);
static void conn_schedule(conn_t *c);
static void conn_reconnect(conn_t *c);
static void maybe_finish(lg_t *lg);

/* ---- helpers ---- */

static uint64_t rnd(lg_t *lg) {
  /* xorshift64* */
  uint64_t x = lg->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  lg->rng = x;
  return x * UINT64_C(2685821657736338717);
}

static op_t *pick(lg_t *lg, op_t *ops, size_t n) {
  unsigned total = 0;
  for (size_t i = 0; i < n; i++)
    if (!ops[i].disabled)
      total += ops[i].weight;
  if (total == 0)
    return NULL;
  unsigned r = (unsigned)(rnd(lg) % total);
  for (size_t i = 0; i < n; i++) {
    if (ops[i].disabled)
      continue;
    if (r < ops[i].weight)
      return &ops[i];
    r -= ops[i].weight;
  }
  return NULL;
}

/* Appends the template t to out (cap bytes, *len used) with placeholders
 * replaced. Returns -1 when it does not fit. */
static int expand(const char *t, char *out, size_t cap, size_t *len,
                  const char *store, const char *store2, const char *product,
                  uint64_t seq, const char *captured) {
  for (const char *p = t; *p;) {
    const char *val = NULL;
    char num[32];
    size_t skip = 0;
    if (*p == '{') {
      if (strncmp(p, "{store}", 7) == 0)
        val = store, skip = 7;
      else if (strncmp(p, "{store2}", 8) == 0)
        val = store2, skip = 8;
      else if (strncmp(p, "{product}", 9) == 0)
        val = product, skip = 9;
      else if (strncmp(p, "{captured}", 10) == 0)
        val = captured, skip = 10;
      else if (strncmp(p, "{seq}", 5) == 0) {
        snprintf(num, sizeof(num), "%" PRIu64, seq);
        val = num, skip = 5;
      }
    }
    if (skip) {
      size_t n = strlen(val ? val : "");
      if (*len + n >= cap)
        return -1;
      memcpy(out + *len, val ? val : "", n);
      *len += n;
      p += skip;
    } else {
      if (*len + 1 >= cap)
        return -1;
      out[(*len)++] = *p++;
    }
  }
  out[*len] = '\0';
  return 0;
}

static bool in_window(const lg_t *lg, uint64_t now) {
  if (lg->count)
    return true;
  return now >= lg->t_measure && now <= lg->t_end;
}

/* ---- closing ---- */

static void handle_closed_cb(uv_handle_t *h) { (void)h; }

static void conn_close_all(lg_t *lg) {
  for (unsigned i = 0; i < lg->nconns; i++) {
    conn_t *c = &lg->conns[i];
    if (c->open) {
      c->open = false;
      uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
    }
    if (!uv_is_closing((uv_handle_t *)&c->timer))
      uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
  }
  if (!uv_is_closing((uv_handle_t *)&lg->end_timer))
    uv_close((uv_handle_t *)&lg->end_timer, handle_closed_cb);
  if (!uv_is_closing((uv_handle_t *)&lg->kill_timer))
    uv_close((uv_handle_t *)&lg->kill_timer, handle_closed_cb);
}

/* Ends the run once no request is in flight (or at once when killed). */
static void maybe_finish(lg_t *lg) {
  if (!lg->stopping)
    return;
  if (!lg->killed)
    for (unsigned i = 0; i < lg->nconns; i++)
      if (lg->conns[i].busy)
        return;
  if (!lg->t_last)
    lg->t_last = bench_now_ns();
  conn_close_all(lg);
}

static void kill_timer_cb(uv_timer_t *t) {
  lg_t *lg = t->data;
  uint64_t lost = 0;
  for (unsigned i = 0; i < lg->nconns; i++)
    lost += lg->conns[i].busy;
  fprintf(stderr, "loadgen: %" PRIu64 " requests unanswered 10 s after the "
                  "end; counted as errors\n",
          lost);
  lg->errors += lost;
  lg->killed = true;
  maybe_finish(lg);
}

static void end_timer_cb(uv_timer_t *t) {
  lg_t *lg = t->data;
  lg->stopping = true;
  lg->t_last = bench_now_ns();
  for (unsigned i = 0; i < lg->nconns; i++) {
    conn_t *c = &lg->conns[i];
    if (c->timer_armed) {
      uv_timer_stop(&c->timer);
      c->timer_armed = false;
    }
  }
  /* answers still in flight get 10 s, then the run is cut short */
  uv_timer_start(&lg->kill_timer, kill_timer_cb, 10000, 0);
  maybe_finish(lg);
}

/* ---- answers ---- */

static void record_answer(conn_t *c) {
  lg_t *lg = c->lg;
  uint64_t now = bench_now_ns();
  op_t *op = c->op;
  int st = c->status;
  c->busy = false;
  if (op->optional && (st == 404 || st == 405)) {
    if (!op->disabled)
      fprintf(stderr, "loadgen: %s %s answered %d: operation \"%s\" dropped "
                      "from the mix (endpoint missing)\n",
              op->method, op->path, st,
              op->name);
    op->disabled = true;
    op->skipped++;
    lg->skipped++;
    c->follow = NULL;
    return;
  }
  bool ok = st >= 200 && st < 300;
  if (in_window(lg, now)) {
    uint64_t lat = now - c->intended_ns, svc = now - c->sent_ns;
    bench_hist_record(&lg->lat, lat);
    bench_hist_record(&lg->svc, svc);
    bench_hist_record(op->hist, lat);
    lg->measured++;
    op->count++;
    if (ok) {
      lg->ok++;
      op->ok++;
    }
    if (st >= 100 && st < 600) {
      lg->status[st]++;
      op->status_class[st / 100]++;
    }
  }
  if (!ok && st >= 100 && st < 600 && !lg->sample[st]) {
    lg->sample[st] = strndup(c->resp, c->resp_len < 300 ? c->resp_len : 300);
  }
  c->follow = NULL;
  if (ok && op->capture) {
    json_error_t jerr;
    json_t *doc = c->resp_truncated
                      ? NULL
                      : json_loadb(c->resp, c->resp_len, 0, &jerr);
    const char *v = doc ? json_string_value(json_object_get(doc, op->capture))
                        : NULL;
    if (v && strlen(v) < sizeof(c->captured)) {
      snprintf(c->captured, sizeof(c->captured), "%s", v);
      if (lg->captures)
        json_array_append_new(lg->captures, json_string(v));
      if (op->n_then)
        c->follow = pick(lg, op->then, op->n_then);
    } else {
      lg->capture_failures++;
    }
    json_decref(doc);
  }
}

static int on_message_begin(llhttp_t *p) {
  conn_t *c = p->data;
  c->resp_len = 0;
  c->resp_truncated = false;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  conn_t *c = p->data;
  size_t room = RESP_CAP - 1 - c->resp_len;
  if (len > room) {
    len = room;
    c->resp_truncated = true;
  }
  memcpy(c->resp + c->resp_len, at, len);
  c->resp_len += len;
  c->resp[c->resp_len] = '\0';
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn_t *c = p->data;
  c->status = llhttp_get_status_code(p);
  c->keep_alive = llhttp_should_keep_alive(p);
  c->answered = true;
  return HPE_PAUSED; /* one answer per request: handle it, then go on */
}

static const llhttp_settings_t *parser_settings(void) {
  static const llhttp_settings_t s = {
      .on_message_begin = on_message_begin,
      .on_body = on_body,
      .on_message_complete = on_message_complete,
  };
  return &s;
}

/* A request failed without an answer (reset, EOF, parse error). */
static void conn_failed(conn_t *c, const char *why) {
  lg_t *lg = c->lg;
  if (c->busy) {
    c->busy = false;
    if (in_window(lg, bench_now_ns()))
      lg->errors++;
    if (lg->errors <= 5)
      fprintf(stderr, "loadgen: connection %u: %s\n", c->idx, why);
  }
  conn_reconnect(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn_t *c = h->data;
  *buf = uv_buf_init(c->lg->slab, sizeof(c->lg->slab));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (nread == 0)
    return;
  if (nread < 0) {
    if (!c->busy && nread == UV_EOF && !c->lg->stopping) {
      conn_reconnect(c); /* idle keep-alive closed by the server */
      return;
    }
    conn_failed(c, uv_strerror((int)nread));
    return;
  }
  c->answered = false;
  llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
  if (err == HPE_PAUSED) {
    llhttp_resume(&c->parser);
    /* bytes after the answer: a server must not send any unasked */
  } else if (err != HPE_OK) {
    conn_failed(c, llhttp_errno_name(err));
    return;
  }
  if (!c->answered)
    return;
  record_answer(c);
  if (!c->keep_alive) {
    conn_reconnect(c);
    return;
  }
  if (c->lg->stopping)
    maybe_finish(c->lg);
  else
    conn_schedule(c);
}

/* ---- sending ---- */

static void write_cb(uv_write_t *w, int status) {
  conn_t *c = w->data;
  c->writing = false;
  if (status < 0 && status != UV_ECANCELED)
    conn_failed(c, uv_strerror(status));
}

static void conn_send(conn_t *c) {
  lg_t *lg = c->lg;
  if (lg->count && lg->issued >= lg->count && !c->follow) {
    return;
  }
  op_t *op = c->follow;
  if (!op && lg->sequential) {
    /* operations in spec order, skipping dropped ones */
    for (size_t i = 0; i < lg->n_ops && !op; i++) {
      op_t *o = &lg->ops[(lg->issued + i) % lg->n_ops];
      if (!o->disabled)
        op = o;
    }
  } else if (!op) {
    op = pick(lg, lg->ops, lg->n_ops);
  }
  if (!op) {
    lg->stopping = true;
    maybe_finish(lg);
    return;
  }
  uint64_t k = lg->seq++;
  const char *store = "", *store2 = "", *product = "";
  if (lg->n_stores) {
    size_t si = lg->sequential ? (size_t)(k % lg->n_stores)
                               : (size_t)(rnd(lg) % lg->n_stores);
    store = lg->stores[si];
    if (lg->n_stores > 1) {
      size_t s2 = (si + 1 + (size_t)(rnd(lg) % (lg->n_stores - 1))) %
                  lg->n_stores;
      store2 = lg->stores[s2];
    }
  }
  if (lg->n_products) {
    size_t pi = lg->sequential && lg->n_stores
                    ? (size_t)((k / lg->n_stores) % lg->n_products)
                    : (size_t)(rnd(lg) % lg->n_products);
    product = lg->products[pi];
  }
  char path[1024];
  char *body = lg->body;
  size_t plen = 0, blen = 0;
  if (expand(op->path, path, sizeof(path), &plen, store, store2, product, k,
             c->captured) ||
      (op->body && expand(op->body, body, REQ_CAP, &blen, store, store2,
                          product, k, c->captured))) {
    fprintf(stderr, "loadgen: request of \"%s\" too large\n", op->name);
    exit(2);
  }
  int n = snprintf(c->req, REQ_CAP,
                   "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", op->method, path,
                   lg->host, lg->port);
  size_t len = (size_t)n;
  for (size_t i = 0; i < lg->n_headers && len < REQ_CAP; i++)
    len += (size_t)snprintf(c->req + len, REQ_CAP - len, "%s\r\n",
                            lg->headers[i]);
  if (op->body && len < REQ_CAP)
    len += (size_t)snprintf(c->req + len, REQ_CAP - len,
                            "Content-Type: application/json\r\n"
                            "Content-Length: %zu\r\n",
                            blen);
  if (len + 2 + blen >= REQ_CAP) {
    fprintf(stderr, "loadgen: request of \"%s\" too large\n", op->name);
    exit(2);
  }
  memcpy(c->req + len, "\r\n", 2);
  len += 2;
  memcpy(c->req + len, body, blen);
  len += blen;
  c->req_len = len;
  if (!c->follow)
    lg->issued++;
  c->follow = NULL;
  c->op = op;
  c->busy = true;
  c->sent_ns = bench_now_ns();
  if (c->intended_ns == 0 || c->intended_ns > c->sent_ns)
    c->intended_ns = c->sent_ns;

  uv_buf_t b = uv_buf_init(c->req, (unsigned)len);
  int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (w == (int)len)
    return;
  if (w < 0 && w != UV_EAGAIN) {
    conn_failed(c, uv_strerror(w));
    return;
  }
  size_t done = w > 0 ? (size_t)w : 0;
  b = uv_buf_init(c->req + done, (unsigned)(len - done));
  c->writing = true;
  c->write_req.data = c;
  int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (rc) {
    c->writing = false;
    conn_failed(c, uv_strerror(rc));
  }
}

static void slot_timer_cb(uv_timer_t *t) {
  conn_t *c = t->data;
  c->timer_armed = false;
  if (!c->lg->stopping && c->connected && !c->busy)
    conn_send(c);
}

/* Sends the connection's next request now or at its slot. */
static void conn_schedule(conn_t *c) {
  lg_t *lg = c->lg;
  if (lg->stopping || !c->connected || c->busy)
    return;
  if (lg->count && lg->issued >= lg->count && !c->follow) {
    /* done once no connection has a request or a follow-up left */
    for (unsigned i = 0; i < lg->nconns; i++)
      if (lg->conns[i].busy || lg->conns[i].follow)
        return;
    lg->stopping = true;
    lg->t_last = bench_now_ns();
    maybe_finish(lg);
    return;
  }
  uint64_t now = bench_now_ns();
  if (lg->rate <= 0) {
    c->intended_ns = now;
    conn_send(c);
    return;
  }
  /* slot j of connection i: t_start + (j * N + i) / rate */
  uint64_t at = lg->t_start +
                (uint64_t)(((double)(c->slot * lg->nconns + c->idx)) * 1e9 /
                           lg->rate);
  c->slot++;
  c->intended_ns = at;
  if (at <= now) {
    conn_send(c);
    return;
  }
  uint64_t ms = (at - now + 999999) / 1000000;
  c->timer_armed = true;
  uv_timer_start(&c->timer, slot_timer_cb, ms, 0);
}

/* ---- connecting ---- */

static void connect_cb(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (!c->open)
    return;
  if (status < 0) {
    if (c->lg->reconnects < 3 || c->lg->reconnects % 1000 == 0)
      fprintf(stderr, "loadgen: connect to %s:%d: %s\n", c->lg->host,
              c->lg->port, uv_strerror(status));
    c->lg->errors++;
    if (c->lg->errors > 200 && c->lg->ok == 0) { /* nobody there: give up */
      c->lg->stopping = c->lg->killed = true;
      c->lg->t_last = bench_now_ns();
    }
    conn_reconnect(c);
    return;
  }
  c->connected = true;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_RESPONSE, parser_settings());
  c->parser.data = c;
  int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  if (rc) {
    conn_failed(c, uv_strerror(rc));
    return;
  }
  conn_schedule(c);
}

static void conn_open(conn_t *c) {
  lg_t *lg = c->lg;
  uv_tcp_init(lg->loop, &c->tcp);
  c->tcp.data = c;
  c->open = true;
  c->connected = false;
  c->connect_req.data = c;
  int rc = uv_tcp_connect(&c->connect_req, &c->tcp,
                          (const struct sockaddr *)&lg->addr, connect_cb);
  if (rc) {
    fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(rc));
    exit(2);
  }
}

static void reopen_closed_cb(uv_handle_t *h) {
  conn_t *c = h->data;
  if (c->lg->stopping) {
    maybe_finish(c->lg);
    return;
  }
  conn_open(c);
}

static void conn_reconnect(conn_t *c) {
  lg_t *lg = c->lg;
  if (!c->open)
    return;
  c->open = false;
  c->connected = false;
  c->busy = false;
  lg->reconnects++;
  if (c->timer_armed) {
    uv_timer_stop(&c->timer);
    c->timer_armed = false;
  }
  uv_close((uv_handle_t *)&c->tcp, reopen_closed_cb);
  if (lg->stopping)
    maybe_finish(lg);
}

/* ---- spec and ids ---- */

static char *dup_str(json_t *o, const char *key, bool required,
                     const char *what) {
  json_t *v = json_object_get(o, key);
  if (!v) {
    if (required) {
      fprintf(stderr, "loadgen: %s needs \"%s\"\n", what, key);
      exit(2);
    }
    return NULL;
  }
  if (!json_is_string(v)) {
    fprintf(stderr, "loadgen: %s: \"%s\" must be a string\n", what, key);
    exit(2);
  }
  return strdup(json_string_value(v));
}

static void parse_op(json_t *o, op_t *op, const char *what) {
  if (!json_is_object(o)) {
    fprintf(stderr, "loadgen: %s must be an object\n", what);
    exit(2);
  }
  op->method = dup_str(o, "method", true, what);
  op->path = dup_str(o, "path", true, what);
  op->name = dup_str(o, "name", false, what);
  if (!op->name)
    op->name = strdup(op->path);
  op->body = dup_str(o, "body", false, what);
  op->capture = dup_str(o, "capture", false, what);
  json_t *w = json_object_get(o, "weight");
  op->weight = w ? (unsigned)json_integer_value(w) : 1;
  op->optional = json_is_true(json_object_get(o, "optional"));
  op->hist = malloc(sizeof(*op->hist));
  if (!op->hist) {
    fprintf(stderr, "loadgen: out of memory\n");
    exit(2);
  }
  bench_hist_reset(op->hist);
  json_t *then = json_object_get(o, "then");
  if (then) {
    if (!json_is_array(then) || !op->capture) {
      fprintf(stderr, "loadgen: %s: \"then\" is an array and needs "
                      "\"capture\"\n",
              what);
      exit(2);
    }
    op->n_then = json_array_size(then);
    op->then = calloc(op->n_then, sizeof(op_t));
    if (!op->then) {
      fprintf(stderr, "loadgen: out of memory\n");
      exit(2);
    }
    for (size_t i = 0; i < op->n_then; i++) {
      parse_op(json_array_get(then, i), &op->then[i], "a follow-up");
      op->then[i].optional = op->then[i].optional || op->optional;
    }
  }
}

static void free_op(op_t *op) {
  for (size_t i = 0; i < op->n_then; i++)
    free_op(&op->then[i]);
  free(op->then);
  free(op->name);
  free(op->method);
  free(op->path);
  free(op->body);
  free(op->capture);
  free(op->hist);
}

static void load_spec(lg_t *lg, const char *file) {
  json_error_t err;
  json_t *doc = json_load_file(file, 0, &err);
  if (!doc) {
    fprintf(stderr, "loadgen: %s:%d: %s\n", file, err.line, err.text);
    exit(2);
  }
  json_t *ops = json_object_get(doc, "ops");
  if (!json_is_array(ops) || json_array_size(ops) == 0 ||
      json_array_size(ops) > MAX_OPS) {
    fprintf(stderr, "loadgen: %s: \"ops\" must be an array of 1 to %d "
                    "operations\n",
            file, MAX_OPS);
    exit(2);
  }
  lg->n_ops = json_array_size(ops);
  for (size_t i = 0; i < lg->n_ops; i++)
    parse_op(json_array_get(ops, i), &lg->ops[i], "an operation");
  json_decref(doc);
}

static char **load_id_list(json_t *doc, const char *key, size_t *n) {
  json_t *a = json_object_get(doc, key);
  *n = 0;
  if (!a)
    return NULL;
  if (!json_is_array(a)) {
    fprintf(stderr, "loadgen: ids: \"%s\" must be an array\n", key);
    exit(2);
  }
  char **out = calloc(json_array_size(a) + 1, sizeof(char *));
  for (size_t i = 0; out && i < json_array_size(a); i++) {
    const char *s = json_string_value(json_array_get(a, i));
    if (!s) {
      fprintf(stderr, "loadgen: ids: %s[%zu] is not a string\n", key, i);
      exit(2);
    }
    out[(*n)++] = strdup(s);
  }
  return out;
}

static void load_ids(lg_t *lg, const char *file) {
  json_error_t err;
  json_t *doc = json_load_file(file, 0, &err);
  if (!doc) {
    fprintf(stderr, "loadgen: %s:%d: %s\n", file, err.line, err.text);
    exit(2);
  }
  lg->stores = load_id_list(doc, "stores", &lg->n_stores);
  lg->products = load_id_list(doc, "products", &lg->n_products);
  json_decref(doc);
}

static bool uses(const lg_t *lg, const char *placeholder) {
  for (size_t i = 0; i < lg->n_ops; i++) {
    const op_t *o = &lg->ops[i];
    if (strstr(o->path, placeholder) || (o->body && strstr(o->body, placeholder)))
      return true;
    for (size_t j = 0; j < o->n_then; j++)
      if (strstr(o->then[j].path, placeholder) ||
          (o->then[j].body && strstr(o->then[j].body, placeholder)))
        return true;
  }
  return false;
}

/* ---- report ---- */

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static json_t *hist_json(const bench_hist_t *h) {
  return json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "p50",
                   ms(bench_hist_quantile(h, 0.50)), "p90",
                   ms(bench_hist_quantile(h, 0.90)), "p99",
                   ms(bench_hist_quantile(h, 0.99)), "p999",
                   ms(bench_hist_quantile(h, 0.999)), "max", ms(h->n ? h->max : 0),
                   "min", ms(h->n ? h->min : 0), "mean", bench_hist_mean(h) / 1e6);
}

static void report(lg_t *lg) {
  double elapsed;
  if (lg->count)
    elapsed = (double)(lg->t_last - lg->t_start) / 1e9;
  else
    elapsed = lg->duration_s;
  if (elapsed <= 0)
    elapsed = 1e-9;
  double rps = (double)lg->measured / elapsed;
  double ok_rps = (double)lg->ok / elapsed;
  printf("%s%s%s%u connections, %s, %.1f s measured%s\n",
         lg->label ? "[" : "", lg->label ? lg->label : "",
         lg->label ? "] " : "", lg->nconns,
         lg->rate > 0 ? "open loop" : "closed loop", elapsed,
         lg->count ? "" : " (after warm-up)");
  if (lg->rate > 0)
    printf("  target rate   %.0f req/s\n", lg->rate);
  printf("  requests      %" PRIu64 " (%.0f req/s), 2xx %" PRIu64
         " (%.0f/s), errors %" PRIu64 ", reconnects %" PRIu64 "\n",
         lg->measured, rps, lg->ok, ok_rps, lg->errors, lg->reconnects);
  printf("  latency ms    p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f"
         "%s\n",
         ms(bench_hist_quantile(&lg->lat, 0.5)),
         ms(bench_hist_quantile(&lg->lat, 0.9)),
         ms(bench_hist_quantile(&lg->lat, 0.99)),
         ms(bench_hist_quantile(&lg->lat, 0.999)), ms(lg->lat.n ? lg->lat.max : 0),
         lg->rate > 0 ? "  (from intended send time)" : "");
  if (lg->rate > 0)
    printf("  service ms    p50 %.3f  p99 %.3f  p99.9 %.3f  (from actual "
           "send)\n",
           ms(bench_hist_quantile(&lg->svc, 0.5)),
           ms(bench_hist_quantile(&lg->svc, 0.99)),
           ms(bench_hist_quantile(&lg->svc, 0.999)));
  printf("  status       ");
  for (int s = 100; s < 600; s++)
    if (lg->status[s])
      printf(" %d:%" PRIu64, s, lg->status[s]);
  printf("\n");
  for (size_t i = 0; i < lg->n_ops; i++) {
    op_t *o = &lg->ops[i];
    printf("  op %-12s %8" PRIu64 " (2xx %" PRIu64 ") p50 %.3f p99 %.3f ms%s\n",
           o->name, o->count, o->ok, ms(bench_hist_quantile(o->hist, 0.5)),
           ms(bench_hist_quantile(o->hist, 0.99)),
           o->disabled ? "  [dropped: endpoint missing]" : "");
    for (size_t j = 0; j < o->n_then; j++) {
      op_t *t = &o->then[j];
      printf("    then %-9s %8" PRIu64 " (2xx %" PRIu64 ") p50 %.3f p99 %.3f "
             "ms%s\n",
             t->name, t->count, t->ok, ms(bench_hist_quantile(t->hist, 0.5)),
             ms(bench_hist_quantile(t->hist, 0.99)),
             t->disabled ? "  [dropped]" : "");
    }
  }
  for (int s = 300; s < 600; s++)
    if (lg->sample[s])
      printf("  first %d body: %s\n", s, lg->sample[s]);
  if (lg->capture_failures)
    printf("  capture failures %" PRIu64 "\n", lg->capture_failures);

  if (lg->json_out) {
    json_t *st = json_object();
    for (int s = 100; s < 600; s++)
      if (lg->status[s]) {
        char k[8];
        snprintf(k, sizeof(k), "%d", s);
        json_object_set_new(st, k, json_integer((json_int_t)lg->status[s]));
      }
    json_t *ops = json_object();
    for (size_t i = 0; i < lg->n_ops; i++) {
      op_t *o = &lg->ops[i];
      json_t *oj = json_pack("{s:I,s:I,s:b,s:o}", "count", (json_int_t)o->count,
                             "ok", (json_int_t)o->ok, "dropped", o->disabled,
                             "latency_ms", hist_json(o->hist));
      for (size_t j = 0; j < o->n_then; j++) {
        op_t *t = &o->then[j];
        json_object_set_new(ops, t->name,
                            json_pack("{s:I,s:I,s:b,s:o}", "count",
                                      (json_int_t)t->count, "ok",
                                      (json_int_t)t->ok, "dropped", t->disabled,
                                      "latency_ms", hist_json(t->hist)));
      }
      json_object_set_new(ops, o->name, oj);
    }
    json_t *doc = json_pack(
        "{s:s?,s:i,s:f,s:f,s:I,s:I,s:I,s:I,s:f,s:f,s:o,s:o,s:o,s:o}", "label",
        lg->label, "connections", (int)lg->nconns, "rate_target", lg->rate,
        "elapsed_s", elapsed, "requests", (json_int_t)lg->measured, "ok",
        (json_int_t)lg->ok, "errors", (json_int_t)lg->errors, "reconnects",
        (json_int_t)lg->reconnects, "rps", rps, "ok_rps", ok_rps,
        "latency_ms", hist_json(&lg->lat), "service_ms", hist_json(&lg->svc),
        "status", st, "ops", ops);
    if (!doc || json_dump_file(doc, lg->json_out, JSON_INDENT(1)) != 0)
      fprintf(stderr, "loadgen: cannot write %s\n", lg->json_out);
    json_decref(doc);
  }
  if (lg->capture_out && lg->captures &&
      json_dump_file(lg->captures, lg->capture_out, 0) != 0)
    fprintf(stderr, "loadgen: cannot write %s\n", lg->capture_out);
}

/* ---- main ---- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: sf-loadgen --url http://HOST:PORT --spec SPEC.json [options]\n"
          "  --ids FILE        {\"stores\": [...], \"products\": [...]} for the\n"
          "                    {store}, {store2} and {product} placeholders\n"
          "  -c, --connections N   keep-alive connections (default 64)\n"
          "  -d, --duration S  measured seconds (default 10)\n"
          "  -w, --warmup S    seconds before measuring (default 1; duration mode)\n"
          "  -n, --count N     send exactly N requests instead (all measured)\n"
          "  -r, --rate R      open loop at R requests/s (default: closed loop)\n"
          "  --sequential      {store}/{product} walk every pair in order\n"
          "                    (request k: store k mod S, product k div S) and\n"
          "                    operations are taken in spec order, not by weight\n"
          "  -H, --header 'Name: value'   extra request header (repeatable)\n"
          "  --json FILE       write the results as JSON\n"
          "  --capture-out FILE  write every captured value as a JSON array\n"
          "  --label TEXT      name printed with the results\n"
          "  --seed N          random seed (default 1)\n"
          "Spec: {\"ops\": [{\"name\", \"weight\", \"method\", \"path\", \"body\",\n"
          "  \"optional\", \"capture\", \"then\": [ops]}]}; placeholders {store}\n"
          "  {store2} (another store) {product} {seq} {captured}.\n");
}

int main(int argc, char **argv) {
  lg_t *lg = calloc(1, sizeof(*lg));
  if (!lg)
    return 2;
  lg->nconns = 64;
  lg->duration_s = 10;
  lg->warmup_s = 1;
  lg->seed = 1;
  const char *url = NULL, *spec = NULL, *ids = NULL;
  enum { O_IDS = 256,
         O_SEQ,
         O_JSON,
         O_CAP,
         O_LABEL,
         O_SEED,
         O_SPEC,
         O_URL };
  static const struct option longopts[] = {
      {"url", required_argument, NULL, O_URL},
      {"spec", required_argument, NULL, O_SPEC},
      {"ids", required_argument, NULL, O_IDS},
      {"connections", required_argument, NULL, 'c'},
      {"duration", required_argument, NULL, 'd'},
      {"warmup", required_argument, NULL, 'w'},
      {"count", required_argument, NULL, 'n'},
      {"rate", required_argument, NULL, 'r'},
      {"sequential", no_argument, NULL, O_SEQ},
      {"header", required_argument, NULL, 'H'},
      {"json", required_argument, NULL, O_JSON},
      {"capture-out", required_argument, NULL, O_CAP},
      {"label", required_argument, NULL, O_LABEL},
      {"seed", required_argument, NULL, O_SEED},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "c:d:w:n:r:H:h", longopts, NULL)) != -1) {
    switch (ch) {
    case O_URL: url = optarg; break;
    case O_SPEC: spec = optarg; break;
    case O_IDS: ids = optarg; break;
    case 'c': lg->nconns = (unsigned)strtoul(optarg, NULL, 10); break;
    case 'd': lg->duration_s = strtod(optarg, NULL); break;
    case 'w': lg->warmup_s = strtod(optarg, NULL); break;
    case 'n':
      if (bench_parse_count(optarg, &lg->count)) {
        fprintf(stderr, "loadgen: bad --count %s\n", optarg);
        return 2;
      }
      break;
    case 'r': lg->rate = strtod(optarg, NULL); break;
    case O_SEQ: lg->sequential = true; break;
    case 'H':
      if (lg->n_headers == MAX_HEADERS || !strchr(optarg, ':')) {
        fprintf(stderr, "loadgen: bad or too many --header\n");
        return 2;
      }
      lg->headers[lg->n_headers++] = optarg;
      break;
    case O_JSON: lg->json_out = optarg; break;
    case O_CAP: lg->capture_out = optarg; break;
    case O_LABEL: lg->label = optarg; break;
    case O_SEED: lg->seed = strtoull(optarg, NULL, 10); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!url || !spec || lg->nconns == 0 || lg->nconns > 10000 ||
      (!lg->count && lg->duration_s <= 0)) {
    usage(stderr);
    return 2;
  }
  if (sscanf(url, "http://%255[^:/]:%d", lg->host, &lg->port) != 2 ||
      lg->port <= 0 || lg->port > 65535) {
    fprintf(stderr, "loadgen: --url must be http://HOST:PORT\n");
    return 2;
  }
  const char *ip = strcmp(lg->host, "localhost") == 0 ? "127.0.0.1" : lg->host;
  if (uv_ip4_addr(ip, lg->port, &lg->addr)) {
    fprintf(stderr, "loadgen: host must be an IPv4 literal or localhost\n");
    return 2;
  }
  load_spec(lg, spec);
  if (ids)
    load_ids(lg, ids);
  if ((uses(lg, "{store}") || uses(lg, "{store2}")) && lg->n_stores == 0) {
    fprintf(stderr, "loadgen: the spec uses {store} but --ids has no stores\n");
    return 2;
  }
  if (uses(lg, "{store2}") && lg->n_stores < 2) {
    fprintf(stderr, "loadgen: {store2} needs at least two stores\n");
    return 2;
  }
  if (uses(lg, "{product}") && lg->n_products == 0) {
    fprintf(stderr, "loadgen: the spec uses {product} but --ids has no "
                    "products\n");
    return 2;
  }
  if (lg->capture_out)
    lg->captures = json_array();
  lg->rng = lg->seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
  bench_hist_reset(&lg->lat);
  bench_hist_reset(&lg->svc);

  uv_loop_t loop;
  uv_loop_init(&loop);
  lg->loop = &loop;
  lg->conns = calloc(lg->nconns, sizeof(conn_t));
  if (!lg->conns)
    return 2;
  uv_timer_init(&loop, &lg->end_timer);
  uv_timer_init(&loop, &lg->kill_timer);
  lg->end_timer.data = lg->kill_timer.data = lg;
  lg->t_start = bench_now_ns();
  if (!lg->count) {
    lg->t_measure = lg->t_start + (uint64_t)(lg->warmup_s * 1e9);
    lg->t_end = lg->t_measure + (uint64_t)(lg->duration_s * 1e9);
    uv_timer_start(&lg->end_timer, end_timer_cb,
                   (uint64_t)((lg->warmup_s + lg->duration_s) * 1000), 0);
  }
  for (unsigned i = 0; i < lg->nconns; i++) {
    conn_t *c = &lg->conns[i];
    c->lg = lg;
    c->idx = i;
    c->req = malloc(REQ_CAP);
    if (!c->req)
      return 2;
    uv_timer_init(&loop, &c->timer);
    c->timer.data = c;
    conn_open(c);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  report(lg);
  int rc = uv_loop_close(&loop);
  if (rc)
    fprintf(stderr, "loadgen: loop close: %s\n", uv_strerror(rc));

  for (size_t i = 0; i < lg->n_ops; i++)
    free_op(&lg->ops[i]);
  for (size_t i = 0; i < lg->n_stores; i++)
    free(lg->stores[i]);
  for (size_t i = 0; i < lg->n_products; i++)
    free(lg->products[i]);
  free(lg->stores);
  free(lg->products);
  for (int s = 0; s < 600; s++)
    free(lg->sample[s]);
  json_decref(lg->captures);
  for (unsigned i = 0; i < lg->nconns; i++)
    free(lg->conns[i].req);
  free(lg->conns);
  bool failed = lg->measured == 0 || lg->ok == 0;
  free(lg);
  return failed ? 1 : 0;
}

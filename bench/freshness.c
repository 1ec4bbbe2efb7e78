/* freshness: the read side's change-stream benchmarks, on libuv + llhttp.
 *
 * Freshness (default mode): opens N Server-Sent-Events subscriptions to
 * GET /v1/changes?store_id=<s> on the query service, spread round robin over
 * the stores of an id file, waits until every one answered 200, then sends
 * writes (POST /v1/stores/{store}/transactions, a sale of 1 unit, stores in
 * turn, products at random) to the command service at a paced rate, open
 * loop: write k is due at t0 + k/rate and goes out on the first free
 * keep-alive connection. For every write it keeps the time it was sent and
 * the time its 201 answer arrived, with the answer's transaction_id; for
 * every `change` frame a subscriber receives it keeps (subscriber, arrival
 * time) under the frame's transaction_id. The report: per (write,
 * subscriber of its store) the time from the write's answer to the change's
 * arrival, and from the write's send, as p50/p99/p99.9; per write the first
 * and the last subscriber's arrival; plus what was missing, repeated or
 * unknown. Everything runs in one process on one loop thread, so all times
 * are CLOCK_MONOTONIC of the same clock.
 *
 * Idle (--idle): opens N subscriptions the same way, holds them for --hold
 * seconds with no writes, and reads the query service's VmRSS
 * (/proc/<--pid>/status) before, once all are open and after the hold.
 *
 * The tool raises its own RLIMIT_NOFILE to what N needs (the server's limit
 * is the caller's business). Subscriptions are opened at most --open-window
 * at a time, so a large N does not overflow the server's accept backlog. */
#define _GNU_SOURCE /* memmem */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <uv.h>

#include "bench_util.h"

#define MAX_HEADERS 8
#define LINE_CAP 2048
#define RESP_CAP 4096
#define REQ_CAP 2048
#define TXID_LEN 36 /* a UUID in text */

typedef struct fr fr_t;

/* One SSE subscription. */
typedef struct sub {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  llhttp_t parser;
  fr_t *fr;
  uint32_t idx, store;
  bool open;      /* tcp handle initialised and not closing */
  bool ok;        /* answered 200 */
  bool closed;    /* ended (failed, dropped or closed by us) */
  bool is_change; /* the current SSE message is `event: change` */
  bool line_overflow;
  uint64_t read_ns; /* time of the read being parsed */
  size_t line_len;
  char line[LINE_CAP];
  char req[REQ_CAP];
  size_t req_len;
} sub_t;

/* One write's connection to the command service. */
typedef struct wconn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  llhttp_t parser;
  fr_t *fr;
  uint32_t idx;
  bool open, connected, busy, answered, keep_alive, truncated;
  int status;
  int64_t w; /* write in flight */
  size_t resp_len, req_len;
  char resp[RESP_CAP];
  char req[REQ_CAP];
} wconn_t;

/* One write. */
typedef struct wr {
  uint64_t intended_ns, sent_ns, answer_ns;
  uint32_t store;
  int status;        /* 0 while unanswered, -1 on a connection failure */
  int64_t entry;     /* index into the txid table, -1 without a txid */
  uint32_t expected; /* live subscribers of its store at its answer */
} wr_t;

typedef struct arrival {
  uint32_t sub;
  uint64_t t;
} arrival_t;

/* The arrivals of one transaction_id (slot of an open-addressing table). */
typedef struct entry {
  bool used;
  char txid[TXID_LEN + 1];
  int64_t w; /* the write that answered it, -1 until known */
  uint32_t n, cap, dups;
  arrival_t *arr; /* owned */
} entry_t;

struct fr {
  uv_loop_t *loop;
  /* options */
  struct sockaddr_in qaddr, caddr;
  char qhost[256], chost[256];
  int qport, cport;
  const char *headers[MAX_HEADERS];
  size_t n_headers;
  bool idle;
  uint32_t nsubs, nwriters, open_window;
  double rate, duration_s, warmup_s, drain_s, hold_s, settle_s;
  int pid;
  const char *json_out, *label;
  uint64_t rng;
  char **stores, **products;
  size_t n_stores, n_products;
  /* subscriptions */
  sub_t *subs;
  uint32_t next_sub, opening, subs_ok, subs_failed, subs_dropped;
  uint32_t *live_per_store;
  uint64_t t_open_start, t_open_done;
  uint64_t frames_change, frames_other, overflows, pings_or_comments;
  char *fail_sample;
  /* writes */
  wconn_t *wconns;
  wr_t *writes;
  uint64_t n_writes, next_write, answered, write_errors, status201;
  uint64_t t0, t_last_answer;
  uint64_t matched, expected_total;
  /* txid table */
  entry_t *tab;
  size_t tab_cap, tab_used;
  uint64_t untracked;
  /* timers and the end */
  uv_timer_t tick, phase;
  bool writing, finishing;
  long rss_before_kib, rss_open_kib, rss_hold_kib;
  char slab[65536]; /* read buffer: one loop thread, reads never overlap */
};

static void start_writes(fr_t *fr);
static void finish(fr_t *fr);
static void open_next_subs(fr_t *fr);

/* ---- helpers ---- */

static uint64_t rnd(fr_t *fr) {
  uint64_t x = fr->rng; /* xorshift64* */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  fr->rng = x;
  return x * UINT64_C(2685821657736338717);
}

static void die_oom(void) {
  fprintf(stderr, "freshness: out of memory\n");
  exit(2);
}

static uint64_t hash_txid(const char *s) {
  uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
  for (size_t i = 0; i < TXID_LEN; i++) {
    h ^= (unsigned char)s[i];
    h *= UINT64_C(1099511628211);
  }
  return h;
}

/* The entry of txid (TXID_LEN chars), created when absent; -1 when the
 * table is too full to add it. */
static int64_t entry_get(fr_t *fr, const char *txid) {
  size_t mask = fr->tab_cap - 1;
  size_t i = (size_t)hash_txid(txid) & mask;
  while (fr->tab[i].used) {
    if (memcmp(fr->tab[i].txid, txid, TXID_LEN) == 0)
      return (int64_t)i;
    i = (i + 1) & mask;
  }
  if (fr->tab_used * 10 >= fr->tab_cap * 7)
    return -1;
  entry_t *e = &fr->tab[i];
  e->used = true;
  memcpy(e->txid, txid, TXID_LEN);
  e->txid[TXID_LEN] = '\0';
  e->w = -1;
  fr->tab_used++;
  return (int64_t)i;
}

static void handle_closed_cb(uv_handle_t *h) { (void)h; }

/* ---- subscriptions ---- */

static void sub_close(sub_t *s) {
  if (s->open) {
    s->open = false;
    uv_close((uv_handle_t *)&s->tcp, handle_closed_cb);
  }
}

/* A subscription ended: before its 200 it failed, after it dropped. */
static void sub_end(sub_t *s, const char *why) {
  fr_t *fr = s->fr;
  if (s->closed)
    return;
  s->closed = true;
  if (s->ok) {
    if (!fr->finishing) {
      fr->subs_dropped++;
      fr->live_per_store[s->store]--;
      if (fr->subs_dropped <= 3)
        fprintf(stderr, "freshness: subscriber %u dropped: %s\n", s->idx, why);
    }
  } else {
    fr->subs_failed++;
    fr->opening--;
    if (fr->subs_failed <= 3)
      fprintf(stderr, "freshness: subscriber %u failed: %s\n", s->idx, why);
  }
  sub_close(s);
  if (!fr->finishing)
    open_next_subs(fr);
}

/* An arrival of txid at subscriber s. */
static void record_arrival(sub_t *s, const char *txid) {
  fr_t *fr = s->fr;
  int64_t ei = entry_get(fr, txid);
  if (ei < 0) {
    fr->untracked++;
    return;
  }
  entry_t *e = &fr->tab[ei];
  for (uint32_t i = 0; i < e->n; i++)
    if (e->arr[i].sub == s->idx) {
      e->dups++;
      return;
    }
  if (e->n == e->cap) {
    uint32_t cap = e->cap ? e->cap * 2 : 8;
    arrival_t *a = realloc(e->arr, cap * sizeof(*a));
    if (!a)
      die_oom();
    e->arr = a;
    e->cap = cap;
  }
  e->arr[e->n++] = (arrival_t){.sub = s->idx, .t = s->read_ns};
  if (e->w >= 0)
    fr->matched++;
}

/* One SSE line (without its end of line). */
static void sse_line(sub_t *s, const char *l, size_t n) {
  fr_t *fr = s->fr;
  if (n == 0) { /* end of a message */
    s->is_change = false;
    return;
  }
  if (l[0] == ':') {
    fr->pings_or_comments++;
    return;
  }
  if (n >= 6 && memcmp(l, "event:", 6) == 0) {
    const char *v = l + 6;
    size_t vn = n - 6;
    if (vn && *v == ' ')
      v++, vn--;
    s->is_change = vn == 6 && memcmp(v, "change", 6) == 0;
    if (!s->is_change) {
      fr->frames_other++;
      if (vn == 8 && memcmp(v, "overflow", 8) == 0)
        fr->overflows++;
    }
    return;
  }
  if (n >= 5 && memcmp(l, "data:", 5) == 0 && s->is_change) {
    static const char key[] = "\"transaction_id\":\"";
    fr->frames_change++;
    const char *p = memmem(l, n, key, sizeof(key) - 1);
    if (!p)
      return;
    p += sizeof(key) - 1;
    if ((size_t)(l + n - p) < TXID_LEN + 1 || p[TXID_LEN] != '"')
      return;
    record_arrival(s, p);
  }
}

static int sub_on_headers_complete(llhttp_t *p) {
  sub_t *s = p->data;
  fr_t *fr = s->fr;
  int st = llhttp_get_status_code(p);
  if (st != 200) {
    if (!fr->fail_sample) {
      char b[64];
      snprintf(b, sizeof(b), "status %d", st);
      fr->fail_sample = strdup(b);
    }
    return -1; /* llhttp_execute fails; read_cb ends it */
  }
  s->ok = true;
  fr->subs_ok++;
  fr->opening--;
  fr->live_per_store[s->store]++;
  return HPE_OK;
}

static int sub_on_body(llhttp_t *p, const char *at, size_t len) {
  sub_t *s = p->data;
  for (size_t i = 0; i < len; i++) {
    char ch = at[i];
    if (ch == '\n') {
      size_t n = s->line_len;
      if (n && s->line[n - 1] == '\r')
        n--;
      if (!s->line_overflow)
        sse_line(s, s->line, n);
      s->line_len = 0;
      s->line_overflow = false;
    } else if (s->line_len < LINE_CAP) {
      s->line[s->line_len++] = ch;
    } else {
      s->line_overflow = true;
    }
  }
  return 0;
}

static const llhttp_settings_t *sub_settings(void) {
  static const llhttp_settings_t st = {
      .on_headers_complete = sub_on_headers_complete,
      .on_body = sub_on_body,
  };
  return &st;
}

static void sub_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  sub_t *s = h->data;
  *buf = uv_buf_init(s->fr->slab, sizeof(s->fr->slab));
}

static void sub_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sub_t *s = st->data;
  if (nread == 0)
    return;
  if (nread < 0) {
    sub_end(s, uv_strerror((int)nread));
    return;
  }
  s->read_ns = bench_now_ns();
  bool was_ok = s->ok;
  llhttp_errno_t err = llhttp_execute(&s->parser, buf->base, (size_t)nread);
  if (err != HPE_OK) {
    sub_end(s, s->ok ? llhttp_errno_name(err) : "not 200");
    return;
  }
  if (!was_ok && s->ok)
    open_next_subs(s->fr);
}

static void sub_write_cb(uv_write_t *w, int status) {
  sub_t *s = w->data;
  if (status < 0 && status != UV_ECANCELED)
    sub_end(s, uv_strerror(status));
}

static void sub_connect_cb(uv_connect_t *req, int status) {
  sub_t *s = req->data;
  if (!s->open)
    return;
  if (status < 0) {
    sub_end(s, uv_strerror(status));
    return;
  }
  llhttp_init(&s->parser, HTTP_RESPONSE, sub_settings());
  s->parser.data = s;
  int rc = uv_read_start((uv_stream_t *)&s->tcp, sub_alloc_cb, sub_read_cb);
  if (rc) {
    sub_end(s, uv_strerror(rc));
    return;
  }
  uv_buf_t b = uv_buf_init(s->req, (unsigned)s->req_len);
  s->wreq.data = s;
  rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, sub_write_cb);
  if (rc)
    sub_end(s, uv_strerror(rc));
}

static void sub_open(fr_t *fr, sub_t *s) {
  int rc = uv_tcp_init(fr->loop, &s->tcp);
  if (rc) {
    fprintf(stderr, "freshness: tcp init: %s\n", uv_strerror(rc));
    exit(2);
  }
  s->tcp.data = s;
  s->open = true;
  s->creq.data = s;
  fr->opening++;
  rc = uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&fr->qaddr,
                      sub_connect_cb);
  if (rc)
    sub_end(s, uv_strerror(rc));
}

static void phase_hold_done(uv_timer_t *t);
static void phase_settled(uv_timer_t *t);

/* Keeps open_window subscriptions opening; when all are settled, moves on
 * (idle: the hold; freshness: a settle pause, then the writes). */
static void open_next_subs(fr_t *fr) {
  while (fr->next_sub < fr->nsubs && fr->opening < fr->open_window)
    sub_open(fr, &fr->subs[fr->next_sub++]);
  if (fr->t_open_done || fr->next_sub < fr->nsubs || fr->opening > 0)
    return;
  fr->t_open_done = bench_now_ns();
  fprintf(stderr, "freshness: %u of %u subscriptions open (%u failed) in "
                  "%.2f s\n",
          fr->subs_ok, fr->nsubs, fr->subs_failed,
          (double)(fr->t_open_done - fr->t_open_start) / 1e9);
  if (fr->subs_ok == 0) {
    finish(fr);
    return;
  }
  if (fr->idle) {
    if (fr->pid > 0)
      fr->rss_open_kib = bench_rss_kib(fr->pid);
    uv_timer_start(&fr->phase, phase_hold_done,
                   (uint64_t)(fr->hold_s * 1000), 0);
  } else {
    uv_timer_start(&fr->phase, phase_settled,
                   (uint64_t)(fr->settle_s * 1000), 0);
  }
}

static void phase_hold_done(uv_timer_t *t) {
  fr_t *fr = t->data;
  if (fr->pid > 0)
    fr->rss_hold_kib = bench_rss_kib(fr->pid);
  finish(fr);
}

static void phase_settled(uv_timer_t *t) { start_writes(t->data); }

/* ---- writes ---- */

static void wconn_open(wconn_t *c);

static void wconn_reopen_cb(uv_handle_t *h) {
  wconn_t *c = h->data;
  if (!c->fr->finishing)
    wconn_open(c);
}

/* A write's connection failed: its write (if any) counts as an error and
 * the connection is reopened. */
static void wconn_failed(wconn_t *c, const char *why) {
  fr_t *fr = c->fr;
  if (c->busy) {
    c->busy = false;
    fr->writes[c->w].status = -1;
    fr->write_errors++;
    fr->answered++;
    if (fr->write_errors <= 3)
      fprintf(stderr, "freshness: write connection %u: %s\n", c->idx, why);
  }
  c->connected = false;
  if (c->open) {
    c->open = false;
    uv_close((uv_handle_t *)&c->tcp, wconn_reopen_cb);
  }
}

static int w_on_message_begin(llhttp_t *p) {
  wconn_t *c = p->data;
  c->resp_len = 0;
  c->truncated = false;
  return 0;
}

static int w_on_body(llhttp_t *p, const char *at, size_t len) {
  wconn_t *c = p->data;
  size_t room = RESP_CAP - 1 - c->resp_len;
  if (len > room) {
    len = room;
    c->truncated = true;
  }
  memcpy(c->resp + c->resp_len, at, len);
  c->resp_len += len;
  c->resp[c->resp_len] = '\0';
  return 0;
}

static int w_on_message_complete(llhttp_t *p) {
  wconn_t *c = p->data;
  c->status = llhttp_get_status_code(p);
  c->keep_alive = llhttp_should_keep_alive(p);
  c->answered = true;
  return HPE_PAUSED;
}

static const llhttp_settings_t *w_settings(void) {
  static const llhttp_settings_t st = {
      .on_message_begin = w_on_message_begin,
      .on_body = w_on_body,
      .on_message_complete = w_on_message_complete,
  };
  return &st;
}

/* The answer of the write in flight on c arrived at now. */
static void write_answered(wconn_t *c, uint64_t now) {
  fr_t *fr = c->fr;
  wr_t *w = &fr->writes[c->w];
  c->busy = false;
  w->answer_ns = now;
  w->status = c->status;
  fr->answered++;
  fr->t_last_answer = now;
  if (c->status != 201) {
    fr->write_errors++;
    if (fr->write_errors <= 3)
      fprintf(stderr, "freshness: write answered %d: %.200s\n", c->status,
              c->resp);
    return;
  }
  fr->status201++;
  json_error_t jerr;
  json_t *doc = c->truncated ? NULL : json_loadb(c->resp, c->resp_len, 0, &jerr);
  const char *tx = doc ? json_string_value(json_object_get(doc, "transaction_id"))
                       : NULL;
  if (!tx || strlen(tx) != TXID_LEN) {
    fr->write_errors++;
    fprintf(stderr, "freshness: a 201 without a transaction_id: %.200s\n",
            c->resp);
    json_decref(doc);
    return;
  }
  int64_t ei = entry_get(fr, tx);
  json_decref(doc);
  if (ei < 0) {
    fr->untracked++;
    return;
  }
  entry_t *e = &fr->tab[ei];
  e->w = c->w;
  w->entry = ei;
  w->expected = fr->live_per_store[w->store];
  fr->expected_total += w->expected;
  fr->matched += e->n; /* arrivals seen before the answer was read */
}

static void w_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  wconn_t *c = st->data;
  if (nread == 0)
    return;
  if (nread < 0) {
    wconn_failed(c, uv_strerror((int)nread));
    return;
  }
  uint64_t now = bench_now_ns();
  c->answered = false;
  llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
  if (err == HPE_PAUSED)
    llhttp_resume(&c->parser);
  else if (err != HPE_OK) {
    wconn_failed(c, llhttp_errno_name(err));
    return;
  }
  if (!c->answered || !c->busy)
    return;
  write_answered(c, now);
  if (!c->keep_alive)
    wconn_failed(c, "server closed the connection");
}

static void w_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  wconn_t *c = h->data;
  *buf = uv_buf_init(c->fr->slab, sizeof(c->fr->slab));
}

static void w_connect_cb(uv_connect_t *req, int status) {
  wconn_t *c = req->data;
  if (!c->open)
    return;
  if (status < 0) {
    fprintf(stderr, "freshness: connect to the command service: %s\n",
            uv_strerror(status));
    c->fr->write_errors++;
    if (c->fr->write_errors > 1000) {
      fprintf(stderr, "freshness: giving up\n");
      exit(1);
    }
    wconn_failed(c, uv_strerror(status));
    return;
  }
  c->connected = true;
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_RESPONSE, w_settings());
  c->parser.data = c;
  int rc = uv_read_start((uv_stream_t *)&c->tcp, w_alloc_cb, w_read_cb);
  if (rc)
    wconn_failed(c, uv_strerror(rc));
}

static void wconn_open(wconn_t *c) {
  fr_t *fr = c->fr;
  uv_tcp_init(fr->loop, &c->tcp);
  c->tcp.data = c;
  c->open = true;
  c->connected = false;
  c->creq.data = c;
  int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&fr->caddr,
                          w_connect_cb);
  if (rc) {
    fprintf(stderr, "freshness: connect: %s\n", uv_strerror(rc));
    exit(2);
  }
}

static void w_write_cb(uv_write_t *req, int status) {
  wconn_t *c = req->data;
  if (status < 0 && status != UV_ECANCELED)
    wconn_failed(c, uv_strerror(status));
}

/* Sends write k on c. */
static void write_send(fr_t *fr, wconn_t *c, uint64_t k) {
  wr_t *w = &fr->writes[k];
  w->store = (uint32_t)(k % fr->n_stores);
  w->entry = -1;
  const char *product = fr->products[rnd(fr) % fr->n_products];
  char body[256];
  int bn = snprintf(body, sizeof(body),
                    "{\"product_id\":\"%s\",\"type\":\"sale\",\"quantity\":1}",
                    product);
  int n = snprintf(c->req, REQ_CAP,
                   "POST /v1/stores/%s/transactions HTTP/1.1\r\nHost: %s:%d\r\n",
                   fr->stores[w->store], fr->chost, fr->cport);
  size_t len = (size_t)n;
  for (size_t i = 0; i < fr->n_headers && len < REQ_CAP; i++)
    len += (size_t)snprintf(c->req + len, REQ_CAP - len, "%s\r\n",
                            fr->headers[i]);
  if (len < REQ_CAP)
    len += (size_t)snprintf(c->req + len, REQ_CAP - len,
                            "Content-Type: application/json\r\n"
                            "Content-Length: %d\r\n\r\n%s",
                            bn, body);
  if (len >= REQ_CAP) {
    fprintf(stderr, "freshness: request too large\n");
    exit(2);
  }
  c->req_len = len;
  c->busy = true;
  c->w = (int64_t)k;
  w->sent_ns = bench_now_ns();
  uv_buf_t b = uv_buf_init(c->req, (unsigned)len);
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, w_write_cb);
  if (rc)
    wconn_failed(c, uv_strerror(rc));
}

/* Ends the run when every arrival that can come has come, or the drain
 * time after the last answer is over. */
static void check_done(fr_t *fr, uint64_t now) {
  if (fr->next_write < fr->n_writes || fr->answered < fr->n_writes)
    return;
  if (fr->matched >= fr->expected_total ||
      now - fr->t_last_answer >= (uint64_t)(fr->drain_s * 1e9))
    finish(fr);
}

/* Every millisecond: sends the writes that are due on free connections (a
 * write waiting for one keeps its intended time). */
static void tick_cb(uv_timer_t *t) {
  fr_t *fr = t->data;
  uint64_t now = bench_now_ns();
  double due_d = (double)(now - fr->t0) * fr->rate / 1e9 + 1;
  uint64_t due = due_d >= (double)fr->n_writes ? fr->n_writes : (uint64_t)due_d;
  uint32_t ci = 0;
  while (fr->next_write < due) {
    while (ci < fr->nwriters &&
           (!fr->wconns[ci].connected || fr->wconns[ci].busy))
      ci++;
    if (ci == fr->nwriters)
      break; /* all busy: the write waits, its lateness counts */
    write_send(fr, &fr->wconns[ci], fr->next_write++);
  }
  check_done(fr, now);
}

static void start_writes(fr_t *fr) {
  uint32_t ready = 0;
  for (uint32_t i = 0; i < fr->nwriters; i++)
    ready += fr->wconns[i].connected;
  fprintf(stderr, "freshness: %u subscribers live (%u dropped); writing %" PRIu64 " sales at %.0f/s over %u connections (%u connected)\n",
          fr->subs_ok - fr->subs_dropped, fr->subs_dropped, fr->n_writes,
          fr->rate, fr->nwriters, ready);
  fr->writing = true;
  fr->t0 = bench_now_ns();
  for (uint64_t k = 0; k < fr->n_writes; k++)
    fr->writes[k].intended_ns =
        fr->t0 + (uint64_t)((double)k * 1e9 / fr->rate);
  uv_timer_start(&fr->tick, tick_cb, 1, 1);
}

/* ---- the end ---- */

static void finish(fr_t *fr) {
  if (fr->finishing)
    return;
  fr->finishing = true;
  uv_timer_stop(&fr->tick);
  uv_timer_stop(&fr->phase);
  uv_close((uv_handle_t *)&fr->tick, handle_closed_cb);
  uv_close((uv_handle_t *)&fr->phase, handle_closed_cb);
  for (uint32_t i = 0; i < fr->nsubs; i++)
    sub_close(&fr->subs[i]);
  for (uint32_t i = 0; i < fr->nwriters; i++) {
    wconn_t *c = &fr->wconns[i];
    if (c->open) {
      c->open = false;
      uv_close((uv_handle_t *)&c->tcp, handle_closed_cb);
    }
  }
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

/* CPU seconds (user + system) this process used so far. */
static double cpu_self_s(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -1;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static json_t *hist_json(const bench_hist_t *h) {
  return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "n", (json_int_t)h->n,
                   "p50", ms(bench_hist_quantile(h, 0.50)), "p90",
                   ms(bench_hist_quantile(h, 0.90)), "p99",
                   ms(bench_hist_quantile(h, 0.99)), "p999",
                   ms(bench_hist_quantile(h, 0.999)), "max",
                   ms(h->n ? h->max : 0), "mean", bench_hist_mean(h) / 1e6);
}

static void print_hist(const char *name, const bench_hist_t *h) {
  printf("  %-22s n %-9" PRIu64 " p50 %8.3f  p90 %8.3f  p99 %8.3f  p99.9 "
         "%8.3f  max %8.3f ms\n",
         name, h->n, ms(bench_hist_quantile(h, 0.5)),
         ms(bench_hist_quantile(h, 0.9)), ms(bench_hist_quantile(h, 0.99)),
         ms(bench_hist_quantile(h, 0.999)), ms(h->n ? h->max : 0));
}

static int report_idle(fr_t *fr) {
  double mb_hold = fr->rss_hold_kib / 1024.0;
  double mb_before = fr->rss_before_kib / 1024.0;
  uint32_t held = fr->subs_ok - fr->subs_dropped;
  double per_sub_kib =
      held ? (double)(fr->rss_hold_kib - fr->rss_before_kib) / held : 0;
  double open_s = (double)(fr->t_open_done - fr->t_open_start) / 1e9;
  printf("%s%s%sidle subscribers: %u asked, %u answered 200, %u failed, %u "
         "dropped during the %.0f s hold\n",
         fr->label ? "[" : "", fr->label ? fr->label : "",
         fr->label ? "] " : "", fr->nsubs, fr->subs_ok, fr->subs_failed,
         fr->subs_dropped, fr->hold_s);
  printf("  opened in %.2f s; query service VmRSS %.1f MB before, %.1f MB "
         "all open, %.1f MB after the hold (%.1f KiB per subscriber above "
         "the baseline); this client %.1f MB\n",
         open_s, mb_before, fr->rss_open_kib / 1024.0, mb_hold, per_sub_kib,
         bench_rss_kib(0) / 1024.0);
  if (fr->fail_sample)
    printf("  first failure: %s\n", fr->fail_sample);
  if (fr->json_out) {
    json_t *doc = json_pack(
        "{s:s,s:s?,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I}",
        "mode", "idle", "label", fr->label, "subscribers", (int)fr->nsubs,
        "opened", (int)fr->subs_ok, "failed", (int)fr->subs_failed,
        "dropped", (int)fr->subs_dropped, "held", (int)held, "hold_s",
        fr->hold_s, "open_s", open_s, "rss_before_mb", mb_before,
        "rss_open_mb", fr->rss_open_kib / 1024.0, "rss_hold_mb", mb_hold,
        "kib_per_subscriber", per_sub_kib, "client_rss_mb",
        bench_rss_kib(0) / 1024.0, "frames_change",
        (json_int_t)fr->frames_change, "frames_other",
        (json_int_t)fr->frames_other);
    if (!doc || json_dump_file(doc, fr->json_out, JSON_INDENT(1)) != 0)
      fprintf(stderr, "freshness: cannot write %s\n", fr->json_out);
    json_decref(doc);
  }
  bool ok = fr->subs_ok == fr->nsubs && fr->subs_dropped == 0 &&
            (fr->pid <= 0 || fr->rss_hold_kib > 0);
  return ok ? 0 : 1;
}

static int report_freshness(fr_t *fr) {
  bench_hist_t *h_ans = malloc(sizeof(*h_ans)), *h_send = malloc(sizeof(*h_send));
  bench_hist_t *h_first = malloc(sizeof(*h_first)), *h_last = malloc(sizeof(*h_last));
  bench_hist_t *h_wlat = malloc(sizeof(*h_wlat)), *h_wsvc = malloc(sizeof(*h_wsvc));
  if (!h_ans || !h_send || !h_first || !h_last || !h_wlat || !h_wsvc)
    die_oom();
  bench_hist_reset(h_ans);
  bench_hist_reset(h_send);
  bench_hist_reset(h_first);
  bench_hist_reset(h_last);
  bench_hist_reset(h_wlat);
  bench_hist_reset(h_wsvc);
  uint64_t t_measure = fr->t0 + (uint64_t)(fr->warmup_s * 1e9);
  uint64_t measured = 0, measured_ok = 0, expected = 0, received = 0;
  uint64_t missing = 0, early = 0, dups = 0, incomplete = 0;
  uint64_t first_w = UINT64_MAX, last_w = 0;
  for (uint64_t k = 0; k < fr->next_write; k++) {
    wr_t *w = &fr->writes[k];
    if (w->intended_ns < t_measure)
      continue;
    measured++;
    if (w->status != 201 || w->entry < 0)
      continue;
    measured_ok++;
    if (w->intended_ns < first_w)
      first_w = w->intended_ns;
    if (w->answer_ns > last_w)
      last_w = w->answer_ns;
    bench_hist_record(h_wlat, w->answer_ns - w->intended_ns);
    bench_hist_record(h_wsvc, w->answer_ns - w->sent_ns);
    entry_t *e = &fr->tab[w->entry];
    expected += w->expected;
    received += e->n;
    dups += e->dups;
    if (e->n < w->expected) {
      missing += w->expected - e->n;
      incomplete++;
    }
    uint64_t first = UINT64_MAX, last = 0;
    for (uint32_t i = 0; i < e->n; i++) {
      uint64_t t = e->arr[i].t;
      if (t < w->answer_ns)
        early++;
      bench_hist_record(h_ans, t > w->answer_ns ? t - w->answer_ns : 0);
      bench_hist_record(h_send, t - w->sent_ns);
      if (t < first)
        first = t;
      if (t > last)
        last = t;
    }
    if (e->n) {
      bench_hist_record(h_first, first > w->answer_ns ? first - w->answer_ns : 0);
      if (e->n >= w->expected)
        bench_hist_record(h_last, last > w->answer_ns ? last - w->answer_ns : 0);
    }
  }
  uint64_t foreign = 0;
  for (size_t i = 0; i < fr->tab_cap; i++)
    if (fr->tab[i].used && fr->tab[i].w < 0)
      foreign += fr->tab[i].n;
  double span = last_w > first_w ? (double)(last_w - first_w) / 1e9 : 0;
  double achieved = span > 0 ? (double)measured_ok / span : 0;
  printf("%s%s%sfreshness: %u subscribers (%u stores, %u failed, %u "
         "dropped), %.0f sales/s offered over %u connections, %.0f s "
         "measured after %.0f s warm-up\n",
         fr->label ? "[" : "", fr->label ? fr->label : "",
         fr->label ? "] " : "", fr->subs_ok, (unsigned)fr->n_stores,
         fr->subs_failed, fr->subs_dropped, fr->rate, fr->nwriters,
         fr->duration_s, fr->warmup_s);
  printf("  writes measured %" PRIu64 ", 201 %" PRIu64 " (%.0f/s achieved), "
         "errors (whole run) %" PRIu64 "\n",
         measured, measured_ok, achieved, fr->write_errors);
  print_hist("write latency", h_wlat);
  print_hist("write service time", h_wsvc);
  print_hist("answer -> arrival", h_ans);
  print_hist("send -> arrival", h_send);
  print_hist("answer -> first sub", h_first);
  print_hist("answer -> last sub", h_last);
  double cpu = cpu_self_s();
  double wall = (double)(bench_now_ns() - fr->t_open_start) / 1e9;
  printf("  this client: %.1f CPU s over %.1f s (%.0f %% of a core)\n", cpu,
         wall, wall > 0 ? 100 * cpu / wall : 0);
  printf("  arrivals %" PRIu64 " of %" PRIu64 " expected (missing %" PRIu64
         " over %" PRIu64 " writes), duplicates %" PRIu64 ", before the "
         "answer was read %" PRIu64 ", unknown transaction ids %" PRIu64
         ", untracked %" PRIu64 ", overflow messages %" PRIu64 "\n",
         received, expected, missing, incomplete, dups, early, foreign,
         fr->untracked, fr->overflows);
  if (fr->json_out) {
    json_t *doc = json_pack(
        "{s:s,s:s?,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:f,s:I,s:I,s:f,s:I,"
        "s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:f,"
        "s:f}",
        "mode", "freshness", "label", fr->label, "subscribers",
        (int)fr->nsubs, "opened", (int)fr->subs_ok, "failed",
        (int)fr->subs_failed, "dropped", (int)fr->subs_dropped, "stores",
        (int)fr->n_stores, "rate_target", fr->rate, "duration_s",
        fr->duration_s, "warmup_s", fr->warmup_s, "writes",
        (json_int_t)measured, "writes_ok", (json_int_t)measured_ok,
        "writes_per_s", achieved, "write_errors",
        (json_int_t)fr->write_errors, "write_latency_ms", hist_json(h_wlat),
        "write_service_ms", hist_json(h_wsvc), "answer_to_arrival_ms",
        hist_json(h_ans), "send_to_arrival_ms", hist_json(h_send),
        "answer_to_first_ms", hist_json(h_first), "answer_to_last_ms",
        hist_json(h_last), "expected", (json_int_t)expected, "received",
        (json_int_t)received, "missing", (json_int_t)missing,
        "incomplete_writes", (json_int_t)incomplete, "duplicates",
        (json_int_t)dups, "early", (json_int_t)early, "foreign",
        (json_int_t)foreign, "overflows", (json_int_t)fr->overflows,
        "writers", (int)fr->nwriters, "client_cpu_s", cpu, "client_wall_s",
        wall);
    if (!doc || json_dump_file(doc, fr->json_out, JSON_INDENT(1)) != 0)
      fprintf(stderr, "freshness: cannot write %s\n", fr->json_out);
    json_decref(doc);
  }
  bool ok = measured_ok > 0 && h_ans->n > 0;
  free(h_ans);
  free(h_send);
  free(h_first);
  free(h_last);
  free(h_wlat);
  free(h_wsvc);
  return ok ? 0 : 1;
}

/* ---- setup ---- */

static char **load_id_list(json_t *doc, const char *key, size_t *n) {
  json_t *a = json_object_get(doc, key);
  *n = 0;
  if (!json_is_array(a) || json_array_size(a) == 0) {
    fprintf(stderr, "freshness: ids: \"%s\" must be a non-empty array\n", key);
    exit(2);
  }
  char **out = calloc(json_array_size(a), sizeof(char *));
  if (!out)
    die_oom();
  for (size_t i = 0; i < json_array_size(a); i++) {
    const char *s = json_string_value(json_array_get(a, i));
    if (!s || strlen(s) != TXID_LEN) {
      fprintf(stderr, "freshness: ids: %s[%zu] is not a UUID string\n", key, i);
      exit(2);
    }
    out[(*n)++] = strdup(s);
  }
  return out;
}

static int parse_url(const char *url, char *host, int *port,
                     struct sockaddr_in *addr) {
  if (!url || sscanf(url, "http://%255[^:/]:%d", host, port) != 2 ||
      *port <= 0 || *port > 65535)
    return -1;
  const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
  return uv_ip4_addr(ip, *port, addr) ? -1 : 0;
}

/* Raises this process's open-file limit to at least need (up to the hard
 * limit, and the hard limit itself when allowed). */
static void raise_nofile(rlim_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur >= need)
    return;
  if (rl.rlim_max < need) {
    struct rlimit up = {need, need};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
      return;
  }
  rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
    fprintf(stderr, "freshness: open files limited to %llu (%llu wanted)\n",
            (unsigned long long)rl.rlim_cur, (unsigned long long)need);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: sf-freshness --query-url http://HOST:PORT --ids IDS.json\n"
          "                    [--command-url http://HOST:PORT] [options]\n"
          "  --ids FILE          {\"stores\": [...], \"products\": [...]}; the\n"
          "                      subscribers are spread round robin over the stores\n"
          "  -s, --subscribers N SSE subscriptions to GET /v1/changes?store_id=\n"
          "                      (default 1000)\n"
          "  -H, --header 'Name: value'  added to every request (repeatable), e.g.\n"
          "                      'Authorization: Bearer TOKEN'\n"
          "  --open-window N     subscriptions opening at once (default 200)\n"
          "  --json FILE         results as JSON\n"
          "  --label TEXT        name printed with the results\n"
          "freshness (default): sales to the command service while subscribed\n"
          "  -r, --rate R        sales per second, open loop (default 1000)\n"
          "  -d, --duration S    measured seconds (default 20)\n"
          "  -w, --warmup S      seconds of writes before measuring (default 2)\n"
          "  -c, --writers N     keep-alive write connections (default 128)\n"
          "  --drain S           wait for late arrivals after the last answer\n"
          "                      (default 5)\n"
          "  --settle S          pause between the last subscription and the\n"
          "                      first write (default 1)\n"
          "idle (--idle): hold the subscriptions without writes\n"
          "  --hold S            seconds to hold them (default 10)\n"
          "  --pid PID           the query service: VmRSS read before, once all\n"
          "                      are open and after the hold\n"
          "  --seed N            random seed (default 1)\n");
}

int main(int argc, char **argv) {
  fr_t *fr = calloc(1, sizeof(*fr));
  if (!fr)
    return 2;
  fr->nsubs = 1000;
  fr->nwriters = 128;
  fr->open_window = 200;
  fr->rate = 1000;
  fr->duration_s = 20;
  fr->warmup_s = 2;
  fr->drain_s = 5;
  fr->hold_s = 10;
  fr->settle_s = 1;
  uint64_t seed = 1;
  const char *qurl = NULL, *curl = NULL, *ids = NULL;
  enum { O_Q = 256,
         O_C,
         O_IDS,
         O_WIN,
         O_JSON,
         O_LABEL,
         O_DRAIN,
         O_SETTLE,
         O_IDLE,
         O_HOLD,
         O_PID,
         O_SEED };
  static const struct option longopts[] = {
      {"query-url", required_argument, NULL, O_Q},
      {"command-url", required_argument, NULL, O_C},
      {"ids", required_argument, NULL, O_IDS},
      {"subscribers", required_argument, NULL, 's'},
      {"header", required_argument, NULL, 'H'},
      {"open-window", required_argument, NULL, O_WIN},
      {"json", required_argument, NULL, O_JSON},
      {"label", required_argument, NULL, O_LABEL},
      {"rate", required_argument, NULL, 'r'},
      {"duration", required_argument, NULL, 'd'},
      {"warmup", required_argument, NULL, 'w'},
      {"writers", required_argument, NULL, 'c'},
      {"drain", required_argument, NULL, O_DRAIN},
      {"settle", required_argument, NULL, O_SETTLE},
      {"idle", no_argument, NULL, O_IDLE},
      {"hold", required_argument, NULL, O_HOLD},
      {"pid", required_argument, NULL, O_PID},
      {"seed", required_argument, NULL, O_SEED},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  uint64_t v;
  int ch;
  while ((ch = getopt_long(argc, argv, "s:H:r:d:w:c:h", longopts, NULL)) != -1) {
    switch (ch) {
    case O_Q: qurl = optarg; break;
    case O_C: curl = optarg; break;
    case O_IDS: ids = optarg; break;
    case 's':
      if (bench_parse_count(optarg, &v) || v > 100000) {
        fprintf(stderr, "freshness: bad --subscribers %s\n", optarg);
        return 2;
      }
      fr->nsubs = (uint32_t)v;
      break;
    case 'H':
      if (fr->n_headers == MAX_HEADERS || !strchr(optarg, ':')) {
        fprintf(stderr, "freshness: bad or too many --header\n");
        return 2;
      }
      fr->headers[fr->n_headers++] = optarg;
      break;
    case O_WIN: fr->open_window = (uint32_t)strtoul(optarg, NULL, 10); break;
    case O_JSON: fr->json_out = optarg; break;
    case O_LABEL: fr->label = optarg; break;
    case 'r': fr->rate = strtod(optarg, NULL); break;
    case 'd': fr->duration_s = strtod(optarg, NULL); break;
    case 'w': fr->warmup_s = strtod(optarg, NULL); break;
    case 'c': fr->nwriters = (uint32_t)strtoul(optarg, NULL, 10); break;
    case O_DRAIN: fr->drain_s = strtod(optarg, NULL); break;
    case O_SETTLE: fr->settle_s = strtod(optarg, NULL); break;
    case O_IDLE: fr->idle = true; break;
    case O_HOLD: fr->hold_s = strtod(optarg, NULL); break;
    case O_PID: fr->pid = atoi(optarg); break;
    case O_SEED: seed = strtoull(optarg, NULL, 10); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (parse_url(qurl, fr->qhost, &fr->qport, &fr->qaddr) || !ids ||
      fr->nsubs == 0 || fr->open_window == 0 || fr->hold_s < 0 ||
      fr->warmup_s < 0 || fr->drain_s < 0 || fr->settle_s < 0) {
    usage(stderr);
    return 2;
  }
  if (!fr->idle && (parse_url(curl, fr->chost, &fr->cport, &fr->caddr) ||
                    fr->rate <= 0 || fr->duration_s <= 0 || fr->nwriters == 0)) {
    fprintf(stderr, "freshness: the writes need --command-url, --rate > 0, "
                    "--duration > 0 and --writers > 0\n");
    return 2;
  }
  if (fr->idle)
    fr->nwriters = 0;
  json_error_t jerr;
  json_t *doc = json_load_file(ids, 0, &jerr);
  if (!doc) {
    fprintf(stderr, "freshness: %s:%d: %s\n", ids, jerr.line, jerr.text);
    return 2;
  }
  fr->stores = load_id_list(doc, "stores", &fr->n_stores);
  fr->products = load_id_list(doc, "products", &fr->n_products);
  json_decref(doc);
  fr->rng = seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
  raise_nofile((rlim_t)fr->nsubs + fr->nwriters + 256);

  /* writes and the txid table (sized for every write plus foreign ids) */
  if (!fr->idle) {
    fr->n_writes = (uint64_t)((fr->warmup_s + fr->duration_s) * fr->rate);
    if (fr->n_writes == 0)
      fr->n_writes = 1;
    fr->writes = calloc(fr->n_writes, sizeof(wr_t));
    if (!fr->writes)
      die_oom();
  }
  fr->tab_cap = 1024;
  while (fr->tab_cap < fr->n_writes * 4)
    fr->tab_cap *= 2;
  fr->tab = calloc(fr->tab_cap, sizeof(entry_t));
  fr->subs = calloc(fr->nsubs, sizeof(sub_t));
  fr->live_per_store = calloc(fr->n_stores, sizeof(uint32_t));
  if (!fr->tab || !fr->subs || !fr->live_per_store)
    die_oom();
  if (fr->nwriters) {
    fr->wconns = calloc(fr->nwriters, sizeof(wconn_t));
    if (!fr->wconns)
      die_oom();
  }

  uv_loop_t loop;
  uv_loop_init(&loop);
  fr->loop = &loop;
  uv_timer_init(&loop, &fr->tick);
  uv_timer_init(&loop, &fr->phase);
  fr->tick.data = fr->phase.data = fr;
  for (uint32_t i = 0; i < fr->nsubs; i++) {
    sub_t *s = &fr->subs[i];
    s->fr = fr;
    s->idx = i;
    s->store = (uint32_t)(i % fr->n_stores);
    int n = snprintf(s->req, REQ_CAP,
                     "GET /v1/changes?store_id=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Accept: text/event-stream\r\n",
                     fr->stores[s->store], fr->qhost, fr->qport);
    size_t len = (size_t)n;
    for (size_t h = 0; h < fr->n_headers && len < REQ_CAP; h++)
      len += (size_t)snprintf(s->req + len, REQ_CAP - len, "%s\r\n",
                              fr->headers[h]);
    if (len + 3 >= REQ_CAP) {
      fprintf(stderr, "freshness: request too large\n");
      return 2;
    }
    memcpy(s->req + len, "\r\n", 3);
    s->req_len = len + 2;
  }
  /* write connections first, so they are up when the writes start */
  for (uint32_t i = 0; i < fr->nwriters; i++) {
    wconn_t *c = &fr->wconns[i];
    c->fr = fr;
    c->idx = i;
    wconn_open(c);
  }
  if (fr->pid > 0)
    fr->rss_before_kib = bench_rss_kib(fr->pid);
  fr->t_open_start = bench_now_ns();
  open_next_subs(fr);
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = fr->idle ? report_idle(fr) : report_freshness(fr);
  int lrc = uv_loop_close(&loop);
  if (lrc)
    fprintf(stderr, "freshness: loop close: %s\n", uv_strerror(lrc));

  for (size_t i = 0; i < fr->tab_cap; i++)
    free(fr->tab[i].arr);
  free(fr->tab);
  for (size_t i = 0; i < fr->n_stores; i++)
    free(fr->stores[i]);
  for (size_t i = 0; i < fr->n_products; i++)
    free(fr->products[i]);
  free(fr->stores);
  free(fr->products);
  free(fr->subs);
  free(fr->wconns);
  free(fr->writes);
  free(fr->live_per_store);
  free(fr->fail_sample);
  free(fr);
  return rc;
}

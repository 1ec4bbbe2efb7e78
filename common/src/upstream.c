/* upstream: libcurl's multi interface driven by the libuv loop (see
 * sf/upstream.h).
 *
 * This is libcurl's documented "multi_socket" pattern: curl tells us which
 * sockets to watch (socket_cb) and when to wake it (timer_cb); uv_poll and
 * uv_timer callbacks hand the events back with curl_multi_socket_action,
 * and finished transfers are collected with curl_multi_info_read. Callers'
 * callbacks are only ever called from collect() or close, never from inside
 * a libcurl callback, so they may send or cancel freely. Every uv handle is
 * counted in open_handles; close's done fires when it drops to zero. */
#include "sf/upstream.h"
#include "sf/err.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Idle connections kept for reuse. */
#define MAX_IDLE_CONNECTIONS 32
#define MAX_HEADER_VALUE 256

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  sf_upstream_t *u;
  struct sock_ctx *next, *prev;
} sock_ctx_t;

struct sf_upstream_req {
  sf_upstream_t *u;
  CURL *easy;
  struct curl_slist *headers;
  sf_upstream_cb cb;
  void *ud;
  char *body;
  size_t body_len;
  bool too_big;
  char content_type[MAX_HEADER_VALUE];
  char retry_after[MAX_HEADER_VALUE];
  char replayed[MAX_HEADER_VALUE];
  char location[MAX_HEADER_VALUE * 4];
  char curl_error[CURL_ERROR_SIZE];
  sf_upstream_req_t *next, *prev;
};

struct sf_upstream {
  uv_loop_t *loop;
  sf_log_t *log;
  size_t max_body;
  CURLM *multi;
  uv_timer_t timer;
  sf_upstream_req_t *reqs; /* in flight */
  size_t n_reqs;
  sock_ctx_t *socks; /* watched sockets */
  int open_handles;
  bool closing;
  sf_upstream_done_cb done;
  void *done_ud;
};

static void handle_closed_cb(uv_handle_t *h);

/* ---- requests ---- */

static void req_unlink(sf_upstream_req_t *r) {
  sf_upstream_t *u = r->u;
  if (r->prev)
    r->prev->next = r->next;
  else
    u->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  u->n_reqs--;
}

/* Takes r off the multi handle and out of the list, and frees it. */
static void req_free(sf_upstream_req_t *r) {
  if (r->easy) {
    CURLMcode mc = curl_multi_remove_handle(r->u->multi, r->easy);
    if (mc != CURLM_OK)
      SF_WARN(r->u->log, "upstream", "curl_multi_remove_handle: %s",
              curl_multi_strerror(mc));
    curl_easy_cleanup(r->easy);
  }
  curl_slist_free_all(r->headers);
  free(r->body);
  free(r);
}

static int curl_err(const sf_upstream_req_t *r, CURLcode rc) {
  switch (rc) {
  case CURLE_OK:
    return 0;
  case CURLE_OPERATION_TIMEDOUT:
    return SF_ETIMEOUT;
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
    return SF_EUNAVAILABLE;
  case CURLE_FILESIZE_EXCEEDED:
    return SF_ETOOBIG;
  case CURLE_WRITE_ERROR:
    return r->too_big ? SF_ETOOBIG : SF_EIO;
  default:
    return SF_EIO;
  }
}

/* Answers r's caller with err (or the HTTP result when err == 0), then
 * frees r. */
static void req_finish(sf_upstream_req_t *r, int err) {
  sf_upstream_res_t res = {.err = err};
  if (err == 0) {
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    res.status = (int)status;
    res.content_type = r->content_type[0] ? r->content_type : NULL;
    res.retry_after = r->retry_after[0] ? r->retry_after : NULL;
    res.idempotent_replayed = r->replayed[0] ? r->replayed : NULL;
    res.location = r->location[0] ? r->location : NULL;
  }
  res.body = r->body && err == 0 ? r->body : "";
  res.body_len = err == 0 ? r->body_len : 0;
  req_unlink(r);
  sf_upstream_cb cb = r->cb;
  void *ud = r->ud;
  /* The easy handle leaves the multi handle before the callback, so that
   * the callback may send again; the body outlives it until after. */
  if (r->easy) {
    curl_multi_remove_handle(r->u->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
  }
  cb(&res, ud);
  req_free(r);
}

static size_t body_cb(char *data, size_t size, size_t nmemb, void *ud) {
  sf_upstream_req_t *r = ud;
  size_t k = size * nmemb;
  if (r->body_len + k > r->u->max_body) {
    r->too_big = true;
    return 0; /* CURLE_WRITE_ERROR: the transfer stops */
  }
  char *p = realloc(r->body, r->body_len + k + 1);
  if (!p)
    return 0;
  memcpy(p + r->body_len, data, k);
  r->body = p;
  r->body_len += k;
  r->body[r->body_len] = '\0';
  return k;
}

/* Copies a header's value (trimmed) into dst when name matches. */
static void take_header(const char *line, size_t n, const char *name,
                        char *dst, size_t cap) {
  size_t nl = strlen(name);
  if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
    return;
  const char *v = line + nl + 1;
  const char *end = line + n;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                     end[-1] == '\t'))
    end--;
  size_t len = (size_t)(end - v);
  if (len >= cap)
    len = cap - 1;
  memcpy(dst, v, len);
  dst[len] = '\0';
}

static size_t header_cb(char *line, size_t size, size_t nmemb, void *ud) {
  sf_upstream_req_t *r = ud;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    /* A new status line (after a 100 Continue): forget earlier headers. */
    r->content_type[0] = r->retry_after[0] = r->replayed[0] = '\0';
    r->location[0] = '\0';
    return n;
  }
  take_header(line, n, "Content-Type", r->content_type,
              sizeof(r->content_type));
  take_header(line, n, "Retry-After", r->retry_after, sizeof(r->retry_after));
  take_header(line, n, "Idempotent-Replayed", r->replayed,
              sizeof(r->replayed));
  take_header(line, n, "Location", r->location, sizeof(r->location));
  return n;
}

/* ---- libcurl <-> libuv ---- */

static void collect(sf_upstream_t *u) {
  CURLMsg *m;
  int left;
  /* A callback may close the client: then the multi handle is gone. */
  while (!u->closing && (m = curl_multi_info_read(u->multi, &left))) {
    if (m->msg != CURLMSG_DONE)
      continue;
    sf_upstream_req_t *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode rc = m->data.result;
    if (!r)
      continue;
    int err = curl_err(r, rc);
    if (err)
      SF_DEBUG(u->log, "upstream", "request failed: %s (%s)",
               curl_easy_strerror(rc), r->curl_error);
    req_finish(r, err);
  }
}

static void socket_action(sf_upstream_t *u, curl_socket_t fd, int flags) {
  if (u->closing)
    return;
  int running = 0;
  CURLMcode mc = curl_multi_socket_action(u->multi, fd, flags, &running);
  if (mc != CURLM_OK)
    SF_ERROR(u->log, "upstream", "curl_multi_socket_action: %s",
             curl_multi_strerror(mc));
  collect(u);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  sock_ctx_t *c = h->data;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE)
    flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE)
    flags |= CURL_CSELECT_OUT;
  socket_action(c->u, c->fd, flags);
}

static void timer_fire_cb(uv_timer_t *t) {
  socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  sf_upstream_t *u = userp;
  if (u->closing)
    return 0;
  if (timeout_ms < 0)
    uv_timer_stop(&u->timer);
  else
    uv_timer_start(&u->timer, timer_fire_cb, (uint64_t)timeout_ms, 0);
  return 0;
}

static void sock_close(sock_ctx_t *c) {
  sf_upstream_t *u = c->u;
  if (c->prev)
    c->prev->next = c->next;
  else
    u->socks = c->next;
  if (c->next)
    c->next->prev = c->prev;
  uv_poll_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, handle_closed_cb);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  (void)easy;
  sf_upstream_t *u = userp;
  sock_ctx_t *c = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (c) {
      curl_multi_assign(u->multi, fd, NULL);
      sock_close(c);
    }
    return 0;
  }
  if (!c) {
    c = calloc(1, sizeof(*c));
    if (!c) {
      SF_ERROR(u->log, "upstream", "out of memory watching a socket");
      return -1;
    }
    int rc = uv_poll_init_socket(u->loop, &c->poll, fd);
    if (rc < 0) {
      SF_ERROR(u->log, "upstream", "uv_poll_init_socket: %s",
               uv_strerror(rc));
      free(c);
      return -1;
    }
    c->fd = fd;
    c->u = u;
    c->poll.data = c;
    u->open_handles++;
    c->next = u->socks;
    if (u->socks)
      u->socks->prev = c;
    u->socks = c;
    curl_multi_assign(u->multi, fd, c);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    events |= UV_WRITABLE;
  int rc = uv_poll_start(&c->poll, events, poll_cb);
  if (rc < 0) {
    SF_ERROR(u->log, "upstream", "uv_poll_start: %s", uv_strerror(rc));
    return -1;
  }
  return 0;
}

/* ---- the client ---- */

static void handle_closed_cb(uv_handle_t *h) {
  sf_upstream_t *u;
  if (h->type == UV_POLL) {
    sock_ctx_t *c = h->data;
    u = c->u;
    free(c);
  } else {
    u = h->data;
  }
  u->open_handles--;
  if (u->closing && u->open_handles == 0 && u->done) {
    sf_upstream_done_cb done = u->done;
    u->done = NULL;
    done(u->done_ud);
  }
}

int sf_upstream_new(sf_upstream_t **out, uv_loop_t *loop, size_t max_body,
                    sf_log_t *log) {
  *out = NULL;
  if (!loop || max_body == 0)
    return SF_EINVAL;
  sf_upstream_t *u = calloc(1, sizeof(*u));
  if (!u)
    return SF_ENOMEM;
  u->loop = loop;
  u->log = log;
  u->max_body = max_body;
  u->multi = curl_multi_init();
  if (!u->multi) {
    SF_ERROR(log, "upstream", "curl_multi_init failed");
    free(u);
    return SF_EIO;
  }
  if (curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) ||
      curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u) ||
      curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb) ||
      curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u) ||
      curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS,
                        (long)MAX_IDLE_CONNECTIONS)) {
    SF_ERROR(log, "upstream", "curl_multi_setopt failed");
    curl_multi_cleanup(u->multi);
    free(u);
    return SF_EIO;
  }
  int rc = uv_timer_init(loop, &u->timer);
  if (rc < 0) {
    SF_ERROR(log, "upstream", "uv_timer_init: %s", uv_strerror(rc));
    curl_multi_cleanup(u->multi);
    free(u);
    return SF_EIO;
  }
  u->timer.data = u;
  u->open_handles = 1;
  *out = u;
  return 0;
}

/* Sets the easy handle's options for call; false when one is refused. */
static bool setup_easy(sf_upstream_req_t *r, const sf_upstream_call_t *call) {
  CURL *e = r->easy;
  bool ok =
      curl_easy_setopt(e, CURLOPT_URL, call->url) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, call->timeout_ms) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                       (curl_off_t)r->u->max_body) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_cb) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_WRITEDATA, r) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_HEADERDATA, r) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_error) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_PRIVATE, r) == CURLE_OK &&
      curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK;
  if (!ok)
    return false;
  if (call->max_redirects > 0) {
    ok = curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_MAXREDIRS, call->max_redirects) ==
             CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 1L) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") ==
             CURLE_OK;
    if (!ok)
      return false;
  }
  if (call->body) {
    ok = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                          (curl_off_t)call->body_len) == CURLE_OK &&
         curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, call->body) == CURLE_OK;
    if (!ok)
      return false;
  }
  if (strcmp(call->method, "GET") == 0 && !call->body)
    return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
  if (strcmp(call->method, "POST") == 0 && call->body)
    return true;
  return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, call->method) == CURLE_OK;
}

static bool method_ok(const char *m) {
  if (!m || !m[0] || strlen(m) > 16)
    return false;
  for (const char *p = m; *p; p++)
    if (*p < 'A' || *p > 'Z')
      return false;
  return true;
}

int sf_upstream_send(sf_upstream_t *u, const sf_upstream_call_t *call,
                     sf_upstream_cb cb, void *ud, sf_upstream_req_t **out) {
  if (out)
    *out = NULL;
  if (!u || !call || !cb || !call->url || !method_ok(call->method) ||
      call->timeout_ms <= 0 || (call->n_headers && !call->headers))
    return SF_EINVAL;
  if (u->closing)
    return SF_ESTATE;
  sf_upstream_req_t *r = calloc(1, sizeof(*r));
  if (!r)
    return SF_ENOMEM;
  r->u = u;
  r->cb = cb;
  r->ud = ud;
  int err = SF_ENOMEM;
  for (size_t i = 0; i < call->n_headers; i++) {
    struct curl_slist *l = curl_slist_append(r->headers, call->headers[i]);
    if (!l)
      goto fail;
    r->headers = l;
  }
  /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
  struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
  if (!l)
    goto fail;
  r->headers = l;
  r->easy = curl_easy_init();
  if (!r->easy)
    goto fail;
  if (!setup_easy(r, call)) {
    SF_ERROR(u->log, "upstream", "curl_easy_setopt refused a %s %s",
             call->method, call->url);
    err = SF_EIO;
    goto fail;
  }
  CURLMcode mc = curl_multi_add_handle(u->multi, r->easy);
  if (mc != CURLM_OK) {
    SF_ERROR(u->log, "upstream", "curl_multi_add_handle: %s",
             curl_multi_strerror(mc));
    err = SF_EIO;
    goto fail;
  }
  r->next = u->reqs;
  if (u->reqs)
    u->reqs->prev = r;
  u->reqs = r;
  u->n_reqs++;
  if (out)
    *out = r;
  return 0;

fail:
  if (r->easy)
    curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  free(r);
  return err;
}

void sf_upstream_cancel(sf_upstream_req_t *req) {
  if (!req)
    return;
  req_unlink(req);
  req_free(req);
}

size_t sf_upstream_pending(const sf_upstream_t *u) { return u->n_reqs; }

void sf_upstream_close(sf_upstream_t *u, sf_upstream_done_cb done, void *ud) {
  if (u->closing)
    return;
  u->done = done;
  u->done_ud = ud;
  /* Callbacks may send again while we fail them: that is refused only once
   * closing is set, so fail them first with closing already set. */
  u->closing = true;
  while (u->reqs)
    req_finish(u->reqs, SF_ECANCELED);
  /* Cleaning up the multi handle closes the cached connections; libcurl
   * may or may not report them through socket_cb, so whatever is still
   * watched is closed here. */
  CURLMcode mc = curl_multi_cleanup(u->multi);
  if (mc != CURLM_OK)
    SF_WARN(u->log, "upstream", "curl_multi_cleanup: %s",
            curl_multi_strerror(mc));
  u->multi = NULL;
  while (u->socks)
    sock_close(u->socks);
  uv_timer_stop(&u->timer);
  uv_close((uv_handle_t *)&u->timer, handle_closed_cb);
}

void sf_upstream_destroy(sf_upstream_t *u) { free(u); }

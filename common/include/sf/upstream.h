/* upstream: an asynchronous HTTP/1.1 client on a libuv loop, for one
 * service calling another (the query service's Parse facade sends its
 * writes on to the command service).
 *
 * libcurl's multi interface does the HTTP: its sockets are watched with
 * uv_poll handles and its timeouts with one uv_timer
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION,
 * curl_multi_socket_action), so nothing blocks the loop. Connections stay
 * open between requests (keep-alive; the multi handle's connection cache).
 * Answers are gathered in memory up to max_body bytes; a bigger one fails
 * with SF_ETOOBIG.
 *
 * Callbacks: a request's callback fires exactly once, on the loop and never
 * inside sf_upstream_send, unless the request was canceled with
 * sf_upstream_cancel (then never). sf_upstream_close fails the pending
 * requests with SF_ECANCELED (their callbacks fire inside the call), then
 * closes every handle; done fires on the loop when the last one is closed,
 * after which sf_upstream_destroy frees the client. Loop thread only;
 * nothing here is thread-safe.
 *
 * Needs libcurl set up once per process, before threads start:
 * curl_global_init(CURL_GLOBAL_DEFAULT) (sf_service_run does it; a test or
 * tool that uses this module without it must call it itself). */
#ifndef SF_UPSTREAM_H
#define SF_UPSTREAM_H

#include <stddef.h>
#include <uv.h>

#include "sf/log.h"

typedef struct sf_upstream sf_upstream_t;
typedef struct sf_upstream_req sf_upstream_req_t;

/* The outcome of one request, borrowed for the callback only. */
typedef struct sf_upstream_res {
  int err;    /* 0, or SF_EUNAVAILABLE (connection refused or reset, name not
                 resolved), SF_ETIMEOUT, SF_ETOOBIG (answer over max_body),
                 SF_ECANCELED (sf_upstream_close), SF_EIO (other) */
  int status; /* HTTP status when err == 0, else 0 */
  /* Selected response headers, NULL when absent. */
  const char *content_type;
  const char *retry_after;
  const char *idempotent_replayed;
  const char *location;
  const char *body; /* NUL-terminated; "" when empty */
  size_t body_len;
} sf_upstream_res_t;

typedef void (*sf_upstream_cb)(const sf_upstream_res_t *res, void *ud);
typedef void (*sf_upstream_done_cb)(void *ud);

/* Creates a client on loop (borrowed; must outlive the client). max_body:
 * largest answer accepted, bytes (> 0). log is borrowed and may be NULL.
 * Returns 0, SF_EINVAL or SF_ENOMEM (SF_EIO when libcurl cannot start). */
int sf_upstream_new(sf_upstream_t **out, uv_loop_t *loop, size_t max_body,
                    sf_log_t *log);

/* One request, as sent by sf_upstream_send. Everything is copied by the
 * call. headers: "Name: value" strings, n_headers of them. body may be NULL
 * (no body; body_len ignored). timeout_ms > 0 bounds the whole exchange. */
typedef struct sf_upstream_call {
  const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
  const char *url;    /* absolute http:// URL */
  const char *const *headers;
  size_t n_headers;
  const char *body;
  size_t body_len;
  long timeout_ms;
  /* Redirects followed (0: none). A 307/308 is followed with the same
   * method, body and headers, Authorization included also to another
   * host or port: only for a trusted peer (a command instance sending the
   * caller to the instance that owns a store). */
  long max_redirects;
} sf_upstream_call_t;

/* Starts call; cb(res, ud) fires later on the loop. *out (may be NULL) is a
 * handle for sf_upstream_cancel, valid until cb fires or cancel is called.
 * Returns 0; SF_EINVAL (bad arguments), SF_ENOMEM, SF_ESTATE (closing) or
 * SF_EIO, and then cb never fires. */
int sf_upstream_send(sf_upstream_t *u, const sf_upstream_call_t *call,
                     sf_upstream_cb cb, void *ud, sf_upstream_req_t **out);

/* Abandons a request whose callback has not fired yet (its caller went
 * away): the transfer stops, its connection is dropped, and cb never fires.
 * req is freed. */
void sf_upstream_cancel(sf_upstream_req_t *req);

/* Number of requests in flight. */
size_t sf_upstream_pending(const sf_upstream_t *u);

/* Fails every pending request with SF_ECANCELED (callbacks fire inside this
 * call), refuses new ones, closes the connections and handles; done(ud)
 * fires on the loop once all are closed. Call once. */
void sf_upstream_close(sf_upstream_t *u, sf_upstream_done_cb done, void *ud);

/* Frees the client; only after close's done fired. */
void sf_upstream_destroy(sf_upstream_t *u);

#endif

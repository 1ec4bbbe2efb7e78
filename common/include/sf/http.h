/* http: an HTTP/1.1 server on libuv, parsing with llhttp.
 *
 * One server listens on one TCP address and routes requests by method and
 * path pattern ("/v1/stores/{store_id}/inventory/{product_id}") to handlers.
 * Connections are keep-alive; pipelined requests are answered in order, one
 * at a time. Limits (body size, header bytes and count, header and idle
 * timeouts, connection count) are enforced by the server itself: a body over
 * the limit is answered 413 payload_too_large, a bad request 400, a slow or
 * garbage peer is disconnected; none of these reach a handler.
 *
 * A handler may answer at once or later (after a Kafka delivery or a
 * PostgreSQL result): the request stays valid until exactly one of
 * sf_http_respond*() or sf_http_stream_end() is called for it. If the peer
 * disconnects first, the request is marked canceled (sf_http_req_canceled)
 * and the close callback set with sf_http_req_on_close fires; the handler
 * must still answer (the answer is dropped) so that the request is freed.
 *
 * Everything here runs on the loop's thread; nothing is thread-safe. Memory
 * of a request (sf_http_req_alloc, header and parameter strings) lives until
 * the request is answered and freed.
 *
 * Details the implementation guarantees:
 * - The process must ignore SIGPIPE (main.c): libuv writes with write(2).
 * - EOF from the peer while a request is pending or streaming counts as a
 *   disconnect (a half-closed client cannot be told apart).
 * - Every answer carries X-Request-Id; "Connection: close" when the
 *   connection closes after it (HTTP/1.0 keep-alive answers say
 *   "Connection: keep-alive"). 204/304 carry no body or Content-Length; a
 *   HEAD request (when routed) gets the headers only.
 * - Timeouts: a new connection must deliver full headers within
 *   header_timeout_ms of accept; on a kept-alive connection, within
 *   header_timeout_ms of the request's first byte; idle_timeout_ms applies
 *   between requests, between body reads, and to flushing a final answer.
 * - After a closing answer the server shuts its write side down and drains
 *   the peer for up to 1 s, so the peer reads the answer rather than a
 *   reset. "Expect: 100-continue" is answered with 100 when the declared
 *   body fits max_body.
 * - Requests with Upgrade (or CONNECT) reach their handler; the connection
 *   closes after the answer, unless the handler switches protocols with
 *   sf_http_upgrade. */
#ifndef SF_HTTP_H
#define SF_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sf/log.h"

typedef struct sf_http_server sf_http_server_t;
typedef struct sf_http_req sf_http_req_t;

typedef void (*sf_http_handler_cb)(sf_http_req_t *req, void *ud);
typedef void (*sf_http_close_cb)(sf_http_req_t *req, void *ud);
typedef void (*sf_http_done_cb)(void *ud);

typedef struct sf_http_limits {
  size_t max_body;            /* bytes; default 65536 -> 413 */
  size_t max_header_bytes;    /* all header lines; default 16384 -> 431 */
  size_t max_headers;         /* default 64 -> 431 */
  uint64_t header_timeout_ms; /* full headers must arrive; default 10000 */
  uint64_t idle_timeout_ms;   /* keep-alive idle; default 60000 */
  size_t max_connections;     /* default 10000; beyond, accept and close */
} sf_http_limits_t;

/* Fills l with the defaults above. */
void sf_http_limits_default(sf_http_limits_t *l);

/* Creates a server on loop (borrowed, must outlive the server). limits is
 * copied; NULL means defaults. log is borrowed and may be NULL. */
int sf_http_server_new(sf_http_server_t **out, uv_loop_t *loop,
                       const sf_http_limits_t *limits, sf_log_t *log);

/* Adds a route. method "GET", "POST", ...; pattern segments in braces are
 * path parameters. Unknown paths get 404 not_found, a known path with
 * another method 405. Returns 0, SF_EINVAL or SF_ENOMEM. */
int sf_http_route(sf_http_server_t *s, const char *method, const char *pattern,
                  sf_http_handler_cb cb, void *ud);

/* Gives one exact method and path (no parameters, no query) a body limit
 * of its own, e.g. a bulk endpoint that takes more than the server's
 * max_body; the check happens with the headers, like the server's. At most
 * 8 per server. Returns 0, SF_EINVAL or SF_ENOMEM (table full). */
int sf_http_body_limit(sf_http_server_t *s, const char *method,
                       const char *path, size_t max_body);

/* Binds and listens on host:port (IPv4 literal or "localhost"). Returns 0 or
 * SF_EIO with the reason logged. */
int sf_http_listen(sf_http_server_t *s, const char *host, int port);

/* The port actually bound (useful with port 0 in tests), or -1. */
int sf_http_bound_port(const sf_http_server_t *s);

/* Stops listening and closes every connection; done fires on the loop once
 * every handle is closed (pending requests are canceled first). After done,
 * call sf_http_server_destroy. done waits until every canceled request has
 * been answered (handlers must answer them, usually from on_close). A server
 * on which sf_http_listen was never called may be destroyed directly;
 * otherwise (even if listen failed) close it and run the loop to done. */
void sf_http_server_close(sf_http_server_t *s, sf_http_done_cb done, void *ud);
void sf_http_server_destroy(sf_http_server_t *s);

/* Prometheus text for this server:
 * <prefix>_http_requests_total{route,method,status} and
 * <prefix>_http_request_duration_seconds{route} (buckets 0.0005 .. 2.5 s,
 * time from the end of the request to the answer, or to the stream's
 * headers). route is the pattern, or "unmatched" for 404s and requests the
 * parser rejected; canceled requests are not counted. Returns a malloc'd string the caller frees,
 * or NULL on out of memory. prefix names the metric family, e.g.
 * "stockflow_command". */
char *sf_http_server_metrics(const sf_http_server_t *s, const char *prefix);

/* ---- the request ---- */

const char *sf_http_req_method(const sf_http_req_t *r);
/* Path without the query string, percent-decoded. */
const char *sf_http_req_path(const sf_http_req_t *r);
/* Route pattern that matched, e.g. "/v1/stores/{store_id}/transactions". */
const char *sf_http_req_route(const sf_http_req_t *r);
/* Value of path parameter name, or NULL. */
const char *sf_http_req_param(const sf_http_req_t *r, const char *name);
/* First value of query parameter name, percent-decoded, or NULL. */
const char *sf_http_req_query(const sf_http_req_t *r, const char *name);
/* Header value (name case-insensitive), or NULL. */
const char *sf_http_req_header(const sf_http_req_t *r, const char *name);
/* Body bytes (NUL-terminated for convenience; len excludes the NUL). */
const char *sf_http_req_body(const sf_http_req_t *r, size_t *len);
/* A per-request id: the X-Request-Id header if sane, else generated. */
const char *sf_http_req_id(const sf_http_req_t *r);
/* True when the Content-Type media type is application/json. */
bool sf_http_req_is_json(const sf_http_req_t *r);
/* True once the peer went away; answers are then dropped. */
bool sf_http_req_canceled(const sf_http_req_t *r);
/* The peer's IP address as text ("127.0.0.1", "::1") into out (cap bytes;
 * 46 is enough), for per-client limits such as the login limiter. Returns
 * 0, or SF_EIO when the socket has no peer any more (out is then ""). */
int sf_http_req_peer(const sf_http_req_t *r, char *out, size_t cap);
/* Memory freed with the request; NULL on out of memory. */
void *sf_http_req_alloc(sf_http_req_t *r, size_t size);
/* fn(ud) runs once when the request is freed (after its answer, or when
 * the connection goes), newest first, before its memory is released: for
 * what the request owns outside its memory, e.g. a parsed JSON body that
 * handlers share. fn must not touch the request. Returns 0, SF_EINVAL or
 * SF_ENOMEM. */
int sf_http_req_on_free(sf_http_req_t *r, void (*fn)(void *ud), void *ud);
/* Per-request user pointer for the handler's own state. */
void sf_http_req_set_data(sf_http_req_t *r, void *data);
void *sf_http_req_data(const sf_http_req_t *r);
/* cb fires once, on the loop, if the peer disconnects before the answer
 * ends (also for streams, and when sf_http_server_close cancels the
 * request). Set after the request was already canceled, it does not fire:
 * check sf_http_req_canceled. cb may answer the request. */
void sf_http_req_on_close(sf_http_req_t *r, sf_http_close_cb cb, void *ud);

/* ---- answering: exactly one of these per request ---- */

/* Adds a response header (copied) before the answer is sent. Returns 0,
 * SF_EINVAL (empty name, or CR/LF/control bytes: no header injection) or
 * SF_ENOMEM. */
int sf_http_add_header(sf_http_req_t *r, const char *name, const char *value);
/* Sends status, Content-Type and body (copied). */
void sf_http_respond(sf_http_req_t *r, int status, const char *content_type,
                     const char *body, size_t len);
/* Sends body as application/json; takes ownership of body (decref'd). */
void sf_http_respond_json(sf_http_req_t *r, int status, json_t *body);
/* Sends application/problem+json {type, title, status, detail, code,
 * request_id}; title is derived from status. extra (may be NULL; ownership
 * taken) is merged into the object, e.g. {"lines": [...]}. */
void sf_http_respond_problem(sf_http_req_t *r, int status, const char *code,
                             const char *detail, json_t *extra);

/* ---- streaming answers (Server-Sent Events) ---- */

/* Sends the status line and headers of a streaming answer (no
 * Content-Length; the connection closes when the stream ends). Returns 0,
 * SF_ECANCELED if the peer is gone, SF_ESTATE if already started. Bytes the
 * peer sends during a stream are discarded. */
int sf_http_stream_start(sf_http_req_t *r, int status,
                         const char *content_type);
/* Queues bytes (copied). Returns 0, SF_ECANCELED if the peer is gone,
 * SF_ESTATE before sf_http_stream_start. */
int sf_http_stream_write(sf_http_req_t *r, const char *data, size_t len);
/* Bytes queued but not yet written to the socket. */
size_t sf_http_stream_pending(const sf_http_req_t *r);
/* Ends the stream, closes the connection once flushed, frees the request. */
void sf_http_stream_end(sf_http_req_t *r);

/* Queues len bytes without copying them: data must stay valid and
 * unchanged until done(ud) fires. done fires exactly once, on the loop and
 * never inside this call, when the bytes were written or dropped (the
 * connection closed); on an error return it does not fire. This lets one
 * buffer (a change event) be written to many streams and freed after its
 * last write. Returns 0, SF_EINVAL (NULL data or done, len 0),
 * SF_ECANCELED if the peer is gone, SF_ESTATE before sf_http_stream_start
 * or sf_http_upgrade. */
int sf_http_stream_write_shared(sf_http_req_t *r, const char *data,
                                size_t len, sf_http_done_cb done, void *ud);

/* ---- protocol upgrades (WebSocket) ---- */

/* Bytes the peer sent on an upgraded connection, borrowed for the call.
 * The callback may write and may end the stream (sf_http_stream_end); after
 * ending it it must not touch r. */
typedef void (*sf_http_data_cb)(sf_http_req_t *r, const char *data,
                                size_t len, void *ud);

/* Answers 101 Switching Protocols with "Upgrade: <protocol>",
 * "Connection: Upgrade" and the headers added with sf_http_add_header, then
 * turns the connection into a raw byte stream both ways:
 * sf_http_stream_write, sf_http_stream_write_shared, sf_http_stream_pending
 * and sf_http_stream_end work as on a stream, and every byte the peer sends
 * from now on goes to on_data, in order (bytes that arrived after the
 * request and before this call are delivered one loop iteration later, never
 * inside this call). The handler validates the handshake itself (Upgrade
 * and protocol headers). EOF or an error from the peer cancels the request
 * as for a stream (the on_close callback fires; the handler still ends it).
 * Returns 0, SF_EINVAL (protocol not a token, on_data NULL), SF_ECANCELED
 * (peer gone), SF_ESTATE (already streaming). */
int sf_http_upgrade(sf_http_req_t *r, const char *protocol,
                    sf_http_data_cb on_data, void *ud);

/* Reason phrase for a status code ("Not Found"), never NULL. */
const char *sf_http_status_text(int status);

#endif

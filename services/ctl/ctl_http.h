/* ctl_http: stockflowctl's HTTP client, libcurl underneath (one easy
 * handle, so requests to one service reuse the connection).
 *
 * A request sends JSON (or nothing) with the bearer token and an optional
 * Idempotency-Key and collects the answer's status, Content-Type and body.
 * A stream request (the SSE change feed) hands the body of a 2xx answer to
 * a callback as it arrives and can be cancelled between reads. Problems
 * (application/problem+json) are printed as "<what>: <status> <code>:
 * <detail>". Not thread-safe: one handle per thread. */
#ifndef CTL_HTTP_H
#define CTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct ctl_http ctl_http_t;

typedef struct ctl_resp {
  long status; /* 0 when no answer arrived */
  char *body;  /* NUL-terminated (owned; ctl_resp_free) */
  size_t len;
  char content_type[128];
  char error[256]; /* why no answer arrived (status 0) */
} ctl_resp_t;

/* Creates a client whose plain requests time out after timeout_ms (streams
 * have no overall timeout). Call curl_global_init first. Returns 0 or
 * SF_ENOMEM. */
int ctl_http_new(ctl_http_t **out, long timeout_ms);
void ctl_http_destroy(ctl_http_t *h);

/* Escapes text for one path segment into a new string (caller frees), or
 * NULL when out of memory. */
char *ctl_http_escape(ctl_http_t *h, const char *text);

/* Sends method base+path; token, idem_key and json_body may be NULL
 * (strings borrowed for the call). Fills resp (ctl_resp_free it in every
 * case). Returns 0 when an answer arrived, whatever its status, or
 * CTL_EXIT_UNAVAILABLE when none did (resp->error says why). */
int ctl_http_request(ctl_http_t *h, const char *method, const char *base,
                     const char *path, const char *token, const char *idem_key,
                     const char *json_body, ctl_resp_t *resp);

/* Receives the body of a 2xx answer, chunk by chunk; returns false to end
 * the stream. */
typedef bool (*ctl_http_chunk_cb)(void *ud, const char *data, size_t len);
/* Asked about once a second and between chunks: true ends the stream. */
typedef bool (*ctl_http_cancel_cb)(void *ud);

/* GETs base+path with Accept: text/event-stream and, when last_event_id is
 * not NULL, Last-Event-ID. A 2xx body goes to chunk; any other body is
 * collected in resp. A connection silent for idle_timeout_s seconds is
 * treated as dropped. Returns 0 when the stream ended (by the server, the
 * callback or cancel: resp->status tells which answer it was), or
 * CTL_EXIT_UNAVAILABLE when no answer arrived or the connection broke
 * (resp->error). */
int ctl_http_stream(ctl_http_t *h, const char *base, const char *path,
                    const char *token, const char *last_event_id,
                    long idle_timeout_s, ctl_http_chunk_cb chunk,
                    ctl_http_cancel_cb cancel, void *ud, ctl_resp_t *resp);

void ctl_resp_free(ctl_resp_t *resp);

/* The exit code for an answer's status: 2xx CTL_EXIT_OK, 4xx
 * CTL_EXIT_REFUSED, 503 and 0 (no answer) CTL_EXIT_UNAVAILABLE, anything
 * else CTL_EXIT_FAIL. */
int ctl_http_exit_code(long status);

/* Prints why resp is not a success to err: "<what>: 409 insufficient_stock:
 * <detail>" from a problem, the status and a short body otherwise, or the
 * connection error. Returns ctl_http_exit_code(resp->status). */
int ctl_http_report(const ctl_resp_t *resp, const char *what, FILE *err);

#endif

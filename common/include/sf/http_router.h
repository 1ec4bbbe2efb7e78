/* http_router: the route table of the HTTP server, percent-decoding of paths
 * and query strings, and the per-route request metrics.
 *
 * This is the second half of the http module (sf/http.h is the public
 * contract); the sf__ functions here are internal to common/src/http.c and
 * common/src/http_router.c and are declared in a header only so that both
 * files and the unit tests share one truth. Nothing is thread-safe; all of
 * it runs on the server's loop thread. Strings handed out for a request are
 * allocated with sf_http_req_alloc and live as long as the request. */
#ifndef SF_HTTP_ROUTER_H
#define SF_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "sf/http.h"

typedef struct sf__http_router sf__http_router_t;
typedef struct sf__http_stats sf__http_stats_t;

/* One decoded name/value pair (path parameter or query parameter). */
typedef struct sf__http_kv {
  const char *name;
  const char *value;
} sf__http_kv_t;

typedef enum sf__http_match_kind {
  SF__HTTP_MATCH_FOUND = 0, /* cb, ud, pattern, stats and params are set */
  SF__HTTP_MATCH_NO_PATH,   /* no pattern matches the path: 404 */
  SF__HTTP_MATCH_NO_METHOD, /* a pattern matches, another method: 405;
                                allow, pattern and stats are set */
} sf__http_match_kind_t;

typedef struct sf__http_match {
  sf__http_match_kind_t kind;
  sf_http_handler_cb cb;
  void *ud;
  const char *pattern;     /* borrowed from the router */
  sf__http_stats_t *stats; /* borrowed from the router */
  sf__http_kv_t *params;   /* request memory */
  size_t nparams;
  const char *allow; /* "GET, POST" (request memory) for 405 */
} sf__http_match_t;

/* Creates an empty table. Returns 0 or SF_ENOMEM. */
int sf__http_router_new(sf__http_router_t **out);
void sf__http_router_destroy(sf__http_router_t *rt);

/* Adds method + pattern (both copied). Pattern: "/" followed by segments
 * separated by "/"; a segment "{name}" is a parameter. Returns 0, SF_EINVAL
 * (bad method or pattern, or the same method and pattern twice) or
 * SF_ENOMEM. */
int sf__http_router_add(sf__http_router_t *rt, const char *method,
                        const char *pattern, sf_http_handler_cb cb, void *ud);

/* Matches method and the raw (still percent-encoded) path of r, len bytes,
 * without the query string. Each segment is decoded on its own, so "%2F"
 * inside a parameter stays in that parameter. When several patterns match,
 * the one with the most literal segments wins (then the first added).
 * Returns 0 with *m filled, SF_EPARSE for a malformed escape or %00 (answer
 * 400), SF_ENOMEM. */
int sf__http_router_match(const sf__http_router_t *rt, sf_http_req_t *r,
                          const char *method, const char *path, size_t len,
                          sf__http_match_t *m);

/* Stats of unmatched requests (404 and parse errors). Never NULL. */
sf__http_stats_t *sf__http_router_unmatched(sf__http_router_t *rt);

/* Counts one answered request. method is copied if new; seconds >= 0. */
void sf__http_stats_record(sf__http_stats_t *st, const char *method,
                           int status, double seconds);

/* Prometheus text of every route; malloc'd, NULL on out of memory. */
char *sf__http_router_metrics(const sf__http_router_t *rt, const char *prefix);

/* Percent-decodes len bytes of in into request memory (NUL-terminated);
 * plus_space turns '+' into ' ' (query strings). Returns 0, SF_EPARSE for a
 * malformed escape or an escaped NUL, SF_ENOMEM. */
int sf__http_decode(sf_http_req_t *r, const char *in, size_t len,
                    bool plus_space, char **out);

/* Splits a query string ("a=1&b=x+y", without the '?') into decoded pairs in
 * request memory; a name without '=' gets the value "". Empty pieces are
 * skipped. Returns 0, SF_EPARSE or SF_ENOMEM. */
int sf__http_parse_query(sf_http_req_t *r, const char *q, size_t len,
                         sf__http_kv_t **out, size_t *n);

#endif

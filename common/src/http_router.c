/* http_router: route table, percent-decoding and per-route metrics of the
 * HTTP server (see sf/http_router.h). Routes are few (tens), so matching is
 * a linear scan over pre-split patterns; the path is split and decoded once
 * per request into request memory. Metrics are kept per route pattern (plus
 * one "unmatched" bucket) so that label cardinality is bounded by the route
 * table, never by what clients send. */
#include "sf/http_router.h"
#include "sf/err.h"
#include "sf/metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latency buckets in seconds. */
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                   0.05, 0.1, 0.25, 0.5, 1, 2.5};
#define NBUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))

typedef struct counter {
  char *method; /* owned */
  int status;
  uint64_t n;
} counter_t;

struct sf__http_stats {
  char *route; /* owned */
  counter_t *counters;
  size_t ncounters, capcounters;
  uint64_t buckets[NBUCKETS]; /* not cumulative; the +Inf bucket is count */
  uint64_t count;
  double sum;
};

typedef struct route {
  char *method;  /* owned */
  char *pattern; /* owned */
  char **segs;   /* owned array; strings point into segbuf */
  char *segbuf;  /* owned copy of the pattern, split in place */
  size_t nsegs;
  size_t nliteral;
  sf_http_handler_cb cb;
  void *ud;
  sf__http_stats_t *stats; /* borrowed from the router's list */
} route_t;

struct sf__http_router {
  route_t *routes;
  size_t nroutes, caproutes;
  sf__http_stats_t **stats; /* [0] is "unmatched" */
  size_t nstats, capstats;
};

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

static sf__http_stats_t *stats_new(const char *route) {
  sf__http_stats_t *st = calloc(1, sizeof(*st));
  if (!st)
    return NULL;
  st->route = dup_str(route);
  if (!st->route) {
    free(st);
    return NULL;
  }
  return st;
}

static void stats_free(sf__http_stats_t *st) {
  if (!st)
    return;
  for (size_t i = 0; i < st->ncounters; i++)
    free(st->counters[i].method);
  free(st->counters);
  free(st->route);
  free(st);
}

static int router_push_stats(sf__http_router_t *rt, sf__http_stats_t *st) {
  if (rt->nstats == rt->capstats) {
    size_t cap = rt->capstats ? rt->capstats * 2 : 8;
    sf__http_stats_t **p = realloc(rt->stats, cap * sizeof(*p));
    if (!p)
      return SF_ENOMEM;
    rt->stats = p;
    rt->capstats = cap;
  }
  rt->stats[rt->nstats++] = st;
  return 0;
}

int sf__http_router_new(sf__http_router_t **out) {
  sf__http_router_t *rt = calloc(1, sizeof(*rt));
  if (!rt)
    return SF_ENOMEM;
  sf__http_stats_t *un = stats_new("unmatched");
  if (!un)
    goto fail_stats;
  if (router_push_stats(rt, un) != 0)
    goto fail_push;
  *out = rt;
  return 0;
fail_push:
  stats_free(un);
fail_stats:
  free(rt);
  return SF_ENOMEM;
}

void sf__http_router_destroy(sf__http_router_t *rt) {
  if (!rt)
    return;
  for (size_t i = 0; i < rt->nroutes; i++) {
    route_t *ro = &rt->routes[i];
    free(ro->method);
    free(ro->pattern);
    free(ro->segs);
    free(ro->segbuf);
  }
  free(rt->routes);
  for (size_t i = 0; i < rt->nstats; i++)
    stats_free(rt->stats[i]);
  free(rt->stats);
  free(rt);
}

sf__http_stats_t *sf__http_router_unmatched(sf__http_router_t *rt) {
  return rt->stats[0];
}

static bool valid_method(const char *m) {
  if (!*m || strlen(m) > 16)
    return false;
  for (const char *p = m; *p; p++)
    if (*p < 'A' || *p > 'Z')
      return false;
  return true;
}

/* A pattern segment is a literal without braces, or "{name}" with a name of
 * letters, digits and '_'. Literals may not be empty except for the root
 * pattern "/". */
static bool valid_segment(const char *seg, bool only) {
  size_t n = strlen(seg);
  if (n == 0)
    return only;
  if (seg[0] == '{') {
    if (n < 3 || seg[n - 1] != '}')
      return false;
    for (size_t i = 1; i + 1 < n; i++) {
      char c = seg[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '_'))
        return false;
    }
    return true;
  }
  for (size_t i = 0; i < n; i++)
    if (seg[i] == '{' || seg[i] == '}' || seg[i] == '?' || seg[i] == '%' ||
        seg[i] == '#' || (unsigned char)seg[i] <= ' ')
      return false;
  return true;
}

static bool is_param(const char *seg) { return seg[0] == '{'; }

static sf__http_stats_t *router_stats_for(sf__http_router_t *rt,
                                          const char *pattern) {
  for (size_t i = 1; i < rt->nstats; i++)
    if (strcmp(rt->stats[i]->route, pattern) == 0)
      return rt->stats[i];
  sf__http_stats_t *st = stats_new(pattern);
  if (!st)
    return NULL;
  if (router_push_stats(rt, st) != 0) {
    stats_free(st);
    return NULL;
  }
  return st;
}

int sf__http_router_add(sf__http_router_t *rt, const char *method,
                        const char *pattern, sf_http_handler_cb cb, void *ud) {
  if (!rt || !method || !pattern || !cb || !valid_method(method) ||
      pattern[0] != '/')
    return SF_EINVAL;
  for (size_t i = 0; i < rt->nroutes; i++)
    if (strcmp(rt->routes[i].method, method) == 0 &&
        strcmp(rt->routes[i].pattern, pattern) == 0)
      return SF_EINVAL;

  route_t ro = {.cb = cb, .ud = ud};
  int rc = SF_ENOMEM;
  ro.segbuf = dup_str(pattern + 1);
  if (!ro.segbuf)
    goto fail;
  size_t nsegs = 1;
  for (const char *p = ro.segbuf; *p; p++)
    nsegs += *p == '/';
  ro.segs = calloc(nsegs, sizeof(*ro.segs));
  if (!ro.segs)
    goto fail;
  char *s = ro.segbuf;
  for (size_t i = 0; i < nsegs; i++) {
    ro.segs[i] = s;
    char *slash = strchr(s, '/');
    if (slash) {
      *slash = '\0';
      s = slash + 1;
    }
    if (!valid_segment(ro.segs[i], nsegs == 1)) {
      rc = SF_EINVAL;
      goto fail;
    }
    if (!is_param(ro.segs[i]))
      ro.nliteral++;
  }
  ro.nsegs = nsegs;
  /* Two parameters of one pattern must not share a name. */
  for (size_t i = 0; i < nsegs; i++)
    for (size_t j = i + 1; j < nsegs; j++)
      if (is_param(ro.segs[i]) && strcmp(ro.segs[i], ro.segs[j]) == 0) {
        rc = SF_EINVAL;
        goto fail;
      }
  ro.method = dup_str(method);
  ro.pattern = dup_str(pattern);
  if (!ro.method || !ro.pattern)
    goto fail;
  ro.stats = router_stats_for(rt, pattern);
  if (!ro.stats)
    goto fail;
  if (rt->nroutes == rt->caproutes) {
    size_t cap = rt->caproutes ? rt->caproutes * 2 : 8;
    route_t *p = realloc(rt->routes, cap * sizeof(*p));
    if (!p)
      goto fail; /* the stats entry stays: harmless, it is reused */
    rt->routes = p;
    rt->caproutes = cap;
  }
  rt->routes[rt->nroutes++] = ro;
  return 0;
fail:
  free(ro.pattern);
  free(ro.method);
  free(ro.segs);
  free(ro.segbuf);
  return rc;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int sf__http_decode(sf_http_req_t *r, const char *in, size_t len,
                    bool plus_space, char **out) {
  char *d = sf_http_req_alloc(r, len + 1);
  if (!d)
    return SF_ENOMEM;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = in[i];
    if (c == '%') {
      if (len - i < 3)
        return SF_EPARSE;
      int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
      if (hi < 0 || lo < 0)
        return SF_EPARSE;
      c = (char)(hi * 16 + lo);
      if (c == '\0')
        return SF_EPARSE;
      i += 2;
    } else if (c == '+' && plus_space) {
      c = ' ';
    }
    d[o++] = c;
  }
  d[o] = '\0';
  *out = d;
  return 0;
}

int sf__http_parse_query(sf_http_req_t *r, const char *q, size_t len,
                         sf__http_kv_t **out, size_t *n) {
  size_t pieces = 1;
  for (size_t i = 0; i < len; i++)
    pieces += q[i] == '&';
  sf__http_kv_t *kv = sf_http_req_alloc(r, pieces * sizeof(*kv));
  if (!kv)
    return SF_ENOMEM;
  size_t k = 0, start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && q[i] != '&')
      continue;
    size_t plen = i - start;
    const char *p = q + start;
    start = i + 1;
    if (plen == 0)
      continue;
    const char *eq = memchr(p, '=', plen);
    size_t nlen = eq ? (size_t)(eq - p) : plen;
    char *name, *value;
    int rc = sf__http_decode(r, p, nlen, true, &name);
    if (rc != 0)
      return rc;
    if (eq)
      rc = sf__http_decode(r, eq + 1, plen - nlen - 1, true, &value);
    else
      rc = sf__http_decode(r, "", 0, true, &value);
    if (rc != 0)
      return rc;
    kv[k].name = name;
    kv[k].value = value;
    k++;
  }
  *out = kv;
  *n = k;
  return 0;
}

static bool route_matches(const route_t *ro, char *const *segs, size_t nsegs) {
  if (ro->nsegs != nsegs)
    return false;
  for (size_t i = 0; i < nsegs; i++) {
    if (is_param(ro->segs[i])) {
      if (segs[i][0] == '\0')
        return false;
    } else if (strcmp(ro->segs[i], segs[i]) != 0) {
      return false;
    }
  }
  return true;
}

int sf__http_router_match(const sf__http_router_t *rt, sf_http_req_t *r,
                          const char *method, const char *path, size_t len,
                          sf__http_match_t *m) {
  memset(m, 0, sizeof(*m));
  m->kind = SF__HTTP_MATCH_NO_PATH;
  if (len == 0 || path[0] != '/')
    return SF_EPARSE;
  /* Split the raw path first and decode each segment on its own. */
  size_t nsegs = 1;
  for (size_t i = 1; i < len; i++)
    nsegs += path[i] == '/';
  char **segs = sf_http_req_alloc(r, nsegs * sizeof(*segs));
  if (!segs)
    return SF_ENOMEM;
  size_t start = 1, k = 0;
  for (size_t i = 1; i <= len; i++) {
    if (i < len && path[i] != '/')
      continue;
    int rc = sf__http_decode(r, path + start, i - start, false, &segs[k++]);
    if (rc != 0)
      return rc;
    start = i + 1;
  }

  const route_t *best = NULL, *any = NULL;
  for (size_t i = 0; i < rt->nroutes; i++) {
    const route_t *ro = &rt->routes[i];
    if (!route_matches(ro, segs, nsegs))
      continue;
    if (!any || ro->nliteral > any->nliteral)
      any = ro;
    if (strcmp(ro->method, method) == 0 &&
        (!best || ro->nliteral > best->nliteral))
      best = ro;
  }
  if (!any)
    return 0;
  if (!best) {
    /* 405: list the methods of every pattern that matches, once each. */
    size_t cap = 1;
    for (size_t i = 0; i < rt->nroutes; i++)
      cap += strlen(rt->routes[i].method) + 2;
    char *allow = sf_http_req_alloc(r, cap);
    if (!allow)
      return SF_ENOMEM;
    allow[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < rt->nroutes; i++) {
      const route_t *ro = &rt->routes[i];
      if (!route_matches(ro, segs, nsegs))
        continue;
      bool seen = false;
      for (size_t j = 0; j < i && !seen; j++)
        seen = strcmp(rt->routes[j].method, ro->method) == 0 &&
               route_matches(&rt->routes[j], segs, nsegs);
      if (seen)
        continue;
      used += (size_t)snprintf(allow + used, cap - used, "%s%s",
                               used ? ", " : "", ro->method);
    }
    m->kind = SF__HTTP_MATCH_NO_METHOD;
    m->allow = allow;
    m->pattern = any->pattern;
    m->stats = any->stats;
    return 0;
  }

  size_t nparams = best->nsegs - best->nliteral;
  sf__http_kv_t *params = NULL;
  if (nparams) {
    params = sf_http_req_alloc(r, nparams * sizeof(*params));
    if (!params)
      return SF_ENOMEM;
  }
  size_t p = 0;
  for (size_t i = 0; i < nsegs; i++) {
    const char *seg = best->segs[i];
    if (!is_param(seg))
      continue;
    size_t nlen = strlen(seg) - 2;
    char *name = sf_http_req_alloc(r, nlen + 1);
    if (!name)
      return SF_ENOMEM;
    memcpy(name, seg + 1, nlen);
    name[nlen] = '\0';
    params[p].name = name;
    params[p].value = segs[i];
    p++;
  }
  m->kind = SF__HTTP_MATCH_FOUND;
  m->cb = best->cb;
  m->ud = best->ud;
  m->pattern = best->pattern;
  m->stats = best->stats;
  m->params = params;
  m->nparams = nparams;
  return 0;
}

void sf__http_stats_record(sf__http_stats_t *st, const char *method,
                           int status, double seconds) {
  if (seconds < 0)
    seconds = 0;
  st->count++;
  st->sum += seconds;
  for (size_t i = 0; i < NBUCKETS; i++)
    if (seconds <= bucket_le[i]) {
      st->buckets[i]++;
      break;
    }
  for (size_t i = 0; i < st->ncounters; i++)
    if (st->counters[i].status == status &&
        strcmp(st->counters[i].method, method) == 0) {
      st->counters[i].n++;
      return;
    }
  /* Out of memory here loses one counter increment, never the request. */
  if (st->ncounters == st->capcounters) {
    size_t cap = st->capcounters ? st->capcounters * 2 : 4;
    counter_t *p = realloc(st->counters, cap * sizeof(*p));
    if (!p)
      return;
    st->counters = p;
    st->capcounters = cap;
  }
  char *m = dup_str(method);
  if (!m)
    return;
  st->counters[st->ncounters++] = (counter_t){m, status, 1};
}

char *sf__http_router_metrics(const sf__http_router_t *rt, const char *prefix) {
  sf_metrics_t m;
  sf_metrics_init(&m, prefix);
  sf_metrics_family(&m, "http_requests_total", SF_METRIC_COUNTER,
                    "HTTP requests answered.");
  for (size_t i = 0; i < rt->nstats; i++) {
    const sf__http_stats_t *st = rt->stats[i];
    for (size_t j = 0; j < st->ncounters; j++) {
      char status[16];
      snprintf(status, sizeof(status), "%d", st->counters[j].status);
      const sf_metric_label_t labels[] = {{"route", st->route},
                                          {"method", st->counters[j].method},
                                          {"status", status}};
      sf_metrics_u64(&m, "http_requests_total", labels, 3, st->counters[j].n);
    }
  }
  sf_metrics_family(&m, "http_request_duration_seconds", SF_METRIC_HISTOGRAM,
                    "Time from the end of the request headers to the answer.");
  for (size_t i = 0; i < rt->nstats; i++) {
    const sf__http_stats_t *st = rt->stats[i];
    if (st->count == 0)
      continue;
    const sf_metric_label_t route[] = {{"route", st->route}};
    sf_metrics_histogram(&m, "http_request_duration_seconds", route, 1,
                         bucket_le, st->buckets, NBUCKETS, st->count, st->sum);
  }
  return sf_metrics_take(&m, NULL);
}

/* metrics: the Prometheus text exposition format (sf/metrics.h). Text is
 * appended with vsnprintf into a buffer that doubles as it grows; the
 * first failed allocation poisons the buffer. */
#include "sf/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sf_metrics_init(sf_metrics_t *m, const char *prefix) {
  memset(m, 0, sizeof(*m));
  m->prefix = prefix;
}

void sf_metrics_release(sf_metrics_t *m) {
  free(m->buf);
  sf_metrics_init(m, m->prefix);
}

char *sf_metrics_take(sf_metrics_t *m, size_t *len) {
  char *out = NULL;
  if (!m->failed)
    out = m->buf ? m->buf : calloc(1, 1);
  else
    free(m->buf);
  if (out && len)
    *len = m->buf ? m->len : 0;
  m->buf = NULL;
  sf_metrics_init(m, m->prefix);
  return out;
}

static bool grow(sf_metrics_t *m, size_t need) {
  if (m->cap - m->len > need)
    return true;
  size_t cap = m->cap ? m->cap : 1024;
  while (cap - m->len <= need)
    cap *= 2;
  char *p = realloc(m->buf, cap);
  if (!p) {
    m->failed = true;
    return false;
  }
  m->buf = p;
  m->cap = cap;
  return true;
}

__attribute__((format(printf, 2, 3))) static void put(sf_metrics_t *m,
                                                      const char *fmt, ...) {
  if (m->failed)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = m->cap - m->len;
    int n = vsnprintf(m->buf ? m->buf + m->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      m->failed = true;
      return;
    }
    if ((size_t)n < room) {
      m->len += (size_t)n;
      return;
    }
    if (!grow(m, (size_t)n))
      return;
  }
}

void sf_metrics_raw(sf_metrics_t *m, const char *text) {
  size_t n = strlen(text);
  if (m->failed || !grow(m, n))
    return;
  memcpy(m->buf + m->len, text, n + 1);
  m->len += n;
}

/* Writes s escaping backslash and newline, and the double quote when
 * quote is set (label values). */
static void escaped(sf_metrics_t *m, const char *s, bool quote) {
  for (; *s && !m->failed; s++) {
    if (*s == '\\')
      put(m, "\\\\");
    else if (*s == '\n')
      put(m, "\\n");
    else if (quote && *s == '"')
      put(m, "\\\"");
    else
      put(m, "%c", *s);
  }
}

static void name(sf_metrics_t *m, const char *n) {
  if (m->prefix && m->prefix[0])
    put(m, "%s_%s", m->prefix, n);
  else
    put(m, "%s", n);
}

/* name{labels[,le="le"]} and the space before the value. */
static void series(sf_metrics_t *m, const char *n, const char *suffix,
                   const sf_metric_label_t *labels, size_t n_labels,
                   const char *le) {
  name(m, n);
  if (suffix)
    put(m, "%s", suffix);
  if (n_labels > 0 || le) {
    put(m, "{");
    for (size_t i = 0; i < n_labels; i++) {
      put(m, "%s%s=\"", i ? "," : "", labels[i].name);
      escaped(m, labels[i].value, true);
      put(m, "\"");
    }
    if (le)
      put(m, "%sle=\"%s\"", n_labels ? "," : "", le);
    put(m, "}");
  }
  put(m, " ");
}

static const char *const type_names[] = {"counter", "gauge", "histogram",
                                         "summary"};

void sf_metrics_family(sf_metrics_t *m, const char *n, sf_metric_type_t type,
                       const char *help) {
  if (help) {
    put(m, "# HELP ");
    name(m, n);
    put(m, " ");
    escaped(m, help, false);
    put(m, "\n");
  }
  put(m, "# TYPE ");
  name(m, n);
  put(m, " %s\n", type_names[type]);
}

void sf_metrics_u64(sf_metrics_t *m, const char *n,
                    const sf_metric_label_t *labels, size_t n_labels,
                    uint64_t value) {
  series(m, n, NULL, labels, n_labels, NULL);
  put(m, "%" PRIu64 "\n", value);
}

void sf_metrics_i64(sf_metrics_t *m, const char *n,
                    const sf_metric_label_t *labels, size_t n_labels,
                    int64_t value) {
  series(m, n, NULL, labels, n_labels, NULL);
  put(m, "%" PRId64 "\n", value);
}

static void f64(sf_metrics_t *m, double v) {
  if (isnan(v)) {
    put(m, "NaN");
    return;
  }
  if (isinf(v)) {
    put(m, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  char text[32];
  snprintf(text, sizeof(text), "%.15g", v);
  if (strtod(text, NULL) != v)
    snprintf(text, sizeof(text), "%.17g", v);
  put(m, "%s", text);
}

void sf_metrics_f64(sf_metrics_t *m, const char *n,
                    const sf_metric_label_t *labels, size_t n_labels,
                    double value) {
  series(m, n, NULL, labels, n_labels, NULL);
  f64(m, value);
  put(m, "\n");
}

void sf_metrics_counter(sf_metrics_t *m, const char *n, const char *help,
                        uint64_t value) {
  sf_metrics_family(m, n, SF_METRIC_COUNTER, help);
  sf_metrics_u64(m, n, NULL, 0, value);
}

void sf_metrics_gauge(sf_metrics_t *m, const char *n, const char *help,
                      int64_t value) {
  sf_metrics_family(m, n, SF_METRIC_GAUGE, help);
  sf_metrics_i64(m, n, NULL, 0, value);
}

void sf_metrics_histogram(sf_metrics_t *m, const char *n,
                          const sf_metric_label_t *labels, size_t n_labels,
                          const double *bounds, const uint64_t *counts,
                          size_t n_bounds, uint64_t count, double sum) {
  uint64_t cum = 0;
  char le[32];
  for (size_t i = 0; i < n_bounds; i++) {
    cum += counts[i];
    snprintf(le, sizeof(le), "%g", bounds[i]);
    series(m, n, "_bucket", labels, n_labels, le);
    put(m, "%" PRIu64 "\n", cum);
  }
  series(m, n, "_bucket", labels, n_labels, "+Inf");
  put(m, "%" PRIu64 "\n", count);
  series(m, n, "_sum", labels, n_labels, NULL);
  f64(m, sum);
  put(m, "\n");
  series(m, n, "_count", labels, n_labels, NULL);
  put(m, "%" PRIu64 "\n", count);
}

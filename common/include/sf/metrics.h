/* metrics: the Prometheus text exposition format (version 0.0.4), written
 * in one place for every service's /metrics.
 *
 * An sf_metrics_t is a growing text that a /metrics handler fills and then
 * takes: a family's # HELP and # TYPE lines, then its samples (counters,
 * gauges, histograms with cumulative buckets, +Inf, _sum and _count). Every
 * name is prefixed with the prefix given at init ("stockflow_query" makes
 * "db_errors_total" stockflow_query_db_errors_total). Label values are
 * escaped (\\, \" and \n), HELP text too (\\ and \n). Running out of memory
 * is sticky: later calls do nothing and sf_metrics_take returns NULL, so a
 * handler checks once, at the end.
 *
 * A value type the caller embeds (usually on its stack); not thread-safe:
 * one writer at a time. */
#ifndef SF_METRICS_H
#define SF_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The content type of the exposition. */
#define SF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum sf_metric_type {
  SF_METRIC_COUNTER,
  SF_METRIC_GAUGE,
  SF_METRIC_HISTOGRAM,
  SF_METRIC_SUMMARY,
} sf_metric_type_t;

typedef struct sf_metric_label {
  const char *name;  /* a valid label name, written as is */
  const char *value; /* any text, escaped */
} sf_metric_label_t;

typedef struct sf_metrics {
  const char *prefix; /* borrowed; NULL or "" for none */
  char *buf;
  size_t len, cap;
  bool failed;
} sf_metrics_t;

/* Starts an empty text. prefix (borrowed, may be NULL) must outlive m. */
void sf_metrics_init(sf_metrics_t *m, const char *prefix);

/* Takes the text: returns it (malloc'd, NUL-terminated, owned by the
 * caller; *len, when not NULL, is its length) and leaves m empty, or NULL
 * when memory ran out at any point (m is then released as well). */
char *sf_metrics_take(sf_metrics_t *m, size_t *len);

/* Releases m without taking its text. */
void sf_metrics_release(sf_metrics_t *m);

/* The # HELP (omitted when help is NULL) and # TYPE lines of family name. */
void sf_metrics_family(sf_metrics_t *m, const char *name,
                       sf_metric_type_t type, const char *help);

/* One sample line `name{labels} value` (no braces without labels). labels
 * is an array of n_labels pairs (NULL when 0). */
void sf_metrics_u64(sf_metrics_t *m, const char *name,
                    const sf_metric_label_t *labels, size_t n_labels,
                    uint64_t value);
void sf_metrics_i64(sf_metrics_t *m, const char *name,
                    const sf_metric_label_t *labels, size_t n_labels,
                    int64_t value);
/* Floats in the shortest of %.15g / %.17g that reads back exactly; NaN,
 * +Inf and -Inf as the format spells them. */
void sf_metrics_f64(sf_metrics_t *m, const char *name,
                    const sf_metric_label_t *labels, size_t n_labels,
                    double value);

/* A family with one unlabelled sample. */
void sf_metrics_counter(sf_metrics_t *m, const char *name, const char *help,
                        uint64_t value);
void sf_metrics_gauge(sf_metrics_t *m, const char *name, const char *help,
                      int64_t value);

/* The samples of one histogram (its family line is written separately, so
 * that several label sets share it): name_bucket{labels,le="<bound>"} with
 * the cumulative count for each of the n_bounds ascending bounds (written
 * with %g), name_bucket{labels,le="+Inf"} count, name_sum{labels} sum and
 * name_count{labels} count. counts[i] is the number of observations in
 * (bounds[i-1], bounds[i]], not cumulative; count is every observation,
 * including those above the last bound. */
void sf_metrics_histogram(sf_metrics_t *m, const char *name,
                          const sf_metric_label_t *labels, size_t n_labels,
                          const double *bounds, const uint64_t *counts,
                          size_t n_bounds, uint64_t count, double sum);

/* Appends text as is (for example another module's exposition). */
void sf_metrics_raw(sf_metrics_t *m, const char *text);

#endif

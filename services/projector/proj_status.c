/* proj_status: counters and gauges shared between the worker thread and
 * the loop thread (see proj_status.h). A mutex rather than atomics: a batch
 * updates several values that /metrics should see together, and the
 * per-partition table grows. Batch durations go into a fixed-bucket
 * histogram. */
#include "proj_status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/metrics.h"

#define TOPIC_MAX 256

static const double k_dur_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1, 0.25, 0.5, 1.0, 2.5, 5.0};
#define N_DUR (sizeof k_dur_buckets / sizeof k_dur_buckets[0])

static const double k_size_buckets[] = {1, 10, 50, 100, 250, 500, 1000, 2500,
                                        5000, 10000};
#define N_SIZE (sizeof k_size_buckets / sizeof k_size_buckets[0])

typedef struct part {
  char topic[TOPIC_MAX];
  int32_t partition;
  int64_t last_offset; /* last offset in a committed batch */
  int64_t lag;         /* high watermark - next offset; < 0: unknown */
} part_t;

struct proj_status {
  pthread_mutex_t mu;
  bool pg_connected, assigned;
  uint64_t events_applied, batches, batch_failures;
  uint64_t poison, invalid, skipped, duplicates;
  uint64_t batch_size_sum;
  uint64_t size_bucket[N_SIZE]; /* non-cumulative counts */
  uint64_t changes, dead_letters, dlq_failures, pruned;
  int64_t pruned_through;
  double dur_sum;
  uint64_t dur_bucket[N_DUR]; /* non-cumulative counts */
  part_t *parts;
  size_t n_parts, cap_parts;
};

int proj_status_new(proj_status_t **out) {
  proj_status_t *st = calloc(1, sizeof *st);
  if (!st)
    return SF_ENOMEM;
  if (pthread_mutex_init(&st->mu, NULL) != 0) {
    free(st);
    return SF_ENOMEM;
  }
  *out = st;
  return 0;
}

void proj_status_destroy(proj_status_t *st) {
  if (!st)
    return;
  pthread_mutex_destroy(&st->mu);
  free(st->parts);
  free(st);
}

void proj_status_set_pg(proj_status_t *st, bool connected) {
  pthread_mutex_lock(&st->mu);
  st->pg_connected = connected;
  pthread_mutex_unlock(&st->mu);
}

void proj_status_set_assigned(proj_status_t *st, bool assigned) {
  pthread_mutex_lock(&st->mu);
  st->assigned = assigned;
  pthread_mutex_unlock(&st->mu);
}

/* Finds or adds the gauge of topic x partition; NULL on out of memory.
 * Called with the mutex held. */
static part_t *part_of(proj_status_t *st, const char *topic, int32_t p) {
  for (size_t i = 0; i < st->n_parts; i++)
    if (st->parts[i].partition == p && strcmp(st->parts[i].topic, topic) == 0)
      return &st->parts[i];
  if (st->n_parts == st->cap_parts) {
    size_t cap = st->cap_parts ? st->cap_parts * 2 : 8;
    part_t *np = realloc(st->parts, cap * sizeof *np);
    if (!np)
      return NULL;
    st->parts = np;
    st->cap_parts = cap;
  }
  part_t *pt = &st->parts[st->n_parts++];
  snprintf(pt->topic, sizeof pt->topic, "%s", topic);
  pt->partition = p;
  pt->last_offset = -1;
  pt->lag = -1;
  return pt;
}

int proj_status_batch_committed(proj_status_t *st, const proj_plan_t *plan,
                                double seconds) {
  int rc = 0;
  pthread_mutex_lock(&st->mu);
  const size_t *v = plan->n_by_verdict;
  st->events_applied += v[PROJ_APPLY] + v[PROJ_DUPLICATE] + v[PROJ_SKIPPED];
  st->poison += v[PROJ_POISON];
  st->invalid += v[PROJ_INVALID];
  st->skipped += v[PROJ_SKIPPED];
  st->duplicates += v[PROJ_DUPLICATE];
  st->batches++;
  st->batch_size_sum += plan->n_inputs;
  for (size_t b = 0; b < N_SIZE; b++) {
    if ((double)plan->n_inputs <= k_size_buckets[b]) {
      st->size_bucket[b]++;
      break;
    }
  }
  st->dur_sum += seconds;
  for (size_t b = 0; b < N_DUR; b++) {
    if (seconds <= k_dur_buckets[b]) {
      st->dur_bucket[b]++;
      break;
    }
  }
  for (size_t k = 0; k < plan->n_offsets; k++) {
    const proj_offset_t *o = &plan->offsets[k];
    part_t *pt = part_of(st, o->topic, o->partition);
    if (!pt) {
      rc = SF_ENOMEM;
      continue;
    }
    if (o->last > pt->last_offset)
      pt->last_offset = o->last;
  }
  pthread_mutex_unlock(&st->mu);
  return rc;
}

void proj_status_batch_failed(proj_status_t *st) {
  pthread_mutex_lock(&st->mu);
  st->batch_failures++;
  pthread_mutex_unlock(&st->mu);
}

void proj_status_add_changes(proj_status_t *st, size_t n) {
  pthread_mutex_lock(&st->mu);
  st->changes += n;
  pthread_mutex_unlock(&st->mu);
}

void proj_status_add_dead_letters(proj_status_t *st, size_t n) {
  pthread_mutex_lock(&st->mu);
  st->dead_letters += n;
  pthread_mutex_unlock(&st->mu);
}

void proj_status_dlq_failed(proj_status_t *st) {
  pthread_mutex_lock(&st->mu);
  st->dlq_failures++;
  pthread_mutex_unlock(&st->mu);
}

void proj_status_pruned(proj_status_t *st, int64_t deleted,
                        int64_t pruned_through) {
  pthread_mutex_lock(&st->mu);
  if (deleted > 0)
    st->pruned += (uint64_t)deleted;
  st->pruned_through = pruned_through;
  pthread_mutex_unlock(&st->mu);
}

int proj_status_set_lag(proj_status_t *st, const char *topic,
                        int32_t partition, int64_t lag) {
  int rc = 0;
  pthread_mutex_lock(&st->mu);
  part_t *pt = part_of(st, topic, partition);
  if (pt)
    pt->lag = lag;
  else
    rc = SF_ENOMEM;
  pthread_mutex_unlock(&st->mu);
  return rc;
}

void proj_status_clear_lag(proj_status_t *st) {
  pthread_mutex_lock(&st->mu);
  for (size_t i = 0; i < st->n_parts; i++)
    st->parts[i].lag = -1;
  pthread_mutex_unlock(&st->mu);
}

bool proj_status_ready(proj_status_t *st, const char **missing) {
  pthread_mutex_lock(&st->mu);
  const char *why = NULL;
  if (!st->pg_connected && !st->assigned)
    why = "postgresql is not connected and the consumer has no assignment";
  else if (!st->pg_connected)
    why = "postgresql is not connected";
  else if (!st->assigned)
    why = "the consumer has no partition assignment yet";
  pthread_mutex_unlock(&st->mu);
  if (missing)
    *missing = why;
  return why == NULL;
}

uint64_t proj_status_events_applied(proj_status_t *st) {
  pthread_mutex_lock(&st->mu);
  uint64_t n = st->events_applied;
  pthread_mutex_unlock(&st->mu);
  return n;
}

char *proj_status_metrics(proj_status_t *st, const char *prefix) {
  sf_metrics_t m;
  sf_metrics_init(&m, prefix);
  pthread_mutex_lock(&st->mu);
  sf_metrics_counter(&m, "events_applied_total",
                     "Events in committed batches (poison and invalid "
                     "excluded).",
                     st->events_applied);
  sf_metrics_counter(&m, "batches_total", "Batches committed.", st->batches);
  sf_metrics_counter(&m, "batch_failures_total",
                     "Attempts to apply a batch that failed and were retried.",
                     st->batch_failures);
  sf_metrics_counter(&m, "poison_total",
                     "Messages skipped because they did not decode or could "
                     "not be stored.",
                     st->poison + st->invalid);
  sf_metrics_counter(&m, "skipped_total",
                     "Events of types the projector does not handle yet.",
                     st->skipped);
  sf_metrics_counter(&m, "duplicates_total",
                     "Events dropped as duplicates within a batch.",
                     st->duplicates);
  sf_metrics_counter(&m, "changes_total",
                     "Rows written to the change log (changes).", st->changes);
  sf_metrics_counter(&m, "dlq_total",
                     "Dead letters acknowledged by the broker (messages that "
                     "did not decode or could not be stored).",
                     st->dead_letters);
  sf_metrics_counter(&m, "dlq_failures_total",
                     "Attempts to deliver a batch's dead letters that failed "
                     "(the batch was retried).",
                     st->dlq_failures);
  sf_metrics_counter(&m, "changes_pruned_total",
                     "Change log rows deleted by retention.", st->pruned);
  sf_metrics_gauge(&m, "changes_pruned_through",
                   "changes_meta.pruned_through after the last retention run.",
                   (int64_t)st->pruned_through);
  sf_metrics_family(&m, "batch_size", SF_METRIC_HISTOGRAM,
                    "Messages per committed batch.");
  sf_metrics_histogram(&m, "batch_size", NULL, 0, k_size_buckets,
                       st->size_bucket, N_SIZE, st->batches,
                       (double)st->batch_size_sum);
  sf_metrics_family(&m, "batch_duration_seconds", SF_METRIC_HISTOGRAM,
                    "Time from a batch's first message to its commit.");
  sf_metrics_histogram(&m, "batch_duration_seconds", NULL, 0, k_dur_buckets,
                       st->dur_bucket, N_DUR, st->batches, st->dur_sum);
  sf_metrics_family(&m, "last_applied_offset", SF_METRIC_GAUGE,
                    "Last offset in a committed batch, per partition.");
  for (size_t i = 0; i < st->n_parts; i++) {
    char part[16];
    snprintf(part, sizeof(part), "%d", (int)st->parts[i].partition);
    const sf_metric_label_t labels[] = {{"topic", st->parts[i].topic},
                                        {"partition", part}};
    sf_metrics_i64(&m, "last_applied_offset", labels, 2,
                   (int64_t)st->parts[i].last_offset);
  }
  sf_metrics_family(&m, "consumer_lag", SF_METRIC_GAUGE,
                    "Messages behind the high watermark (last stable offset), "
                    "per assigned partition.");
  for (size_t i = 0; i < st->n_parts; i++) {
    if (st->parts[i].lag < 0)
      continue;
    char part[16];
    snprintf(part, sizeof(part), "%d", (int)st->parts[i].partition);
    const sf_metric_label_t labels[] = {{"topic", st->parts[i].topic},
                                        {"partition", part}};
    sf_metrics_i64(&m, "consumer_lag", labels, 2, (int64_t)st->parts[i].lag);
  }
  sf_metrics_gauge(&m, "pg_connected", "1 when PostgreSQL is connected.",
                   st->pg_connected);
  sf_metrics_gauge(&m, "assigned", "1 when the consumer holds an assignment.",
                   st->assigned);
  pthread_mutex_unlock(&st->mu);
  return sf_metrics_take(&m, NULL);
}

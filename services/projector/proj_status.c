/* proj_status: counters and gauges shared between the worker thread and
 * the loop thread (see proj_status.h). A mutex rather than atomics: a batch
 * updates several values that /metrics should see together, and the
 * per-partition table grows. Batch durations go into a fixed-bucket
 * histogram. */
#include "proj_status.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

#define TOPIC_MAX 256

static const double k_dur_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,   0.25,   0.5,   1.0,  2.5,   5.0};
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

/* A growing text buffer; out of memory is sticky. */
typedef struct text {
  char *buf;
  size_t len, cap;
  bool failed;
} text_t;

static void tprintf(text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void tprintf(text_t *t, const char *fmt, ...) {
  if (t->failed)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->cap - t->len;
    int n = vsnprintf(t->buf ? t->buf + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->failed = true;
      return;
    }
    if ((size_t)n < room) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap ? t->cap : 1024;
    while (cap - t->len <= (size_t)n)
      cap *= 2;
    char *nb = realloc(t->buf, cap);
    if (!nb) {
      t->failed = true;
      return;
    }
    t->buf = nb;
    t->cap = cap;
  }
}

/* Writes s as a Prometheus label value (escapes \, " and newline). */
static void tlabel(text_t *t, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      tprintf(t, "\\%c", *s);
    else if (*s == '\n')
      tprintf(t, "\\n");
    else
      tprintf(t, "%c", *s);
  }
}

static void counter(text_t *t, const char *prefix, const char *name,
                    const char *help, uint64_t v) {
  tprintf(t, "# HELP %s_%s %s\n# TYPE %s_%s counter\n%s_%s %llu\n", prefix,
          name, help, prefix, name, prefix, name, (unsigned long long)v);
}

static void gauge(text_t *t, const char *prefix, const char *name,
                  const char *help, long long v) {
  tprintf(t, "# HELP %s_%s %s\n# TYPE %s_%s gauge\n%s_%s %lld\n", prefix, name,
          help, prefix, name, prefix, name, v);
}

char *proj_status_metrics(proj_status_t *st, const char *prefix) {
  text_t t = {0};
  pthread_mutex_lock(&st->mu);
  counter(&t, prefix, "events_applied_total",
          "Events in committed batches (poison and invalid excluded).",
          st->events_applied);
  counter(&t, prefix, "batches_total", "Batches committed.", st->batches);
  counter(&t, prefix, "batch_failures_total",
          "Attempts to apply a batch that failed and were retried.",
          st->batch_failures);
  counter(&t, prefix, "poison_total",
          "Messages skipped because they did not decode or could not be "
          "stored.",
          st->poison + st->invalid);
  counter(&t, prefix, "skipped_total",
          "Events of types the projector does not handle yet.", st->skipped);
  counter(&t, prefix, "duplicates_total",
          "Events dropped as duplicates within a batch.", st->duplicates);
  counter(&t, prefix, "changes_total",
          "Rows written to the change log (changes).", st->changes);
  counter(&t, prefix, "dlq_total",
          "Dead letters acknowledged by the broker (messages that did not "
          "decode or could not be stored).",
          st->dead_letters);
  counter(&t, prefix, "dlq_failures_total",
          "Attempts to deliver a batch's dead letters that failed (the batch "
          "was retried).",
          st->dlq_failures);
  counter(&t, prefix, "changes_pruned_total",
          "Change log rows deleted by retention.", st->pruned);
  gauge(&t, prefix, "changes_pruned_through",
        "changes_meta.pruned_through after the last retention run.",
        (long long)st->pruned_through);
  tprintf(&t,
          "# HELP %s_batch_size Messages per committed batch.\n"
          "# TYPE %s_batch_size histogram\n",
          prefix, prefix);
  uint64_t scum = 0;
  for (size_t b = 0; b < N_SIZE; b++) {
    scum += st->size_bucket[b];
    tprintf(&t, "%s_batch_size_bucket{le=\"%g\"} %llu\n", prefix,
            k_size_buckets[b], (unsigned long long)scum);
  }
  tprintf(&t,
          "%s_batch_size_bucket{le=\"+Inf\"} %llu\n"
          "%s_batch_size_sum %llu\n%s_batch_size_count %llu\n",
          prefix, (unsigned long long)st->batches, prefix,
          (unsigned long long)st->batch_size_sum, prefix,
          (unsigned long long)st->batches);
  tprintf(&t,
          "# HELP %s_batch_duration_seconds Time from a batch's first message "
          "to its commit.\n# TYPE %s_batch_duration_seconds histogram\n",
          prefix, prefix);
  uint64_t cum = 0;
  for (size_t b = 0; b < N_DUR; b++) {
    cum += st->dur_bucket[b];
    tprintf(&t, "%s_batch_duration_seconds_bucket{le=\"%g\"} %llu\n", prefix,
            k_dur_buckets[b], (unsigned long long)cum);
  }
  tprintf(&t,
          "%s_batch_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
          "%s_batch_duration_seconds_sum %.6f\n"
          "%s_batch_duration_seconds_count %llu\n",
          prefix, (unsigned long long)st->batches, prefix, st->dur_sum, prefix,
          (unsigned long long)st->batches);
  tprintf(&t,
          "# HELP %s_last_applied_offset Last offset in a committed batch, "
          "per partition.\n# TYPE %s_last_applied_offset gauge\n",
          prefix, prefix);
  for (size_t i = 0; i < st->n_parts; i++) {
    tprintf(&t, "%s_last_applied_offset{topic=\"", prefix);
    tlabel(&t, st->parts[i].topic);
    tprintf(&t, "\",partition=\"%d\"} %lld\n", (int)st->parts[i].partition,
            (long long)st->parts[i].last_offset);
  }
  tprintf(&t,
          "# HELP %s_consumer_lag Messages behind the high watermark (last "
          "stable offset), per assigned partition.\n"
          "# TYPE %s_consumer_lag gauge\n",
          prefix, prefix);
  for (size_t i = 0; i < st->n_parts; i++) {
    if (st->parts[i].lag < 0)
      continue;
    tprintf(&t, "%s_consumer_lag{topic=\"", prefix);
    tlabel(&t, st->parts[i].topic);
    tprintf(&t, "\",partition=\"%d\"} %lld\n", (int)st->parts[i].partition,
            (long long)st->parts[i].lag);
  }
  gauge(&t, prefix, "pg_connected", "1 when PostgreSQL is connected.",
        st->pg_connected);
  gauge(&t, prefix, "assigned", "1 when the consumer holds an assignment.",
        st->assigned);
  pthread_mutex_unlock(&st->mu);
  if (t.failed) {
    free(t.buf);
    return NULL;
  }
  if (!t.buf) /* cannot happen: something was always written */
    return calloc(1, 1);
  return t.buf;
}

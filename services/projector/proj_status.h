/* proj_status: what the projector's worker thread tells the HTTP thread.
 *
 * The worker (consume -> apply) updates it after every batch and on
 * connection and assignment changes; the loop thread reads it for /readyz
 * and /metrics. Every function takes the one mutex inside, so all of them
 * are safe from any thread. The stop flag is separate (an atomic in
 * proj_worker); this holds only observations. */
#ifndef PROJ_STATUS_H
#define PROJ_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proj_batch.h"

typedef struct proj_status proj_status_t;

/* Returns 0 or SF_ENOMEM. */
int proj_status_new(proj_status_t **out);
void proj_status_destroy(proj_status_t *st);

void proj_status_set_pg(proj_status_t *st, bool connected);
/* assigned: the consumer holds an assignment (set by the assign callback,
 * cleared on revoke). */
void proj_status_set_assigned(proj_status_t *st, bool assigned);

/* Records a committed batch: its plan (offsets and verdict counts are
 * copied) and how long it took from first message to commit. Returns 0 or
 * SF_ENOMEM (the per-partition gauges then miss the new partitions; the
 * counters are still updated). */
int proj_status_batch_committed(proj_status_t *st, const proj_plan_t *plan,
                                double seconds);
/* Counts a failed attempt to apply a batch (it will be retried). */
void proj_status_batch_failed(proj_status_t *st);

/* Adds n changes rows written by a committed batch. */
void proj_status_add_changes(proj_status_t *st, size_t n);
/* Adds n dead letters acknowledged by the broker. */
void proj_status_add_dead_letters(proj_status_t *st, size_t n);
/* Counts a failed attempt to deliver a batch's dead letters. */
void proj_status_dlq_failed(proj_status_t *st);
/* Records a retention run: rows deleted and the resulting pruned_through. */
void proj_status_pruned(proj_status_t *st, int64_t deleted,
                        int64_t pruned_through);
/* Sets the consumer lag of topic x partition (high watermark minus the
 * next offset to apply); lag < 0 means unknown, and unknown partitions are
 * left out of /metrics. Returns 0 or SF_ENOMEM. */
int proj_status_set_lag(proj_status_t *st, const char *topic,
                        int32_t partition, int64_t lag);
/* Marks every partition's lag unknown (after a revoke). */
void proj_status_clear_lag(proj_status_t *st);

/* True when PostgreSQL is connected and the consumer has its assignment;
 * otherwise false and *missing (if not NULL) names what is missing (static
 * string). */
bool proj_status_ready(proj_status_t *st, const char **missing);

/* Events applied so far (decoded events in committed batches, whatever
 * their verdict except poison and invalid). */
uint64_t proj_status_events_applied(proj_status_t *st);

/* Prometheus text of the projector's own metrics, every name prefixed with
 * prefix (e.g. "stockflow_projector"). Returns a malloc'd string the caller
 * frees, or NULL on out of memory. */
char *proj_status_metrics(proj_status_t *st, const char *prefix);

#endif

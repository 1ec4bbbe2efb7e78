/* progress: done/total, rate and ETA of a long operation (a replay of the
 * log, a rebuild), and its one-line rendering for logs.
 *
 * A value type the caller embeds. Pure: it has no clock of its own (the
 * caller passes monotonic milliseconds), so tests drive time. The rate is an
 * exponentially weighted moving average (weight SF_PROGRESS_ALPHA) of the
 * rates between samples at least SF_PROGRESS_SAMPLE_MS apart; the first
 * estimate is the average since the start. So the ETA follows a change of
 * pace within a few samples without jumping on every batch, and a stall
 * makes it grow. Not thread-safe: one writer; copy it to share it. */
#ifndef SF_PROGRESS_H
#define SF_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#define SF_PROGRESS_SAMPLE_MS 500
#define SF_PROGRESS_ALPHA 0.3

typedef struct sf_progress {
  uint64_t done, total;
  int64_t start_ms;  /* when sf_progress_start ran */
  int64_t sample_ms; /* the last sample of the rate */
  uint64_t sample_done;
  double rate; /* units per second; 0 while unknown */
} sf_progress_t;

/* Starts at 0 of total, at now_ms. */
void sf_progress_start(sf_progress_t *p, uint64_t total, int64_t now_ms);

/* Records done of total at now_ms. A total below done is raised to done
 * (the work grew, or the total was an estimate); done never moves back
 * (a smaller value is ignored). */
void sf_progress_update(sf_progress_t *p, uint64_t done, uint64_t total,
                        int64_t now_ms);

/* done / total in [0, 1]; 1 when total is 0 (nothing to do). */
double sf_progress_fraction(const sf_progress_t *p);

/* Seconds from the start to now_ms (0 if now_ms is earlier). */
double sf_progress_elapsed_s(const sf_progress_t *p, int64_t now_ms);

/* Seconds left at the current rate: 0 when done, negative when unknown
 * (no rate measured yet, or a rate of 0). */
double sf_progress_eta_s(const sf_progress_t *p);

/* Writes a duration as "850ms" (below 1 s), "12s", "3m05s" or "2h04m", and
 * "?" for a negative one, NUL-terminated in buf (cap > 0). Returns what
 * snprintf returned. */
int sf_progress_duration(double seconds, char *buf, size_t cap);

/* Writes "<done>/<total> <unit> (24.7 %), 9900/s, ETA 4s" (", ETA ?" while
 * the rate is unknown; no ETA once done) in buf (cap > 0). unit is
 * borrowed for the call. Returns what snprintf returned. */
int sf_progress_format(const sf_progress_t *p, const char *unit, char *buf,
                       size_t cap);

#endif

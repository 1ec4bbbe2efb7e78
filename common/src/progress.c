/* progress: rate and ETA of a long operation (see sf/progress.h). */
#include "sf/progress.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void sf_progress_start(sf_progress_t *p, uint64_t total, int64_t now_ms) {
  memset(p, 0, sizeof *p);
  p->total = total;
  p->start_ms = p->sample_ms = now_ms;
}

void sf_progress_update(sf_progress_t *p, uint64_t done, uint64_t total,
                        int64_t now_ms) {
  if (done > p->done)
    p->done = done;
  p->total = total > p->done ? total : p->done;
  int64_t dt = now_ms - p->sample_ms;
  if (dt < SF_PROGRESS_SAMPLE_MS)
    return;
  double inst = (double)(p->done - p->sample_done) * 1000.0 / (double)dt;
  /* The first sample spans the start: it is the average so far. */
  p->rate = p->sample_ms == p->start_ms
                ? inst
                : (1.0 - SF_PROGRESS_ALPHA) * p->rate + SF_PROGRESS_ALPHA * inst;
  p->sample_ms = now_ms;
  p->sample_done = p->done;
}

double sf_progress_fraction(const sf_progress_t *p) {
  if (p->total == 0 || p->done >= p->total)
    return 1.0;
  return (double)p->done / (double)p->total;
}

double sf_progress_elapsed_s(const sf_progress_t *p, int64_t now_ms) {
  return now_ms > p->start_ms ? (double)(now_ms - p->start_ms) / 1000.0 : 0.0;
}

double sf_progress_eta_s(const sf_progress_t *p) {
  if (p->done >= p->total)
    return 0.0;
  if (!(p->rate > 0.0))
    return -1.0;
  return (double)(p->total - p->done) / p->rate;
}

int sf_progress_duration(double seconds, char *buf, size_t cap) {
  if (seconds < 0.0 || isnan(seconds))
    return snprintf(buf, cap, "?");
  if (seconds < 1.0)
    return snprintf(buf, cap, "%dms", (int)(seconds * 1000.0));
  if (seconds > 359999.0 * 3600.0) /* beyond any sensible ETA */
    return snprintf(buf, cap, ">99999h");
  uint64_t s = (uint64_t)(seconds + 0.5);
  if (s < 60)
    return snprintf(buf, cap, "%" PRIu64 "s", s);
  if (s < 3600)
    return snprintf(buf, cap, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  return snprintf(buf, cap, "%" PRIu64 "h%02" PRIu64 "m", s / 3600,
                  (s % 3600) / 60);
}

int sf_progress_format(const sf_progress_t *p, const char *unit, char *buf,
                       size_t cap) {
  char eta[32] = "";
  if (p->done < p->total) {
    memcpy(eta, ", ETA ", 7);
    sf_progress_duration(sf_progress_eta_s(p), eta + 6, sizeof eta - 6);
  }
  /* Rounded down: 100.0 % only once it is done. */
  double pct = floor(sf_progress_fraction(p) * 1000.0) / 10.0;
  return snprintf(buf, cap, "%" PRIu64 "/%" PRIu64 " %s (%.1f %%), %.0f/s%s",
                  p->done, p->total, unit, pct, p->rate, eta);
}

/* proj_intake: poll, decode and plan one batch (see proj_intake.h). */
#include "proj_intake.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sf/err.h"

#define MOD "projector"
#define REGISTRY_TIMEOUT_MS 5000
#define LEARN_BACKOFF_MIN_MS 100
#define LEARN_BACKOFF_MAX_MS 5000

int64_t proj_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int proj_intake_init(proj_intake_t *b, size_t cap, const char *registry_url) {
  memset(b, 0, sizeof *b);
  proj_plan_init(&b->plan);
  if (cap < 1)
    return SF_EINVAL;
  b->msgs = calloc(cap, sizeof *b->msgs);
  b->events = calloc(cap, sizeof *b->events);
  b->inputs = calloc(cap, sizeof *b->inputs);
  b->decode_rc = calloc(cap, sizeof *b->decode_rc);
  int rc = SF_ENOMEM;
  if (!b->msgs || !b->events || !b->inputs || !b->decode_rc)
    goto fail;
  rc = sf_event_codec_new(&b->codec);
  if (rc)
    goto fail;
  if (registry_url && registry_url[0] &&
      (rc = sf_registry_new(&b->registry, registry_url, REGISTRY_TIMEOUT_MS)))
    goto fail_registry;
  b->cap = cap;
  return 0;

fail_registry:
  sf_event_codec_destroy(b->codec);
fail:
  free(b->decode_rc);
  free(b->inputs);
  free(b->events);
  free(b->msgs);
  memset(b, 0, sizeof *b);
  proj_plan_init(&b->plan);
  return rc;
}

void proj_intake_release(proj_intake_t *b) {
  for (size_t i = 0; i < b->n; i++) {
    sf_event_clear(&b->events[i]);
    sf_kafka_msg_destroy(&b->msgs[i]);
  }
  b->n = 0;
}

void proj_intake_free(proj_intake_t *b) {
  proj_intake_release(b);
  proj_plan_free(&b->plan);
  sf_registry_destroy(b->registry);
  sf_event_codec_destroy(b->codec);
  free(b->decode_rc);
  free(b->inputs);
  free(b->events);
  free(b->msgs);
  memset(b, 0, sizeof *b);
}

int proj_intake_fill(proj_intake_t *b, sf_kafka_consumer_t *c, int wait_ms,
                     int idle_ms, bool (*stop)(void *ud), void *ud,
                     int64_t *t0, sf_log_t *log) {
  int64_t deadline = 0;
  while (b->n < b->cap && !stop(ud)) {
    int timeout = idle_ms;
    if (b->n > 0) {
      int64_t left = deadline - proj_now_ms();
      if (left <= 0)
        break;
      timeout = (int)left;
    }
    int k = sf_kafka_consumer_poll(c, b->msgs + b->n, b->cap - b->n, timeout);
    if (k < 0) {
      if (k == SF_EKAFKA_FATAL)
        return k;
      SF_WARN(log, MOD, "poll: %s", sf_strerror(k));
      if (b->n == 0)
        continue;
      break;
    }
    if (k == 0 && b->n == 0)
      break; /* idle: let the caller do its periodic work */
    if (k > 0 && b->n == 0) {
      *t0 = proj_now_ms();
      deadline = *t0 + wait_ms;
    }
    b->n += (size_t)k;
  }
  return 0;
}

/* Sleeps ms in short slices; false when stop(ud) came first. */
static bool nap(int ms, bool (*stop)(void *ud), void *ud) {
  int64_t until = proj_now_ms() + ms;
  while (!stop(ud)) {
    int64_t left = until - proj_now_ms();
    if (left <= 0)
      return true;
    struct timespec ts = {0, (long)(left > 50 ? 50 : left) * 1000000L};
    nanosleep(&ts, NULL);
  }
  return false;
}

int proj_intake_learn(proj_intake_t *b, bool (*stop)(void *ud), void *ud,
                      sf_log_t *log) {
  int backoff = LEARN_BACKOFF_MIN_MS;
  for (size_t i = 0; b->registry && i < b->n;) {
    const sf_kafka_msg_t *m = &b->msgs[i];
    int rc = sf_registry_learn(b->registry, b->codec, m->value, m->value_len);
    if (rc == 0 || rc == SF_ESCHEMA || rc == SF_ECONFLICT) {
      if (rc)
        SF_ERROR(log, MOD, "%s[%d]@%" PRId64 ": %s; it will be dead-lettered",
                 m->topic, (int)m->partition, m->offset,
                 sf_registry_error(b->registry));
      i++;
      backoff = LEARN_BACKOFF_MIN_MS;
      continue;
    }
    SF_WARN(log, MOD,
            "%s[%d]@%" PRId64 ": schema registry %s: %s (%s); retrying in "
            "%d ms",
            m->topic, (int)m->partition, m->offset,
            sf_registry_url(b->registry), sf_registry_error(b->registry),
            sf_err_name(rc), backoff);
    if (!nap(backoff, stop, ud))
      return SF_ECANCELED;
    backoff = backoff * 2 > LEARN_BACKOFF_MAX_MS ? LEARN_BACKOFF_MAX_MS
                                                 : backoff * 2;
  }
  return 0;
}

int proj_intake_plan(proj_intake_t *b, const char *group, sf_log_t *log) {
  for (size_t i = 0; i < b->n; i++) {
    const sf_kafka_msg_t *m = &b->msgs[i];
    sf_event_t *e = &b->events[i];
    proj_input_t *in = &b->inputs[i];
    *in = (proj_input_t){m->topic, m->partition, m->offset, NULL};
    int rc = SF_EPARSE;
    if (m->value && m->value_len > 0)
      rc = sf_event_decode(b->codec, m->value, m->value_len, e);
    else
      sf_event_init(e);
    b->decode_rc[i] = rc;
    if (rc == 0)
      in->ev = e;
    else
      SF_ERROR(log, MOD,
               "poison message %s[%d]@%" PRId64 " (%zu bytes): %s, skipped",
               m->topic, (int)m->partition, m->offset, m->value_len,
               sf_err_name(rc));
  }
  int rc = proj_plan_build(&b->plan, group, b->inputs, b->n);
  if (rc)
    return rc;
  for (size_t i = 0; i < b->n; i++) {
    const proj_input_t *in = &b->inputs[i];
    if (b->plan.verdicts[i] == PROJ_INVALID)
      SF_ERROR(log, MOD, "invalid event %s[%d]@%" PRId64 " (%s %s): %s, skipped",
               in->topic, (int)in->partition, in->offset,
               sf_event_type_name(in->ev->type), in->ev->event_id,
               b->plan.why[i]);
    else if (b->plan.verdicts[i] == PROJ_SKIPPED)
      SF_DEBUG(log, MOD, "event %s[%d]@%" PRId64 " of type %s not handled",
               in->topic, (int)in->partition, in->offset,
               sf_event_type_name(in->ev->type));
    else if (b->plan.verdicts[i] == PROJ_DUPLICATE)
      SF_DEBUG(log, MOD, "duplicate event %s[%d]@%" PRId64 " (%s)", in->topic,
               (int)in->partition, in->offset, in->ev->event_id);
  }
  return 0;
}

bool proj_intake_is_dead(const proj_intake_t *b, size_t i) {
  return i < b->n && (b->plan.verdicts[i] == PROJ_POISON ||
                      b->plan.verdicts[i] == PROJ_INVALID);
}

const char *proj_intake_error(const proj_intake_t *b, size_t i, char *buf,
                              size_t cap) {
  if (b->plan.verdicts[i] == PROJ_INVALID)
    snprintf(buf, cap, "%s: %s", sf_err_name(SF_EINVAL),
             b->plan.why[i] ? b->plan.why[i] : "unstorable event");
  else
    snprintf(buf, cap, "%s: %s", sf_err_name(b->decode_rc[i]),
             sf_strerror(b->decode_rc[i]));
  return buf;
}

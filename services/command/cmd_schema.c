/* cmd_schema: the event wire format and the schema registration (see
 * cmd_schema.h). */
#include "cmd_schema.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/registry.h"

#define MOD "command"
#define REGISTRY_TIMEOUT_MS 5000
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 10000

enum { TOPIC_CATALOG = 0,
       TOPIC_STOCK,
       N_TOPICS };

struct cmd_schema {
  uv_loop_t *loop;
  cmd_schema_opts_t o;
  sf_event_format_t format;
  sf_event_codec_t *codec; /* borrowed */
  sf_log_t *log;
  uv_timer_t retry;
  uv_work_t work;
  bool in_flight; /* work queued, its after-callback not yet run */
  bool closing;
  bool timer_closed;
  bool ready;
  uint64_t retry_ms;
  unsigned attempts;
  /* written by the worker thread, read after it (uv orders the two) */
  char *schema_json; /* a copy: the worker thread never reads the codec */
  uint32_t ids[N_TOPICS];
  int work_rc;
  char work_error[256];
  char reason[384];
};

int cmd_schema_new(cmd_schema_t **out, uv_loop_t *loop,
                   const cmd_schema_opts_t *o, sf_event_codec_t *codec,
                   sf_log_t *log) {
  *out = NULL;
  sf_event_format_t f;
  if (sf_event_format_parse(o->format, &f)) {
    SF_ERROR(log, MOD, "unknown event format \"%s\" (single-object or confluent)",
             o->format ? o->format : "");
    return SF_ECONFIG;
  }
  if (f == SF_EVENT_FORMAT_CONFLUENT && (!o->registry_url || !o->registry_url[0])) {
    SF_ERROR(log, MOD, "event format confluent needs --schema-registry-url");
    return SF_ECONFIG;
  }
  cmd_schema_t *s = calloc(1, sizeof(*s));
  if (!s)
    return SF_ENOMEM;
  s->loop = loop;
  s->o = *o;
  s->format = f;
  s->codec = codec;
  s->log = log;
  if (!(s->schema_json = strdup(sf_event_codec_schema_json(codec)))) {
    free(s);
    return SF_ENOMEM;
  }
  s->ready = f == SF_EVENT_FORMAT_SINGLE_OBJECT;
  s->retry_ms = RETRY_MIN_MS;
  uv_timer_init(loop, &s->retry);
  s->retry.data = s;
  s->work.data = s;
  snprintf(s->reason, sizeof(s->reason),
           "registering the event schema with the schema registry");
  *out = s;
  return 0;
}

/* Worker thread: registers the schema for both subjects. Touches only the
 * fields it writes and the immutable schema text. */
static void register_work_cb(uv_work_t *w) {
  cmd_schema_t *s = w->data;
  sf_registry_t *reg = NULL;
  s->work_error[0] = '\0';
  int rc = sf_registry_new(&reg, s->o.registry_url, REGISTRY_TIMEOUT_MS);
  const char *topics[N_TOPICS] = {s->o.topic_catalog, s->o.topic_stock};
  for (int t = 0; !rc && t < N_TOPICS; t++) {
    char subject[512];
    snprintf(subject, sizeof(subject), "%s-value", topics[t]);
    rc = sf_registry_register(reg, subject, s->schema_json, &s->ids[t]);
    if (rc)
      snprintf(s->work_error, sizeof(s->work_error), "%s",
               sf_registry_error(reg));
  }
  sf_registry_destroy(reg);
  s->work_rc = rc;
}

static void free_if_done(cmd_schema_t *s) {
  if (s->closing && s->timer_closed && !s->in_flight) {
    free(s->schema_json);
    free(s);
  }
}

static void timer_closed_cb(uv_handle_t *h) {
  cmd_schema_t *s = h->data;
  s->timer_closed = true;
  free_if_done(s);
}

static void retry_cb(uv_timer_t *t);

static void register_done_cb(uv_work_t *w, int status) {
  cmd_schema_t *s = w->data;
  s->in_flight = false;
  if (s->closing || status == UV_ECANCELED) {
    free_if_done(s);
    return;
  }
  int rc = s->work_rc;
  for (int t = 0; !rc && t < N_TOPICS; t++)
    rc = sf_event_codec_add_schema_id(s->codec, s->ids[t], s->schema_json);
  if (rc == 0) {
    s->ready = true;
    s->reason[0] = '\0';
    SF_INFO(s->log, MOD,
            "event schema registered at %s: subject %s-value id %" PRIu32
            ", subject %s-value id %" PRIu32
            "; events are written in the confluent format",
            s->o.registry_url, s->o.topic_catalog, s->ids[TOPIC_CATALOG],
            s->o.topic_stock, s->ids[TOPIC_STOCK]);
    return;
  }
  s->attempts++;
  snprintf(s->reason, sizeof(s->reason),
           "cannot register the event schema with the schema registry "
           "(attempt %u: %s: %.200s); retrying",
           s->attempts, sf_err_name(rc),
           s->work_error[0] ? s->work_error : sf_strerror(rc));
  SF_WARN(s->log, MOD, "%s in %" PRIu64 " ms", s->reason, s->retry_ms);
  uv_timer_start(&s->retry, retry_cb, s->retry_ms, 0);
  s->retry_ms = s->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->retry_ms * 2;
}

static int queue(cmd_schema_t *s) {
  int rc = uv_queue_work(s->loop, &s->work, register_work_cb, register_done_cb);
  if (rc) {
    SF_ERROR(s->log, MOD, "cannot queue the schema registration: %s",
             uv_strerror(rc));
    return SF_ENOMEM;
  }
  s->in_flight = true;
  return 0;
}

static void retry_cb(uv_timer_t *t) {
  cmd_schema_t *s = t->data;
  if (!s->closing && queue(s))
    uv_timer_start(&s->retry, retry_cb, s->retry_ms, 0);
}

int cmd_schema_start(cmd_schema_t *s) {
  if (s->ready)
    return 0;
  SF_INFO(s->log, MOD, "registering the event schema at %s", s->o.registry_url);
  return queue(s);
}

bool cmd_schema_ready(const cmd_schema_t *s) { return s && s->ready; }

const char *cmd_schema_not_ready_reason(const cmd_schema_t *s) {
  return !s ? "the command service is stopping" : s->ready ? ""
                                                           : s->reason;
}

sf_event_format_t cmd_schema_format(const cmd_schema_t *s) { return s->format; }

int cmd_schema_encode(cmd_schema_t *s, const sf_event_t *e, const char *topic,
                      uint8_t **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (!s)
    return SF_EUNAVAILABLE;
  if (s->format == SF_EVENT_FORMAT_SINGLE_OBJECT)
    return sf_event_encode(s->codec, e, out, out_len);
  if (!s->ready)
    return SF_EUNAVAILABLE;
  bool catalog = topic == s->o.topic_catalog ||
                 (topic && strcmp(topic, s->o.topic_catalog) == 0);
  return sf_event_encode_confluent(
      s->codec, e, s->ids[catalog ? TOPIC_CATALOG : TOPIC_STOCK], out,
      out_len);
}

void cmd_schema_close(cmd_schema_t *s) {
  if (!s)
    return;
  s->closing = true;
  if (s->in_flight)
    uv_cancel((uv_req_t *)&s->work); /* fails harmlessly when running */
  uv_close((uv_handle_t *)&s->retry, timer_closed_cb);
}

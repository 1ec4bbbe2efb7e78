/* ctl_tail: the change stream (see ctl_tail.h). */
#include "ctl_tail.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_signal.h"
#include "ctl_sse.h"
#include "sf/err.h"

#define IDLE_TIMEOUT_S 45 /* 3 heartbeats of the query service's default */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 10000

typedef struct tail {
  const ctl_args_t *a;
  FILE *out, *err;
  ctl_sse_t sse;
  long long seen;
  bool final; /* stop for good with rc */
  int rc;
  bool broken; /* the stream could not be parsed */
} tail_t;

static const char *str(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "?";
}

static const char *num(const json_t *o, const char *k, char *buf,
                       size_t cap) {
  const json_t *v = json_object_get(o, k);
  if (!json_is_integer(v))
    return "?";
  snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  return buf;
}

int ctl_tail_format(const json_t *c, char *buf, size_t cap) {
  char b[5][32];
  return snprintf(buf, cap,
                  "%s %s %s store=%s product=%s on_hand=%s reserved=%s "
                  "available=%s version=%s",
                  num(c, "id", b[0], 32), str(c, "occurred_at"),
                  str(c, "cause"), str(c, "store_id"), str(c, "product_id"),
                  num(c, "on_hand", b[1], 32), num(c, "reserved", b[2], 32),
                  num(c, "available", b[3], 32), num(c, "version", b[4], 32));
}

char *ctl_tail_path(const ctl_args_t *a, ctl_http_t *h) {
  char *store = a->store ? ctl_http_escape(h, a->store) : NULL;
  char *product = a->product ? ctl_http_escape(h, a->product) : NULL;
  char *path = NULL;
  if ((!a->store || store) && (!a->product || product)) {
    size_t n = 64 + (store ? strlen(store) : 0) +
               (product ? strlen(product) : 0);
    path = malloc(n);
    if (path) {
      size_t k = (size_t)snprintf(path, n, "/v1/changes");
      char sep = '?';
      if (store) {
        k += (size_t)snprintf(path + k, n - k, "%cstore_id=%s", sep, store);
        sep = '&';
      }
      if (product)
        snprintf(path + k, n - k, "%cproduct_id=%s", sep, product);
    }
  }
  free(store);
  free(product);
  return path;
}

static bool event_cb(void *ud, const char *id, const char *type,
                     const char *data) {
  tail_t *t = ud;
  (void)id; /* kept by the parser as the stream's last event id */
  if (strcmp(type, "change") == 0) {
    if (t->a->json) {
      fprintf(t->out, "%s\n", data);
    } else {
      json_t *c = json_loads(data, 0, NULL);
      char line[512];
      if (c) {
        ctl_tail_format(c, line, sizeof line);
        fprintf(t->out, "%s\n", line);
      } else {
        fprintf(t->err, "stockflowctl: tail: a change that is not JSON: "
                        "%.200s\n",
                data);
      }
      json_decref(c);
    }
    fflush(t->out);
    if (t->a->count && ++t->seen >= t->a->count) {
      t->final = true;
      t->rc = CTL_EXIT_OK;
      return false;
    }
  } else if (strcmp(type, "overflow") == 0) {
    fprintf(t->err, "stockflowctl: tail: the service dropped the stream "
                    "(this reader was too slow); resuming\n");
  } else if (strcmp(type, "expired") == 0) {
    fprintf(t->err, "stockflowctl: tail: the changes after %s were pruned "
                    "by retention; start again without --after\n",
            t->sse.last_id[0] ? t->sse.last_id : "the start");
    t->final = true;
    t->rc = CTL_EXIT_REFUSED;
    return false;
  }
  return true;
}

static bool chunk_cb(void *ud, const char *data, size_t len) {
  tail_t *t = ud;
  int rc = ctl_sse_feed(&t->sse, data, len, event_cb, t);
  if (rc < 0) {
    fprintf(t->err, "stockflowctl: tail: unreadable stream: %s\n",
            sf_strerror(rc));
    t->broken = true;
    return false;
  }
  return rc == 0;
}

static bool cancel_cb(void *ud) {
  (void)ud;
  return ctl_signal_pending();
}

int ctl_tail_run(const ctl_args_t *a, ctl_http_t *h, const char *token,
                 FILE *out, FILE *err) {
  if (ctl_signal_block() != 0) {
    fputs("stockflowctl: tail: cannot block SIGINT\n", err);
    return CTL_EXIT_FAIL;
  }
  char *path = ctl_tail_path(a, h);
  if (!path) {
    fputs("stockflowctl: out of memory\n", err);
    return CTL_EXIT_FAIL;
  }
  tail_t t = {.a = a, .out = out, .err = err};
  ctl_sse_init(&t.sse);
  if (a->has_after)
    snprintf(t.sse.last_id, sizeof t.sse.last_id, "%" PRIu64, a->after);
  int backoff = BACKOFF_MIN_MS, rc = CTL_EXIT_OK;
  for (;;) {
    ctl_sse_reset(&t.sse);
    ctl_resp_t resp;
    int hr = ctl_http_stream(h, a->query_url, path, token,
                             t.sse.last_id[0] ? t.sse.last_id : NULL,
                             IDLE_TIMEOUT_S, chunk_cb, cancel_cb, &t, &resp);
    if (ctl_signal_pending()) {
      ctl_signal_wait(0);
      ctl_resp_free(&resp);
      rc = CTL_EXIT_OK;
      break;
    }
    if (t.final || t.broken) {
      ctl_resp_free(&resp);
      rc = t.broken ? CTL_EXIT_FAIL : t.rc;
      break;
    }
    char why[300];
    if (resp.status == 200) {
      backoff = BACKOFF_MIN_MS; /* it worked: a quick retry */
      snprintf(why, sizeof why, "%s",
               hr ? resp.error : "the service ended the stream");
    } else if (resp.status == 503 || resp.status == 0) {
      snprintf(why, sizeof why, "%s",
               resp.status ? "503 unavailable" : resp.error);
    } else {
      rc = ctl_http_report(&resp, "tail", err);
      if (resp.status == 410)
        fputs("stockflowctl: tail: start again without --after (a fresh "
              "stream)\n",
              err);
      ctl_resp_free(&resp);
      break;
    }
    ctl_resp_free(&resp);
    fprintf(err, "stockflowctl: tail: %s; resuming after change %s in %.0f "
                 "s\n",
            why, t.sse.last_id[0] ? t.sse.last_id : "(none yet: from now)",
            backoff / 1000.0);
    if (ctl_signal_wait(backoff)) {
      rc = CTL_EXIT_OK;
      break;
    }
    backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
  }
  ctl_sse_free(&t.sse);
  free(path);
  return rc;
}

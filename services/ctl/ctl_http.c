/* ctl_http: requests and streams over libcurl (see ctl_http.h). */
#include "ctl_http.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl_config.h"
#include "sf/err.h"

#define BODY_MAX (16u << 20) /* an answer larger than this is refused */
#define CONNECT_TIMEOUT_MS 10000L

struct ctl_http {
  CURL *curl;
  long timeout_ms;
  char errbuf[CURL_ERROR_SIZE];
};

/* What the callbacks of one transfer share. */
typedef struct xfer {
  ctl_http_t *h;
  ctl_resp_t *resp;
  ctl_http_chunk_cb chunk; /* NULL: collect every body */
  ctl_http_cancel_cb cancel;
  void *ud;
  bool stopped; /* the chunk callback or cancel ended it */
  bool too_big;
} xfer_t;

int ctl_http_new(ctl_http_t **out, long timeout_ms) {
  ctl_http_t *h = calloc(1, sizeof *h);
  if (!h)
    return SF_ENOMEM;
  h->curl = curl_easy_init();
  if (!h->curl) {
    free(h);
    return SF_ENOMEM;
  }
  h->timeout_ms = timeout_ms;
  *out = h;
  return 0;
}

void ctl_http_destroy(ctl_http_t *h) {
  if (!h)
    return;
  curl_easy_cleanup(h->curl);
  free(h);
}

char *ctl_http_escape(ctl_http_t *h, const char *text) {
  char *e = curl_easy_escape(h->curl, text, 0);
  char *copy = e ? strdup(e) : NULL;
  curl_free(e);
  return copy;
}

void ctl_resp_free(ctl_resp_t *resp) {
  free(resp->body);
  memset(resp, 0, sizeof *resp);
}

static bool append(ctl_resp_t *r, const char *data, size_t n) {
  if (r->len + n > BODY_MAX)
    return false;
  char *nb = realloc(r->body, r->len + n + 1);
  if (!nb)
    return false;
  memcpy(nb + r->len, data, n);
  r->len += n;
  nb[r->len] = '\0';
  r->body = nb;
  return true;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud) {
  xfer_t *x = ud;
  size_t n = size * nmemb;
  long status = 0;
  curl_easy_getinfo(x->h->curl, CURLINFO_RESPONSE_CODE, &status);
  x->resp->status = status;
  if (x->chunk && status >= 200 && status < 300) {
    if (x->cancel && x->cancel(x->ud)) {
      x->stopped = true;
      return 0;
    }
    if (!x->chunk(x->ud, data, n)) {
      x->stopped = true;
      return 0;
    }
    return n;
  }
  if (!append(x->resp, data, n)) {
    x->too_big = true;
    return 0;
  }
  return n;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ud) {
  xfer_t *x = ud;
  size_t n = size * nmemb;
  static const char k_ct[] = "content-type:";
  if (n > sizeof k_ct - 1 && strncasecmp(data, k_ct, sizeof k_ct - 1) == 0) {
    const char *v = data + sizeof k_ct - 1;
    size_t vn = n - (sizeof k_ct - 1);
    while (vn && (*v == ' ' || *v == '\t'))
      v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n' || v[vn - 1] == ' '))
      vn--;
    snprintf(x->resp->content_type, sizeof x->resp->content_type, "%.*s",
             (int)vn, v);
  }
  return n;
}

static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  xfer_t *x = ud;
  if (x->cancel && x->cancel(x->ud)) {
    x->stopped = true;
    return 1;
  }
  return 0;
}

/* Runs one transfer with the options common to both kinds; headers is
 * consumed. */
static int perform(ctl_http_t *h, const char *base, const char *path,
                   struct curl_slist *headers, xfer_t *x) {
  CURL *c = h->curl;
  memset(x->resp, 0, sizeof *x->resp);
  size_t ul = strlen(base), pl = strlen(path);
  char *url = malloc(ul + pl + 1);
  if (!url) {
    curl_slist_free_all(headers);
    snprintf(x->resp->error, sizeof x->resp->error, "out of memory");
    return CTL_EXIT_FAIL;
  }
  while (ul && base[ul - 1] == '/') /* "http://host:8081/" + "/v1/..." */
    ul--;
  memcpy(url, base, ul);
  memcpy(url + ul, path, pl + 1);
  h->errbuf[0] = '\0';
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "stockflowctl/" SF_VERSION);
  if (x->cancel) {
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  }
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  x->resp->status = status;
  curl_slist_free_all(headers);
  free(url);
  curl_easy_reset(c); /* keeps the connection cache */
  if (rc == CURLE_OK || x->stopped)
    return 0;
  if (x->too_big) {
    snprintf(x->resp->error, sizeof x->resp->error,
             "the answer is larger than %u bytes or memory ran out",
             BODY_MAX);
    return CTL_EXIT_FAIL;
  }
  snprintf(x->resp->error, sizeof x->resp->error, "%s",
           h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
  return CTL_EXIT_UNAVAILABLE;
}

/* Adds "Name: value" to the list; false when out of memory. */
static bool add_header(struct curl_slist **l, const char *name,
                       const char *value) {
  size_t n = strlen(name) + strlen(value) + 3;
  char *line = malloc(n);
  if (!line)
    return false;
  snprintf(line, n, "%s: %s", name, value);
  struct curl_slist *nl = curl_slist_append(*l, line);
  free(line);
  if (!nl)
    return false;
  *l = nl;
  return true;
}

static bool auth_headers(struct curl_slist **l, const char *token,
                         const char *idem_key) {
  bool ok = true;
  if (token) {
    size_t n = strlen(token) + 8;
    char *v = malloc(n);
    ok = v != NULL;
    if (v) {
      snprintf(v, n, "Bearer %s", token);
      ok = add_header(l, "Authorization", v);
      free(v);
    }
  }
  if (ok && idem_key)
    ok = add_header(l, "Idempotency-Key", idem_key);
  return ok;
}

int ctl_http_request(ctl_http_t *h, const char *method, const char *base,
                     const char *path, const char *token, const char *idem_key,
                     const char *json_body, ctl_resp_t *resp) {
  struct curl_slist *headers = NULL;
  bool ok = add_header(&headers, "Accept", "application/json") &&
            auth_headers(&headers, token, idem_key) &&
            (!json_body ||
             add_header(&headers, "Content-Type", "application/json"));
  if (!ok) {
    curl_slist_free_all(headers);
    memset(resp, 0, sizeof *resp);
    snprintf(resp->error, sizeof resp->error, "out of memory");
    return CTL_EXIT_FAIL;
  }
  CURL *c = h->curl;
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms);
  if (strcmp(method, "GET") != 0)
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (json_body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)strlen(json_body));
  } else if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
  }
  xfer_t x = {.h = h, .resp = resp};
  return perform(h, base, path, headers, &x);
}

int ctl_http_stream(ctl_http_t *h, const char *base, const char *path,
                    const char *token, const char *last_event_id,
                    long idle_timeout_s, ctl_http_chunk_cb chunk,
                    ctl_http_cancel_cb cancel, void *ud, ctl_resp_t *resp) {
  struct curl_slist *headers = NULL;
  bool ok = add_header(&headers, "Accept", "text/event-stream") &&
            auth_headers(&headers, token, NULL) &&
            (!last_event_id ||
             add_header(&headers, "Last-Event-ID", last_event_id));
  if (!ok) {
    curl_slist_free_all(headers);
    memset(resp, 0, sizeof *resp);
    snprintf(resp->error, sizeof resp->error, "out of memory");
    return CTL_EXIT_FAIL;
  }
  curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, idle_timeout_s);
  xfer_t x = {.h = h, .resp = resp, .chunk = chunk, .cancel = cancel, .ud = ud};
  return perform(h, base, path, headers, &x);
}

int ctl_http_exit_code(long status) {
  if (status >= 200 && status < 300)
    return CTL_EXIT_OK;
  if (status == 503 || status == 0)
    return CTL_EXIT_UNAVAILABLE;
  if (status >= 400 && status < 500)
    return CTL_EXIT_REFUSED;
  return CTL_EXIT_FAIL;
}

int ctl_http_report(const ctl_resp_t *resp, const char *what, FILE *err) {
  if (resp->status == 0) {
    fprintf(err, "stockflowctl: %s: no answer: %s\n", what,
            resp->error[0] ? resp->error : "unknown error");
    return ctl_http_exit_code(0);
  }
  json_t *p = resp->body ? json_loadb(resp->body, resp->len, 0, NULL) : NULL;
  const char *code = json_string_value(json_object_get(p, "code"));
  const char *detail = json_string_value(json_object_get(p, "detail"));
  if (code) {
    fprintf(err, "stockflowctl: %s: %ld %s: %s\n", what, resp->status, code,
            detail ? detail : "");
    if (resp->status == 401)
      fputs("stockflowctl: (log in with `stockflowctl login <username>`, or "
            "set STOCKFLOW_TOKEN)\n",
            err);
  } else {
    fprintf(err, "stockflowctl: %s: HTTP %ld%s%.200s\n", what, resp->status,
            resp->len ? ": " : "", resp->body ? resp->body : "");
  }
  json_decref(p);
  return ctl_http_exit_code(resp->status);
}

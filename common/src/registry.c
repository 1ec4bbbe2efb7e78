/* registry: the schema registry client (see sf/registry.h).
 *
 * One curl easy handle per client, reused so that the connection stays
 * open between calls. Answers are small (a schema is a few KiB): the body
 * is gathered into a buffer capped at MAX_BODY and parsed with jansson.
 * libcurl must have been set up by the process (curl_global_init, in
 * sf_service_run before any thread starts): curl_easy_init would otherwise
 * do it lazily, on whichever thread comes first, which libcurl documents
 * as unsafe before 7.84 and as "not recommended" even since. */
#include "sf/registry.h"
#include "sf/err.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY (1024 * 1024)
#define CONTENT_TYPE "application/vnd.schemaregistry.v1+json"

struct sf_registry {
  char *url;
  long timeout_ms;
  CURL *curl;
  char error[256];
};

/* The answer body, gathered by body_cb. */
typedef struct body {
  char *p;
  size_t n;
  bool too_big;
} body_t;

static size_t body_cb(char *data, size_t size, size_t nmemb, void *ud) {
  body_t *b = ud;
  size_t k = size * nmemb;
  if (b->n + k > MAX_BODY) {
    b->too_big = true;
    return 0; /* aborts the transfer */
  }
  char *p = realloc(b->p, b->n + k + 1);
  if (!p)
    return 0;
  memcpy(p + b->n, data, k);
  b->p = p;
  b->n += k;
  b->p[b->n] = '\0';
  return k;
}

int sf_registry_new(sf_registry_t **out, const char *url, long timeout_ms) {
  *out = NULL;
  if (!url || !url[0] || timeout_ms <= 0)
    return SF_EINVAL;
  sf_registry_t *r = calloc(1, sizeof(*r));
  if (!r)
    return SF_ENOMEM;
  size_t n = strlen(url);
  while (n > 0 && url[n - 1] == '/')
    n--;
  r->url = strndup(url, n);
  r->timeout_ms = timeout_ms;
  r->curl = curl_easy_init();
  if (!r->url || !r->curl) {
    sf_registry_destroy(r);
    return SF_ENOMEM;
  }
  *out = r;
  return 0;
}

void sf_registry_destroy(sf_registry_t *r) {
  if (!r)
    return;
  if (r->curl)
    curl_easy_cleanup(r->curl);
  free(r->url);
  free(r);
}

const char *sf_registry_error(const sf_registry_t *r) { return r->error; }

const char *sf_registry_url(const sf_registry_t *r) { return r->url; }

/* One request: GET when post is NULL, else POST of post. Sets *status and
 * fills b (the caller frees b->p). Returns 0 (any HTTP status),
 * SF_EUNAVAILABLE (no answer) or SF_ENOMEM. */
static int call(sf_registry_t *r, const char *path, const char *post,
                long *status, body_t *b) {
  char url[2048];
  if (snprintf(url, sizeof(url), "%s%s", r->url, path) >= (int)sizeof(url)) {
    snprintf(r->error, sizeof(r->error), "URL too long");
    return SF_EINVAL;
  }
  struct curl_slist *headers = NULL, *h;
  h = curl_slist_append(headers, "Accept: " CONTENT_TYPE ", application/json");
  if (h)
    headers = h;
  if (h && post) {
    h = curl_slist_append(headers, "Content-Type: " CONTENT_TYPE);
    if (h)
      headers = h;
  }
  if (!h) {
    curl_slist_free_all(headers);
    return SF_ENOMEM;
  }
  CURL *c = r->curl;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  if (post)
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
  CURLcode cc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (cc != CURLE_OK) {
    snprintf(r->error, sizeof(r->error), "%s %.160s: %.80s",
             post ? "POST" : "GET", url,
             b->too_big ? "answer too large" : curl_easy_strerror(cc));
    return cc == CURLE_OUT_OF_MEMORY ? SF_ENOMEM : SF_EUNAVAILABLE;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  return 0;
}

/* The error of a non-2xx answer, with the registry's message kept for the
 * log. */
static int http_error(sf_registry_t *r, const char *what, long status,
                      const body_t *b) {
  int n = snprintf(r->error, sizeof(r->error), "%.60s: HTTP %ld %.160s",
                   what, status, b->p ? b->p : "");
  /* one log line: the body's newlines and tabs become spaces */
  for (int i = 0; i < n && i < (int)sizeof(r->error) && r->error[i]; i++)
    if ((unsigned char)r->error[i] < 0x20)
      r->error[i] = ' ';
  if (status >= 500 || status == 408 || status == 429)
    return SF_EUNAVAILABLE;
  if (status == 404)
    return SF_ENOTFOUND;
  if (status == 409)
    return SF_ECONFLICT;
  if (status == 422)
    return SF_ESCHEMA;
  return SF_EPARSE;
}

int sf_registry_register(sf_registry_t *r, const char *subject,
                         const char *schema_json, uint32_t *id) {
  r->error[0] = '\0';
  if (!subject || !schema_json)
    return SF_EINVAL;
  char *esc = curl_easy_escape(r->curl, subject, 0);
  json_t *req = json_pack("{s:s}", "schema", schema_json);
  char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
  json_decref(req);
  char path[1024];
  body_t b = {0};
  long status = 0;
  int rc = SF_ENOMEM;
  if (!esc || !text)
    goto done;
  rc = SF_EINVAL;
  if (snprintf(path, sizeof(path), "/subjects/%s/versions", esc) >=
      (int)sizeof(path))
    goto done;
  if ((rc = call(r, path, text, &status, &b)))
    goto done;
  if (status / 100 != 2) {
    rc = http_error(r, subject, status, &b);
    goto done;
  }
  json_t *ans = b.p ? json_loads(b.p, 0, NULL) : NULL;
  json_int_t v = json_integer_value(json_object_get(ans, "id"));
  rc = 0;
  if (!json_is_integer(json_object_get(ans, "id")) || v < 0 ||
      v > (json_int_t)UINT32_MAX) {
    snprintf(r->error, sizeof(r->error), "%.200s: no id in the answer", subject);
    rc = SF_EPARSE;
  } else {
    *id = (uint32_t)v;
  }
  json_decref(ans);
done:
  free(b.p);
  free(text);
  curl_free(esc);
  return rc;
}

int sf_registry_fetch(sf_registry_t *r, uint32_t id, char **schema_json) {
  r->error[0] = '\0';
  *schema_json = NULL;
  char path[64], what[32];
  snprintf(path, sizeof(path), "/schemas/ids/%" PRIu32, id);
  snprintf(what, sizeof(what), "schema id %" PRIu32, id);
  body_t b = {0};
  long status = 0;
  int rc = call(r, path, NULL, &status, &b);
  if (rc)
    goto done;
  if (status / 100 != 2) {
    rc = http_error(r, what, status, &b);
    goto done;
  }
  json_t *ans = b.p ? json_loads(b.p, 0, NULL) : NULL;
  const char *s = json_string_value(json_object_get(ans, "schema"));
  const char *type = json_string_value(json_object_get(ans, "schemaType"));
  if (!s || (type && strcmp(type, "AVRO") != 0)) {
    snprintf(r->error, sizeof(r->error), "%s: not an Avro schema", what);
    rc = SF_EPARSE;
  } else if (!(*schema_json = strdup(s))) {
    rc = SF_ENOMEM;
  }
  json_decref(ans);
done:
  free(b.p);
  return rc;
}

int sf_registry_learn(sf_registry_t *r, sf_event_codec_t *c,
                      const uint8_t *buf, size_t len) {
  uint32_t id;
  if (!r || !sf_event_confluent_id(buf, len, &id) ||
      sf_event_codec_knows_id(c, id))
    return 0;
  char *schema = NULL;
  int rc = sf_registry_fetch(r, id, &schema);
  if (rc)
    return rc;
  rc = sf_event_codec_add_schema_id(c, id, schema);
  if (rc)
    snprintf(r->error, sizeof(r->error),
             "schema id %" PRIu32 ": %s (not an event envelope)", id,
             sf_strerror(rc));
  free(schema);
  return rc;
}

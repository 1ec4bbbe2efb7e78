/* qry_parse_pos: the session -> positions map (see qry_parse_pos.h).
 *
 * A chained hash table for lookups plus a list in order of last write for
 * expiry and eviction: the head is the entry written longest ago, so
 * expired entries and, when full, the oldest one are dropped from the head
 * in O(1) each. */
#include "qry_parse_pos.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

/* "catalog-0-9223372036854775807" fits with room to spare. */
#define TOKEN_MAX 48
#define LIST_MAX (QRY_PARSE_POS_MAX_TOKENS * TOKEN_MAX)

typedef struct entry {
  char *session;
  char list[LIST_MAX];
  uint64_t written_ms;
  struct entry *hnext;       /* hash chain */
  struct entry *prev, *next; /* age list, oldest first */
} entry_t;

struct qry_parse_pos {
  entry_t **buckets;
  size_t n_buckets;
  size_t size, max;
  uint64_t ttl_ms;
  entry_t *oldest, *newest;
};

typedef struct token {
  char kind[16];
  long long partition;
  long long offset;
} token_t;

/* ---- tokens ---- */

static bool token_parse(const char *s, size_t n, token_t *t) {
  while (n && (*s == ' ' || *s == '\t'))
    s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  char buf[TOKEN_MAX];
  if (n == 0 || n >= sizeof(buf))
    return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  size_t k = 0;
  while (buf[k] >= 'a' && buf[k] <= 'z')
    k++;
  if (k == 0 || k >= sizeof(t->kind) || buf[k] != '-')
    return false;
  memcpy(t->kind, buf, k);
  t->kind[k] = '\0';
  char *p = buf + k + 1, *end;
  if (*p < '0' || *p > '9')
    return false;
  t->partition = strtoll(p, &end, 10);
  if (*end != '-' || end[1] < '0' || end[1] > '9')
    return false;
  t->offset = strtoll(end + 1, &end, 10);
  return *end == '\0' && t->partition >= 0 && t->offset >= 0;
}

/* Appends the tokens of text to ts (n of them, at most cap), merging as
 * qry_parse_pos_merge says. Returns how many tokens of text parsed. */
static size_t tokens_merge(token_t *ts, size_t *n, size_t cap,
                           const char *text) {
  size_t parsed = 0;
  while (text && *text) {
    const char *comma = strchr(text, ',');
    size_t len = comma ? (size_t)(comma - text) : strlen(text);
    token_t t;
    if (token_parse(text, len, &t)) {
      parsed++;
      for (size_t i = 0; i < *n; i++) {
        if (strcmp(ts[i].kind, t.kind) == 0 &&
            ts[i].partition == t.partition) {
          if (ts[i].offset > t.offset)
            t.offset = ts[i].offset;
          memmove(ts + i, ts + i + 1, (*n - i - 1) * sizeof(*ts));
          (*n)--;
          break;
        }
      }
      if (*n == cap) {
        memmove(ts, ts + 1, (*n - 1) * sizeof(*ts));
        (*n)--;
      }
      ts[(*n)++] = t;
    }
    text = comma ? comma + 1 : NULL;
  }
  return parsed;
}

int qry_parse_pos_merge(const char *list, const char *position, char *out,
                        size_t cap) {
  token_t ts[QRY_PARSE_POS_MAX_TOKENS];
  size_t n = 0;
  tokens_merge(ts, &n, QRY_PARSE_POS_MAX_TOKENS, list);
  if (tokens_merge(ts, &n, QRY_PARSE_POS_MAX_TOKENS, position) == 0)
    return SF_EINVAL;
  size_t used = 0;
  for (size_t i = 0; i < n; i++) {
    int k = snprintf(out + used, cap - used, "%s%s-%lld-%lld", i ? "," : "",
                     ts[i].kind, ts[i].partition, ts[i].offset);
    if (k < 0 || (size_t)k >= cap - used)
      return SF_ETOOBIG;
    used += (size_t)k;
  }
  if (n == 0 && cap)
    out[0] = '\0';
  return 0;
}

/* ---- the map ---- */

static size_t hash(const char *s) {
  size_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int qry_parse_pos_new(qry_parse_pos_t **out, size_t max_sessions,
                      uint64_t ttl_ms) {
  *out = NULL;
  if (max_sessions == 0 || ttl_ms == 0)
    return SF_EINVAL;
  qry_parse_pos_t *m = calloc(1, sizeof(*m));
  if (!m)
    return SF_ENOMEM;
  m->n_buckets = max_sessions * 2;
  m->buckets = calloc(m->n_buckets, sizeof(*m->buckets));
  if (!m->buckets) {
    free(m);
    return SF_ENOMEM;
  }
  m->max = max_sessions;
  m->ttl_ms = ttl_ms;
  *out = m;
  return 0;
}

static entry_t **chain_of(qry_parse_pos_t *m, const char *session) {
  entry_t **pp = &m->buckets[hash(session) % m->n_buckets];
  while (*pp && strcmp((*pp)->session, session) != 0)
    pp = &(*pp)->hnext;
  return pp;
}

static void age_unlink(qry_parse_pos_t *m, entry_t *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    m->oldest = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    m->newest = e->prev;
  e->prev = e->next = NULL;
}

static void age_append(qry_parse_pos_t *m, entry_t *e) {
  e->prev = m->newest;
  e->next = NULL;
  if (m->newest)
    m->newest->next = e;
  else
    m->oldest = e;
  m->newest = e;
}

static void drop(qry_parse_pos_t *m, entry_t *e) {
  entry_t **pp = chain_of(m, e->session);
  *pp = e->hnext;
  age_unlink(m, e);
  m->size--;
  free(e->session);
  free(e);
}

static bool expired(const qry_parse_pos_t *m, const entry_t *e,
                    uint64_t now_ms) {
  return now_ms >= e->written_ms && now_ms - e->written_ms >= m->ttl_ms;
}

int qry_parse_pos_put(qry_parse_pos_t *m, const char *session,
                      const char *position, uint64_t now_ms) {
  if (!session || !*session || !position)
    return SF_EINVAL;
  while (m->oldest && expired(m, m->oldest, now_ms))
    drop(m, m->oldest);
  entry_t **pp = chain_of(m, session);
  entry_t *e = *pp;
  char merged[LIST_MAX];
  int rc = qry_parse_pos_merge(e ? e->list : "", position, merged,
                               sizeof(merged));
  if (rc != 0)
    return rc;
  if (!e) {
    if (m->size == m->max)
      drop(m, m->oldest);
    e = calloc(1, sizeof(*e));
    if (!e)
      return SF_ENOMEM;
    if (!(e->session = strdup(session))) {
      free(e);
      return SF_ENOMEM;
    }
    pp = chain_of(m, session); /* the drop may have changed the chain */
    *pp = e;
    m->size++;
  } else {
    age_unlink(m, e);
  }
  memcpy(e->list, merged, strlen(merged) + 1);
  e->written_ms = now_ms;
  age_append(m, e);
  return 0;
}

const char *qry_parse_pos_get(qry_parse_pos_t *m, const char *session,
                              uint64_t now_ms) {
  if (!session || !*session)
    return NULL;
  entry_t *e = *chain_of(m, session);
  if (!e)
    return NULL;
  if (expired(m, e, now_ms)) {
    drop(m, e);
    return NULL;
  }
  return e->list;
}

size_t qry_parse_pos_size(const qry_parse_pos_t *m) { return m->size; }

void qry_parse_pos_destroy(qry_parse_pos_t *m) {
  if (!m)
    return;
  while (m->oldest)
    drop(m, m->oldest);
  free(m->buckets);
  free(m);
}

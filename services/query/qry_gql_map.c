/* qry_gql_map: the /graphql schema over the Parse query builder
 * (qry_gql_map.h, docs/parse-graphql.graphql). One walk over a selection
 * set serves twice: without data it validates the selection against the
 * schema (and learns which pointers to include and whether to count); with
 * data it writes the answer of exactly the fields selected. */
#include "qry_gql_map.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

#define FIELDS_MAX 128 /* fields of one selection set, fragments expanded */
#define WHERE_AND_DEPTH 4
#define SPREADS_MAX 256 /* fragment expansions of one selection set */

/* The root fields of each class: Parse GraphQL's names. */
static const struct {
  const char *one, *list, *class_name;
} roots[] = {
    {"store", "stores", "Store"},
    {"product", "products", "Product"},
    {"inventory", "inventories", "Inventory"},
    {"transaction", "transactions", "Transaction"},
    {"order", "orders", "Order"},
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
invalid(qry_gql_error_t *err, const qry_gql_sel_t *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof(err->message), fmt, ap);
  va_end(ap);
  err->line = at ? at->line : 0;
  err->col = at ? at->col : 0;
  return SF_EPARSE;
}

/* The GraphQL name of a class: _User is User (the session's own account)
 * or PublicUser (a store's manager as others see it). */
static const char *type_name(const qry_pq_class_t *cls) {
  if (strcmp(cls->name, "_User") != 0)
    return cls->name;
  return cls == qry_pq_user_class() ? "User" : "PublicUser";
}

/* ---- base64 (standard alphabet, padded), as Parse's ids and cursors ---- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_encode(const char *in, size_t n, char *out, size_t cap) {
  if ((n + 2) / 3 * 4 + 1 > cap)
    return SF_ETOOBIG;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)(unsigned char)in[i + 1] << 8;
    if (i + 2 < n)
      v |= (unsigned char)in[i + 2];
    out[o++] = b64[(v >> 18) & 63];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  out[o] = '\0';
  return 0;
}

/* Decodes padded base64 text into out (cap bytes, NUL-terminated).
 * Returns the length, or -1 when in is not such text or does not fit. */
static long b64_decode(const char *in, char *out, size_t cap) {
  size_t n = strlen(in);
  if (n == 0 || n % 4 != 0 || n / 4 * 3 + 1 > cap)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      char c = in[i + k];
      const char *at = c ? strchr(b64, c) : NULL;
      if (c == '=' && i + 4 == n && k >= 2) {
        pad++;
        v <<= 6;
        continue;
      }
      if (!at || pad)
        return -1;
      v = (v << 6) | (uint32_t)(at - b64);
    }
    out[o++] = (char)(v >> 16);
    if (pad < 2)
      out[o++] = (char)(v >> 8);
    if (pad < 1)
      out[o++] = (char)v;
  }
  out[o] = '\0';
  if (memchr(out, '\0', o))
    return -1;
  return (long)o;
}

int qry_gqlm_global_id(const char *class_name, const char *object_id,
                       char *out, size_t cap) {
  char text[QRY_GQLM_ID_CAP + 32];
  int n = snprintf(text, sizeof(text), "%s:%s", class_name, object_id);
  if (n < 0 || (size_t)n >= sizeof(text))
    return SF_ETOOBIG;
  return b64_encode(text, (size_t)n, out, cap);
}

int qry_gqlm_object_id(const char *class_name, const char *id, char *out,
                       size_t cap) {
  char text[QRY_GQLM_ID_CAP + 32];
  long n = b64_decode(id, text, sizeof(text));
  const char *colon = n > 0 ? strchr(text, ':') : NULL;
  if (colon) {
    size_t cl = (size_t)(colon - text);
    if (strlen(class_name) != cl || memcmp(text, class_name, cl) != 0)
      return SF_EINVAL;
    id = colon + 1;
  }
  if (strlen(id) + 1 > cap)
    return SF_EINVAL;
  memcpy(out, id, strlen(id) + 1);
  return 0;
}

static int cursor_of(long long offset, char *out, size_t cap) {
  char text[48];
  int n = snprintf(text, sizeof(text), "arrayconnection:%lld", offset);
  return b64_encode(text, (size_t)n, out, cap);
}

/* The offset of a cursor of ours, or -1. */
static long long cursor_offset(const char *cursor) {
  char text[64];
  long n = b64_decode(cursor, text, sizeof(text));
  const char *pre = "arrayconnection:";
  size_t pl = strlen(pre);
  if (n <= (long)pl || memcmp(text, pre, pl) != 0)
    return -1;
  long long v = 0;
  for (const char *c = text + pl; *c; c++) {
    if (*c < '0' || *c > '9' || v > 100000000)
      return -1;
    v = v * 10 + (*c - '0');
  }
  return v;
}

/* ---- selection sets ---- */

static int flatten_into(const qry_gql_doc_t *doc, const qry_gql_sel_t *sels,
                        const char *tname, const qry_gql_sel_t **out,
                        int *n, int depth, int *spreads,
                        qry_gql_error_t *err) {
  for (const qry_gql_sel_t *s = sels; s; s = s->next) {
    if (s->kind == QRY_GQL_FIELD) {
      if (*n >= FIELDS_MAX)
        return invalid(err, s, "more than %d fields in one selection set",
                       FIELDS_MAX);
      out[(*n)++] = s;
      continue;
    }
    /* Fragments that spread others twice each would expand
     * exponentially: the expansions of one selection set are counted. */
    if (++*spreads > SPREADS_MAX)
      return invalid(err, s, "more than %d fragment expansions in one "
                             "selection set",
                     SPREADS_MAX);
    const qry_gql_sel_t *inner = s->sels;
    const char *cond = s->type_cond;
    if (s->kind == QRY_GQL_SPREAD) {
      const qry_gql_frag_t *f = qry_gql_frag(doc, s->name);
      if (!f)
        return invalid(err, s, "Unknown fragment \"%s\".", s->name);
      if (depth >= QRY_GQL_MAX_DEPTH)
        return invalid(err, s, "Cannot spread fragment \"%s\" within itself.",
                       s->name);
      inner = f->sels;
      cond = f->type_cond;
    }
    if (cond && strcmp(cond, tname) != 0)
      return invalid(err, s,
                     "Fragment cannot be spread here as objects of type "
                     "\"%s\" can never be of type \"%.64s\".",
                     tname, cond);
    int rc = flatten_into(doc, inner, tname, out, n, depth + 1, spreads, err);
    if (rc)
      return rc;
  }
  return 0;
}

static int flatten(const qry_gql_doc_t *doc, const qry_gql_sel_t *sels,
                   const char *tname, const qry_gql_sel_t **out, int *n,
                   qry_gql_error_t *err) {
  int spreads = 0;
  *n = 0;
  return flatten_into(doc, sels, tname, out, n, 0, &spreads, err);
}

int qry_gqlm_roots(const qry_gql_doc_t *doc, const qry_gql_op_t *op,
                   const qry_gql_sel_t **out, int cap, qry_gql_error_t *err) {
  const qry_gql_sel_t *all[FIELDS_MAX];
  int n = 0;
  const char *t = op->kind == QRY_GQL_MUTATION ? "Mutation" : "Query";
  if (flatten(doc, op->sels, t, all, &n, err) != 0)
    return -1;
  if (n > cap) {
    invalid(err, all[cap], "more than %d root fields", cap);
    return -1;
  }
  memcpy(out, all, (size_t)n * sizeof(*out));
  return n;
}

/* The walk's state: the document, the error, and in validation mode what
 * the plan learns. */
typedef struct walk {
  const qry_gql_doc_t *doc;
  qry_gql_error_t *err;
  uint64_t include;
  bool count;
} walk_t;

static int no_args(walk_t *w, const qry_gql_sel_t *f, const char *tname) {
  if (f->args)
    return invalid(w->err, f, "Unknown argument \"%s\" on field \"%s.%s\".",
                   f->args->name, tname, f->name);
  return 0;
}

static int leaf(walk_t *w, const qry_gql_sel_t *f, const char *type) {
  if (f->sels)
    return invalid(w->err, f,
                   "Field \"%s\" must not have a selection since type "
                   "\"%s\" has no subfields.",
                   f->name, type);
  return 0;
}

static int branch(walk_t *w, const qry_gql_sel_t *f, const char *type) {
  if (!f->sels)
    return invalid(w->err, f,
                   "Field \"%s\" of type \"%s\" must have a selection of "
                   "subfields. Did you mean \"%s { ... }\"?",
                   f->name, type, f->name);
  return 0;
}

static int set(json_t *out, const char *key, json_t *v) {
  if (!v)
    return SF_ENOMEM;
  return json_object_set_new(out, key, v) ? SF_ENOMEM : 0;
}

/* A String leaf answered text (__typename, sessionToken; out NULL:
 * validate only). */
static int string_leaf(walk_t *w, const qry_gql_sel_t *f, const char *text,
                       json_t *out) {
  int rc = leaf(w, f, "String");
  return rc || !out ? rc : set(out, f->alias, json_string(text));
}

/* A Parse value shown as a GraphQL scalar: dates as their ISO text. */
static json_t *scalar(const json_t *v) {
  if (!v)
    return json_null();
  const char *t = json_string_value(json_object_get(v, "__type"));
  if (t && strcmp(t, "Date") == 0 && json_object_get(v, "iso"))
    return json_incref(json_object_get(v, "iso"));
  return json_incref((json_t *)v);
}

static const char *gql_type(const qry_pq_field_t *fd) {
  switch (fd->type) {
  case QRY_PQ_ID:
    return "ID";
  case QRY_PQ_TEXT:
    return "String";
  case QRY_PQ_INT:
    return "Int";
  case QRY_PQ_DECIMAL:
    return "Float";
  case QRY_PQ_BOOL:
    return "Boolean";
  case QRY_PQ_DATE:
    return "Date";
  case QRY_PQ_JSON:
    return "Array";
  case QRY_PQ_POINTER:
    return type_name(fd->target);
  }
  return "String";
}

/* A node of cls. level 0: the object asked for (its pointers are
 * included); 1: an included object (its pointers are not); 2: a pointer
 * not included: only objectId, id and __typename. obj NULL: validate. */
static int node(walk_t *w, const qry_gql_sel_t *sels, const qry_pq_class_t *cls,
                int level, const json_t *obj, json_t *out) {
  const qry_gql_sel_t *fs[FIELDS_MAX];
  int n, rc;
  const char *tn = type_name(cls);
  if ((rc = flatten(w->doc, sels, tn, fs, &n, w->err)) != 0)
    return rc;
  const char *oid = json_string_value(json_object_get(obj, "objectId"));
  for (int i = 0; i < n; i++) {
    const qry_gql_sel_t *f = fs[i];
    if ((rc = no_args(w, f, tn)) != 0)
      return rc;
    if (strcmp(f->name, "__typename") == 0) {
      if ((rc = string_leaf(w, f, tn, out)) != 0)
        return rc;
      continue;
    }
    if (strcmp(f->name, "id") == 0) {
      if ((rc = leaf(w, f, "ID")) != 0)
        return rc;
      if (out) {
        char gid[2 * QRY_GQLM_ID_CAP];
        if (!oid || qry_gqlm_global_id(cls->name, oid, gid, sizeof(gid)))
          return SF_EPARSE;
        if ((rc = set(out, f->alias, json_string(gid))) != 0)
          return rc;
      }
      continue;
    }
    int idx = -1;
    for (size_t k = 0; k < cls->n_fields; k++)
      if (strcmp(cls->fields[k].key, f->name) == 0)
        idx = (int)k;
    if (idx < 0)
      return invalid(w->err, f, "Cannot query field \"%s\" on type \"%s\".",
                     f->name, tn);
    const qry_pq_field_t *fd = &cls->fields[idx];
    if (level >= 2 && idx != 0)
      return invalid(w->err, f,
                     "Field \"%s\" of %s is not resolved here: pointers are "
                     "resolved one level deep, select objectId or id.",
                     f->name, tn);
    if (fd->type != QRY_PQ_POINTER) {
      if ((rc = leaf(w, f, gql_type(fd))) != 0)
        return rc;
      if (out && (rc = set(out, f->alias,
                           scalar(json_object_get(obj, fd->key)))) != 0)
        return rc;
      continue;
    }
    if ((rc = branch(w, f, gql_type(fd))) != 0)
      return rc;
    if (level == 0)
      w->include |= UINT64_C(1) << idx;
    if (!out) {
      if ((rc = node(w, f->sels, fd->target, level + 1, NULL, NULL)) != 0)
        return rc;
      continue;
    }
    const json_t *v = json_object_get(obj, fd->key);
    if (!json_is_object(v)) {
      if ((rc = set(out, f->alias, json_null())) != 0)
        return rc;
      continue;
    }
    json_t *child = json_object();
    if ((rc = set(out, f->alias, child)) != 0 ||
        (rc = node(w, f->sels, fd->target, level + 1, v, child)) != 0)
      return rc;
  }
  return 0;
}

/* A connection of cls. r NULL: validate (w learns include and count). */
static int connection(walk_t *w, const qry_gql_sel_t *sels,
                      const qry_pq_class_t *cls, const qry_gqlm_root_t *r,
                      const json_t *result, json_t *out) {
  const qry_gql_sel_t *fs[FIELDS_MAX], *es[FIELDS_MAX], *ps[FIELDS_MAX];
  char conn_t[48], edge_t[48];
  snprintf(conn_t, sizeof(conn_t), "%sConnection", type_name(cls));
  snprintf(edge_t, sizeof(edge_t), "%sEdge", type_name(cls));
  int n, rc;
  if ((rc = flatten(w->doc, sels, conn_t, fs, &n, w->err)) != 0)
    return rc;
  const json_t *results = json_object_get(result, "results");
  size_t rows = json_array_size(results);
  size_t shown = 0;
  bool more = false;
  if (out) {
    if (!json_is_array(results))
      return SF_EPARSE;
    shown = rows < (size_t)r->first ? rows : (size_t)r->first;
    more = rows > (size_t)r->first;
    if (r->with_count && json_is_integer(json_object_get(result, "count")))
      more = more || r->skip + (long long)shown <
                         json_integer_value(json_object_get(result, "count"));
  }
  for (int i = 0; i < n; i++) {
    const qry_gql_sel_t *f = fs[i];
    if ((rc = no_args(w, f, conn_t)) != 0)
      return rc;
    if (strcmp(f->name, "__typename") == 0) {
      if ((rc = string_leaf(w, f, conn_t, out)) != 0)
        return rc;
    } else if (strcmp(f->name, "count") == 0) {
      if ((rc = leaf(w, f, "Int")) != 0)
        return rc;
      w->count = true;
      if (out && (rc = set(out, f->alias,
                           scalar(json_object_get(result, "count")))) != 0)
        return rc;
    } else if (strcmp(f->name, "edges") == 0) {
      int ne;
      if ((rc = branch(w, f, edge_t)) != 0 ||
          (rc = flatten(w->doc, f->sels, edge_t, es, &ne, w->err)) != 0)
        return rc;
      json_t *edges = out ? json_array() : NULL;
      if (out && (rc = set(out, f->alias, edges)) != 0)
        return rc;
      for (size_t row = 0; row < (out ? shown : 1); row++) {
        json_t *edge = NULL;
        if (out && (!(edge = json_object()) ||
                    json_array_append_new(edges, edge)))
          return SF_ENOMEM;
        const json_t *obj = out ? json_array_get(results, row) : NULL;
        for (int k = 0; k < ne; k++) {
          const qry_gql_sel_t *e = es[k];
          if ((rc = no_args(w, e, edge_t)) != 0)
            return rc;
          if (strcmp(e->name, "__typename") == 0) {
            if ((rc = string_leaf(w, e, edge_t, edge)) != 0)
              return rc;
          } else if (strcmp(e->name, "cursor") == 0) {
            char c[64];
            if ((rc = leaf(w, e, "String")) != 0)
              return rc;
            if (edge && (cursor_of(r->skip + (long long)row, c, sizeof(c)) ||
                         (rc = set(edge, e->alias, json_string(c))) != 0))
              return rc ? rc : SF_ENOMEM;
          } else if (strcmp(e->name, "node") == 0) {
            json_t *nd = edge ? json_object() : NULL;
            if ((rc = branch(w, e, type_name(cls))) != 0 ||
                (edge && (rc = set(edge, e->alias, nd)) != 0) ||
                (rc = node(w, e->sels, cls, 0, obj, nd)) != 0)
              return rc;
          } else {
            return invalid(w->err, e,
                           "Cannot query field \"%s\" on type \"%s\".",
                           e->name, edge_t);
          }
        }
      }
    } else if (strcmp(f->name, "pageInfo") == 0) {
      int np;
      if ((rc = branch(w, f, "PageInfo")) != 0 ||
          (rc = flatten(w->doc, f->sels, "PageInfo", ps, &np, w->err)) != 0)
        return rc;
      json_t *pi = out ? json_object() : NULL;
      if (out && (rc = set(out, f->alias, pi)) != 0)
        return rc;
      for (int k = 0; k < np; k++) {
        const qry_gql_sel_t *p = ps[k];
        json_t *v = NULL;
        char c[64];
        if ((rc = no_args(w, p, "PageInfo")) != 0 ||
            (rc = leaf(w, p,
                       strstr(p->name, "Cursor") ? "String" : "Boolean")) !=
                0)
          return rc;
        if (strcmp(p->name, "hasNextPage") == 0) {
          v = pi ? json_boolean(more) : NULL;
        } else if (strcmp(p->name, "hasPreviousPage") == 0) {
          v = pi ? json_boolean(r->skip > 0) : NULL;
        } else if (strcmp(p->name, "startCursor") == 0 ||
                   strcmp(p->name, "endCursor") == 0) {
          long long at = strcmp(p->name, "startCursor") == 0
                             ? r ? r->skip : 0
                             : (r ? r->skip : 0) + (long long)shown - 1;
          if (pi)
            v = shown == 0 || cursor_of(at, c, sizeof(c)) ? json_null()
                                                          : json_string(c);
        } else if (strcmp(p->name, "__typename") == 0) {
          v = pi ? json_string("PageInfo") : NULL;
        } else {
          return invalid(w->err, p,
                         "Cannot query field \"%s\" on type \"PageInfo\".",
                         p->name);
        }
        if (pi && (rc = set(pi, p->alias, v)) != 0)
          return rc;
      }
    } else {
      return invalid(w->err, f, "Cannot query field \"%s\" on type \"%s\".",
                     f->name, conn_t);
    }
  }
  return 0;
}

static int viewer(walk_t *w, const qry_gql_sel_t *sels, const json_t *user,
                  const char *token, json_t *out) {
  const qry_gql_sel_t *fs[FIELDS_MAX];
  int n, rc;
  if ((rc = flatten(w->doc, sels, "Viewer", fs, &n, w->err)) != 0)
    return rc;
  for (int i = 0; i < n; i++) {
    const qry_gql_sel_t *f = fs[i];
    if ((rc = no_args(w, f, "Viewer")) != 0)
      return rc;
    if (strcmp(f->name, "__typename") == 0) {
      if ((rc = string_leaf(w, f, "Viewer", out)) != 0)
        return rc;
    } else if (strcmp(f->name, "sessionToken") == 0) {
      if ((rc = string_leaf(w, f, token, out)) != 0)
        return rc;
    } else if (strcmp(f->name, "user") == 0) {
      json_t *u = out ? json_object() : NULL;
      if ((rc = branch(w, f, "User")) != 0 ||
          (out && (rc = set(out, f->alias, u)) != 0) ||
          (rc = node(w, f->sels, qry_pq_user_class(), 0, user, u)) != 0)
        return rc;
    } else {
      return invalid(w->err, f, "Cannot query field \"%s\" on type "
                                "\"Viewer\".",
                     f->name);
    }
  }
  return 0;
}

/* ---- where ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
refuse(int *code, qry_gql_error_t *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof(err->message), fmt, ap);
  va_end(ap);
  *code = 102;
  return SF_EINVAL;
}

static const struct {
  const char *gql, *rest;
} where_ops[] = {
    {"equalTo", "$eq"},
    {"notEqualTo", "$ne"},
    {"lessThan", "$lt"},
    {"lessThanOrEqualTo", "$lte"},
    {"greaterThan", "$gt"},
    {"greaterThanOrEqualTo", "$gte"},
    {"in", "$in"},
    {"notIn", "$nin"},
    {"exists", "$exists"},
};

static const char *rest_op(const char *gql) {
  for (size_t i = 0; i < sizeof(where_ops) / sizeof(where_ops[0]); i++)
    if (strcmp(where_ops[i].gql, gql) == 0)
      return where_ops[i].rest;
  return NULL;
}

/* A value of an operator on field fd: ids of "id" decoded, pointer ids
 * wrapped as Pointers; arrays (in, notIn) item by item. New reference. */
static json_t *where_value(const qry_pq_class_t *cls,
                           const qry_pq_field_t *fd, bool global,
                           const json_t *v) {
  if (json_is_array(v)) {
    json_t *a = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
      if (!a || json_array_append_new(a, where_value(cls, fd, global, e))) {
        json_decref(a);
        return NULL;
      }
    }
    return a;
  }
  if (!json_is_string(v))
    return json_incref((json_t *)v);
  const char *s = json_string_value(v);
  char id[QRY_GQLM_ID_CAP];
  if (global && qry_gqlm_object_id(cls->name, s, id, sizeof(id)) == 0)
    s = id;
  if (fd->type == QRY_PQ_POINTER) {
    char pid[QRY_GQLM_ID_CAP];
    if (qry_gqlm_object_id(fd->target->name, s, pid, sizeof(pid)) == 0)
      s = pid;
    return json_pack("{s:s,s:s,s:s}", "__type", "Pointer", "className",
                     fd->target->name, "objectId", s);
  }
  return json_string(s);
}

static int put_op(json_t *cons, const qry_pq_class_t *cls,
                  const qry_pq_field_t *fd, bool global, const char *op,
                  const json_t *v, int *code, qry_gql_error_t *err) {
  const char *r = rest_op(op);
  if (!r)
    return refuse(code, err, "unsupported operator %.64s on %s", op, fd->key);
  if (json_object_get(cons, r))
    return refuse(code, err, "%s: %s given twice", fd->key, op);
  json_t *x = strcmp(op, "exists") == 0 ? json_incref((json_t *)v)
                                        : where_value(cls, fd, global, v);
  if (!x || json_object_set_new(cons, r, x))
    return SF_ENOMEM;
  return 0;
}

static int where_into(const qry_pq_class_t *cls, const json_t *where,
                      json_t *out, int depth, int *code,
                      qry_gql_error_t *err) {
  if (!json_is_object(where))
    return refuse(code, err, "where must be an input object");
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)where, key, v) {
    int rc;
    if (strcmp(key, "AND") == 0) {
      if (!json_is_array(v) || depth >= WHERE_AND_DEPTH)
        return refuse(code, err, "AND needs a list of where inputs, nested "
                                 "at most %d deep",
                      WHERE_AND_DEPTH);
      size_t i;
      const json_t *e;
      json_array_foreach(v, i, e) {
        if ((rc = where_into(cls, e, out, depth + 1, code, err)) != 0)
          return rc;
      }
      continue;
    }
    if (strcmp(key, "OR") == 0 || strcmp(key, "NOR") == 0)
      return refuse(code, err, "%s is not supported", key);
    bool global = strcmp(key, "id") == 0;
    const char *fkey = global ? "objectId" : key;
    const qry_pq_field_t *fd = NULL;
    for (size_t k = 0; k < cls->n_fields; k++)
      if (strcmp(cls->fields[k].key, fkey) == 0)
        fd = &cls->fields[k];
    if (!fd) { /* the builder refuses it: 105 */
      if (json_object_set(out, key, (json_t *)v))
        return SF_ENOMEM;
      continue;
    }
    if (!json_is_object(v)) {
      *code = 111;
      snprintf(err->message, sizeof(err->message),
               "where: %s needs an input object such as {equalTo: ...}", key);
      return SF_EINVAL;
    }
    json_t *cons = json_object_get(out, fd->key);
    if (!cons) {
      if (!(cons = json_object()) || json_object_set_new(out, fd->key, cons))
        return SF_ENOMEM;
    }
    const char *op;
    const json_t *arg;
    json_object_foreach((json_t *)v, op, arg) {
      if (fd->type == QRY_PQ_POINTER && strcmp(op, "have") == 0) {
        const json_t *inner = json_object_get(arg, "objectId");
        if (!json_is_object(arg) || json_object_size(arg) != 1 ||
            !json_is_object(inner))
          return refuse(code, err,
                        "%s: only have: {objectId: {...}} is supported",
                        fd->key);
        const char *iop;
        const json_t *iarg;
        json_object_foreach((json_t *)inner, iop, iarg) {
          if (strcmp(iop, "exists") == 0)
            return refuse(code, err, "%s: use exists on the pointer",
                          fd->key);
          if ((rc = put_op(cons, cls, fd, false, iop, iarg, code, err)) != 0)
            return rc;
        }
        continue;
      }
      if (fd->type == QRY_PQ_POINTER && strcmp(op, "exists") != 0)
        return refuse(code, err,
                      "unsupported operator %.64s on pointer %s (use have "
                      "or exists)",
                      op, fd->key);
      if ((rc = put_op(cons, cls, fd, global, op, arg, code, err)) != 0)
        return rc;
    }
  }
  return 0;
}

int qry_gqlm_where(const qry_pq_class_t *cls, const json_t *where,
                   json_t **out, int *code, qry_gql_error_t *err) {
  *out = NULL;
  json_t *w = json_object();
  if (!w)
    return SF_ENOMEM;
  int rc = where_into(cls, where, w, 0, code, err);
  if (rc) {
    json_decref(w);
    return rc;
  }
  *out = w;
  return 0;
}

/* ---- plans ---- */

static int arg_json(const qry_gql_arg_t *a, const qry_gql_op_t *op,
                    const json_t *vars, json_t **out, qry_gql_error_t *err) {
  return qry_gql_value_json(a->value, op, vars, out, err);
}

static int bad_arg(qry_gql_error_t *err, const qry_gql_arg_t *a,
                   const char *type) {
  snprintf(err->message, sizeof(err->message),
           "Argument \"%s\" has an invalid value: %s expected.", a->name,
           type);
  err->line = a->line;
  err->col = a->col;
  return SF_EPARSE;
}

/* "name_ASC" / "name_DESC" -> "name" / "-name" appended to b (cap). */
static int order_item(const qry_pq_class_t *cls, const json_t *v, char *b,
                      size_t cap) {
  const char *s = json_string_value(v);
  const char *u = s ? strrchr(s, '_') : NULL;
  if (!u || (strcmp(u, "_ASC") != 0 && strcmp(u, "_DESC") != 0))
    return -1;
  size_t kl = (size_t)(u - s);
  bool known = false;
  for (size_t k = 0; k < cls->n_fields; k++)
    known = known || (strlen(cls->fields[k].key) == kl &&
                      memcmp(cls->fields[k].key, s, kl) == 0 &&
                      cls->fields[k].type != QRY_PQ_JSON);
  size_t used = strlen(b);
  if (!known || used + kl + 3 > cap)
    return -1;
  snprintf(b + used, cap - used, "%s%s%.*s", used ? "," : "",
           strcmp(u, "_DESC") == 0 ? "-" : "", (int)kl, s);
  return 0;
}

static int plan_list(const qry_gql_op_t *op, const qry_gql_sel_t *f,
                     const json_t *vars, qry_gqlm_root_t *r,
                     qry_gql_error_t *err, json_t **where_in,
                     char *order, size_t order_cap, char *after,
                     size_t after_cap) {
  for (const qry_gql_arg_t *a = f->args; a; a = a->next) {
    json_t *v = NULL;
    int rc = arg_json(a, op, vars, &v, err);
    if (rc)
      return rc;
    bool ok = true;
    if (strcmp(a->name, "where") == 0) {
      ok = json_is_object(v) || json_is_null(v);
      if (ok && json_is_object(v))
        *where_in = json_incref(v);
    } else if (strcmp(a->name, "order") == 0) {
      if (json_is_string(v)) {
        json_t *l = json_pack("[O]", v);
        json_decref(v);
        if (!(v = l))
          return SF_ENOMEM;
      }
      ok = json_is_array(v) || json_is_null(v);
      size_t i;
      const json_t *e;
      json_array_foreach(v, i, e) {
        if (ok && order_item(r->cls, e, order, order_cap) != 0) {
          snprintf(err->message, sizeof(err->message),
                   "Value \"%.64s\" does not exist in \"%sOrder\" enum.",
                   json_is_string(e) ? json_string_value(e) : "?",
                   r->cls->name);
          json_decref(v);
          err->line = a->line;
          err->col = a->col;
          return SF_EPARSE;
        }
      }
    } else if (strcmp(a->name, "skip") == 0 ||
               strcmp(a->name, "first") == 0) {
      ok = json_is_integer(v) || json_is_null(v);
      if (ok && json_is_integer(v))
        *(strcmp(a->name, "skip") == 0 ? &r->skip : &r->first) =
            json_integer_value(v);
    } else if (strcmp(a->name, "after") == 0) {
      ok = json_is_string(v) || json_is_null(v);
      if (ok && json_is_string(v))
        snprintf(after, after_cap, "%s",
                 json_string_length(v) < after_cap ? json_string_value(v)
                                                   : "!");
    } else if (strcmp(a->name, "last") == 0 ||
               strcmp(a->name, "before") == 0) {
      json_decref(v);
      snprintf(err->message, sizeof(err->message),
               "Argument \"%s\" is not supported: page forward with first "
               "and after.",
               a->name);
      err->line = a->line;
      err->col = a->col;
      return SF_EPARSE;
    } else {
      json_decref(v);
      snprintf(err->message, sizeof(err->message),
               "Unknown argument \"%s\" on field \"Query.%s\".", a->name,
               f->name);
      err->line = a->line;
      err->col = a->col;
      return SF_EPARSE;
    }
    json_decref(v);
    if (!ok)
      return bad_arg(err, a,
                     strcmp(a->name, "where") == 0   ? "an input object"
                     : strcmp(a->name, "order") == 0 ? "a list of enum values"
                     : strcmp(a->name, "after") == 0 ? "String"
                                                     : "Int");
  }
  return 0;
}

static char *include_text(const qry_pq_class_t *cls, uint64_t bits,
                          char *out, size_t cap) {
  out[0] = '\0';
  for (size_t k = 0; k < cls->n_fields; k++) {
    if (!(bits & (UINT64_C(1) << k)))
      continue;
    size_t used = strlen(out);
    snprintf(out + used, cap - used, "%s%s", used ? "," : "",
             cls->fields[k].key);
  }
  return out;
}

/* ---- mutations ---- */

static const struct {
  const char *name, *payload_type, *class_name, *key;
  qry_gqlm_kind_t kind;
} mutations[] = {
    {"logIn", "LogInPayload", NULL, "viewer", QRY_GQLM_LOGIN},
    {"logOut", "LogOutPayload", NULL, "ok", QRY_GQLM_LOGOUT},
    {"createTransaction", "CreateTransactionPayload", "Transaction",
     "transaction", QRY_GQLM_CREATE},
    {"createOrder", "CreateOrderPayload", "Order", "order", QRY_GQLM_CREATE},
};

static int mutation_of(const char *name) {
  for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++)
    if (strcmp(mutations[i].name, name) == 0)
      return (int)i;
  return -1;
}

/* The payload of mutation m: validates (obj and out NULL) or shapes. */
static int payload(walk_t *w, const qry_gql_sel_t *sels, int m,
                   const qry_gqlm_root_t *r, const json_t *obj,
                   json_t *out) {
  const qry_gql_sel_t *fs[FIELDS_MAX];
  int n, rc;
  const char *tn = mutations[m].payload_type;
  if ((rc = flatten(w->doc, sels, tn, fs, &n, w->err)) != 0)
    return rc;
  for (int i = 0; i < n; i++) {
    const qry_gql_sel_t *f = fs[i];
    if ((rc = no_args(w, f, tn)) != 0)
      return rc;
    if (strcmp(f->name, "__typename") == 0) {
      if ((rc = string_leaf(w, f, tn, out)) != 0)
        return rc;
    } else if (strcmp(f->name, "clientMutationId") == 0) {
      if ((rc = leaf(w, f, "String")) != 0 ||
          (out && (rc = set(out, f->alias, r->client_id ? json_incref(r->client_id) : json_null())) != 0))
        return rc;
    } else if (strcmp(f->name, mutations[m].key) != 0) {
      return invalid(w->err, f, "Cannot query field \"%s\" on type \"%s\".",
                     f->name, tn);
    } else if (mutations[m].kind == QRY_GQLM_LOGOUT) {
      if ((rc = leaf(w, f, "Boolean")) != 0 ||
          (out && (rc = set(out, f->alias, json_true())) != 0))
        return rc;
    } else if (mutations[m].kind == QRY_GQLM_LOGIN) {
      json_t *v = out ? json_object() : NULL;
      const char *token =
          json_string_value(json_object_get(obj, "sessionToken"));
      if ((rc = branch(w, f, "Viewer")) != 0 ||
          (out && (rc = set(out, f->alias, v)) != 0) ||
          (rc = viewer(w, f->sels, obj, token ? token : "", v)) != 0)
        return rc;
    } else {
      const qry_pq_class_t *cls = qry_pq_class(mutations[m].class_name);
      json_t *v = out ? json_object() : NULL;
      if ((rc = branch(w, f, cls->name)) != 0 ||
          (out && (rc = set(out, f->alias, v)) != 0) ||
          (rc = node(w, f->sels, cls, 0, obj, v)) != 0)
        return rc;
    }
  }
  return 0;
}

/* {link: id} -> a Pointer to target; anything else as it is (the write
 * path refuses it). New reference. */
static json_t *link(const qry_pq_class_t *target, const json_t *v) {
  const char *id = json_string_value(json_object_get(v, "link"));
  char oid[QRY_GQLM_ID_CAP];
  if (!json_is_object(v) || json_object_size(v) != 1 || !id)
    return json_incref((json_t *)v);
  if (qry_gqlm_object_id(target->name, id, oid, sizeof(oid)) != 0)
    snprintf(oid, sizeof(oid), "%s", "-");
  return json_pack("{s:s,s:s,s:s}", "__type", "Pointer", "className",
                   target->name, "objectId", oid);
}

/* The Parse body of a create from input.fields. */
static json_t *create_body(const qry_pq_class_t *cls, const json_t *fields) {
  json_t *body = json_object();
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)fields, k, v) {
    json_t *x = NULL;
    const qry_pq_field_t *fd = NULL;
    for (size_t i = 0; i < cls->n_fields; i++)
      if (strcmp(cls->fields[i].key, k) == 0)
        fd = &cls->fields[i];
    if (fd && fd->type == QRY_PQ_POINTER) {
      x = link(fd->target, v);
    } else if (strcmp(k, "lines") == 0 && json_is_array(v)) {
      x = json_array();
      size_t i;
      const json_t *line;
      json_array_foreach(v, i, line) {
        json_t *l = json_deep_copy(line);
        const json_t *p = json_object_get(line, "product");
        if (l && p && json_object_set_new(l, "product", link(qry_pq_class("Product"), p))) {
          json_decref(l);
          l = NULL;
        }
        if (!x || !l || json_array_append_new(x, l)) {
          json_decref(x);
          x = NULL;
          break;
        }
      }
    } else {
      x = json_incref((json_t *)v);
    }
    if (!body || !x || json_object_set_new(body, k, x)) {
      json_decref(body);
      return NULL;
    }
  }
  return body;
}

static int bad_input(qry_gql_error_t *err, const qry_gql_arg_t *a,
                     const char *what) {
  snprintf(err->message, sizeof(err->message),
           "Argument \"input\" has an invalid value: %s.", what);
  err->line = a->line;
  err->col = a->col;
  return SF_EPARSE;
}

static int plan_mutation(const qry_gql_doc_t *doc, const qry_gql_op_t *op,
                         const qry_gql_sel_t *f, const json_t *vars,
                         qry_gqlm_root_t *r, qry_gql_error_t *err) {
  walk_t w = {.doc = doc, .err = err};
  int m = mutation_of(f->name), rc;
  if (m < 0)
    return invalid(err, f, "Cannot query field \"%s\" on type \"Mutation\".",
                   f->name);
  r->kind = mutations[m].kind;
  r->cls = mutations[m].class_name ? qry_pq_class(mutations[m].class_name)
                                   : qry_pq_user_class();
  const qry_gql_arg_t *in = NULL;
  for (const qry_gql_arg_t *a = f->args; a; a = a->next) {
    if (strcmp(a->name, "input") != 0)
      return invalid(err, f, "Unknown argument \"%s\" on field "
                             "\"Mutation.%s\".",
                     a->name, f->name);
    in = a;
  }
  if (!in && r->kind != QRY_GQLM_LOGOUT)
    return invalid(err, f,
                   "Field \"%s\" argument \"input\" is required, but it "
                   "was not provided.",
                   f->name);
  json_t *input = NULL;
  if (in && (rc = qry_gql_value_json(in->value, op, vars, &input, err)) != 0)
    return rc;
  if (!input && !(input = json_object()))
    return SF_ENOMEM;
  rc = 0;
  const json_t *cid = json_object_get(input, "clientMutationId");
  const char *k;
  json_t *v;
  if (!json_is_object(input)) {
    rc = bad_input(err, in, "an input object expected");
  } else if (cid && !json_is_string(cid) && !json_is_null(cid)) {
    rc = bad_input(err, in, "clientMutationId must be a String");
  } else {
    if (json_is_string(cid))
      r->client_id = json_incref((json_t *)cid);
    json_object_foreach(input, k, v) {
      bool known = strcmp(k, "clientMutationId") == 0 ||
                   (r->kind == QRY_GQLM_LOGIN && (strcmp(k, "username") == 0 ||
                                                  strcmp(k, "password") == 0)) ||
                   (r->kind == QRY_GQLM_CREATE && strcmp(k, "fields") == 0);
      if (!known && !rc)
        rc = bad_input(err, in, "an input field is not defined by its type");
    }
  }
  if (!rc && r->kind == QRY_GQLM_LOGIN) {
    const json_t *u = json_object_get(input, "username");
    const json_t *pw = json_object_get(input, "password");
    if (!json_is_string(u) || !json_is_string(pw))
      rc = bad_input(err, in, "username and password Strings expected");
    else if (!(r->body = json_pack("{s:O,s:O}", "username", u, "password",
                                   pw)))
      rc = SF_ENOMEM;
  } else if (!rc && r->kind == QRY_GQLM_LOGOUT) {
    if (!(r->body = json_object()))
      rc = SF_ENOMEM;
  } else if (!rc) {
    const json_t *fields = json_object_get(input, "fields");
    if (!json_is_object(fields))
      rc = bad_input(err, in, "fields must be an input object");
    else if (!(r->body = create_body(r->cls, fields)))
      rc = SF_ENOMEM;
  }
  json_decref(input);
  if (rc)
    return rc;
  if ((rc = branch(&w, f, mutations[m].payload_type)) != 0 ||
      (rc = payload(&w, f->sels, m, r, NULL, NULL)) != 0)
    return rc;
  char inc[128];
  r->params = json_pack("{s:s}", "include",
                        include_text(r->cls, w.include, inc, sizeof(inc)));
  return r->params ? 0 : SF_ENOMEM;
}

int qry_gqlm_shape_payload(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                           const json_t *obj, json_t **out) {
  qry_gql_error_t err;
  walk_t w = {.doc = doc, .err = &err};
  int m = mutation_of(r->field->name);
  json_t *o = json_object();
  if (m < 0 || !o) {
    json_decref(o);
    return m < 0 ? SF_EINVAL : SF_ENOMEM;
  }
  int rc = payload(&w, r->field->sels, m, r, obj, o);
  if (rc) {
    json_decref(o);
    return rc;
  }
  *out = o;
  return 0;
}

static int plan(const qry_gql_doc_t *doc, const qry_gql_op_t *op,
                const qry_gql_sel_t *f, const json_t *vars,
                qry_gqlm_root_t *r, qry_gql_error_t *err) {
  walk_t w = {.doc = doc, .err = err};
  int rc;
  if (strcmp(f->name, "__typename") == 0) {
    r->kind = QRY_GQLM_TYPENAME;
    return f->args || f->sels ? invalid(err, f, "__typename takes no "
                                                "arguments or subfields.")
                              : 0;
  }
  if (op->kind == QRY_GQL_MUTATION)
    return plan_mutation(doc, op, f, vars, r, err);
  if (strcmp(f->name, "viewer") == 0) {
    r->kind = QRY_GQLM_VIEWER;
    r->cls = qry_pq_user_class();
    if ((rc = no_args(&w, f, "Query")) != 0 ||
        (rc = branch(&w, f, "Viewer")) != 0 ||
        (rc = viewer(&w, f->sels, NULL, NULL, NULL)) != 0)
      return rc;
    return (r->params = json_object()) ? 0 : SF_ENOMEM;
  }
  if (strcmp(f->name, "__schema") == 0 || strcmp(f->name, "__type") == 0)
    return invalid(err, f,
                   "Introspection is not served: the schema is "
                   "docs/parse-graphql.graphql.");
  for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
    bool one = strcmp(f->name, roots[i].one) == 0;
    if (one || strcmp(f->name, roots[i].list) == 0) {
      r->kind = one ? QRY_GQLM_ONE : QRY_GQLM_LIST;
      r->cls = qry_pq_class(roots[i].class_name);
    }
  }
  if (!r->cls)
    return invalid(err, f, "Cannot query field \"%s\" on type \"Query\".",
                   f->name);
  char inc[128];
  if (r->kind == QRY_GQLM_ONE) {
    const qry_gql_arg_t *id = NULL;
    for (const qry_gql_arg_t *a = f->args; a; a = a->next) {
      if (strcmp(a->name, "id") != 0)
        return invalid(err, f, "Unknown argument \"%s\" on field "
                               "\"Query.%s\".",
                       a->name, f->name);
      id = a;
    }
    json_t *v = NULL;
    if (!id)
      return invalid(err, f,
                     "Field \"%s\" argument \"id\" of type \"ID!\" is "
                     "required, but it was not provided.",
                     f->name);
    if ((rc = arg_json(id, op, vars, &v, err)) != 0)
      return rc;
    if (json_is_integer(v)) {
      snprintf(r->object_id, sizeof(r->object_id), "%lld",
               (long long)json_integer_value(v));
    } else if (!json_is_string(v)) {
      json_decref(v);
      return bad_arg(err, id, "ID");
    } else if (qry_gqlm_object_id(r->cls->name, json_string_value(v),
                                  r->object_id, sizeof(r->object_id)) != 0) {
      r->object_id[0] = '\0'; /* another class's: not found */
    }
    json_decref(v);
    if ((rc = branch(&w, f, r->cls->name)) != 0 ||
        (rc = node(&w, f->sels, r->cls, 0, NULL, NULL)) != 0)
      return rc;
    r->params = json_pack("{s:s}", "include",
                          include_text(r->cls, w.include, inc, sizeof(inc)));
    return r->params ? 0 : SF_ENOMEM;
  }
  json_t *where_in = NULL;
  char order[256] = "";
  char after[64] = "";
  r->first = -1;
  if ((rc = plan_list(op, f, vars, r, err, &where_in, order, sizeof(order),
                      after, sizeof(after))) != 0) {
    json_decref(where_in);
    return rc;
  }
  char conn_t[48];
  snprintf(conn_t, sizeof(conn_t), "%sConnection", r->cls->name);
  if ((rc = branch(&w, f, conn_t)) != 0 ||
      (rc = connection(&w, f->sels, r->cls, NULL, NULL, NULL)) != 0) {
    json_decref(where_in);
    return rc;
  }
  /* From here on, refusals are the field's (execution errors). */
  json_t *where = NULL;
  if (where_in) {
    rc = qry_gqlm_where(r->cls, where_in, &where, &r->code, err);
    json_decref(where_in);
    if (rc)
      return rc;
  }
  if (r->first < 0)
    r->first = QRY_GQLM_DEFAULT_FIRST;
  if (r->first > QRY_PQ_MAX_LIMIT || r->skip < 0) {
    json_decref(where);
    return refuse(&r->code, err, "first must be 0 to %d, skip at least 0",
                  QRY_PQ_MAX_LIMIT);
  }
  if (after[0]) {
    long long off = cursor_offset(after);
    if (off < 0) {
      json_decref(where);
      return refuse(&r->code, err, "after is not a cursor of this "
                                   "connection");
    }
    r->skip += off + 1;
  }
  /* One row more than asked tells hasNextPage; at the builder's limit the
   * count does. */
  long long limit = r->first + 1;
  r->with_count = w.count;
  if (limit > QRY_PQ_MAX_LIMIT) {
    limit = QRY_PQ_MAX_LIMIT;
    r->with_count = true;
  }
  r->params = json_pack("{s:I,s:I,s:i,s:s,s:s}", "limit", (json_int_t)limit,
                        "skip", (json_int_t)r->skip, "count",
                        r->with_count ? 1 : 0, "order", order, "include",
                        include_text(r->cls, w.include, inc, sizeof(inc)));
  if (!r->params || (where && json_object_set_new(r->params, "where", where))) {
    if (!r->params)
      json_decref(where);
    return SF_ENOMEM;
  }
  return 0;
}

int qry_gqlm_plan(const qry_gql_doc_t *doc, const qry_gql_op_t *op,
                  const qry_gql_sel_t *f, const json_t *vars,
                  qry_gqlm_root_t *r, qry_gql_error_t *err) {
  memset(r, 0, sizeof(*r));
  memset(err, 0, sizeof(*err));
  r->field = f;
  int rc = plan(doc, op, f, vars, r, err);
  if (rc == SF_EINVAL && !err->line) {
    err->line = f->line;
    err->col = f->col;
  }
  if (rc && rc != SF_EINVAL)
    qry_gqlm_root_free(r);
  return rc;
}

void qry_gqlm_root_free(qry_gqlm_root_t *r) {
  json_decref(r->params);
  json_decref(r->body);
  json_decref(r->client_id);
  r->params = r->body = r->client_id = NULL;
}

/* ---- answers ---- */

int qry_gqlm_shape_list(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                        const json_t *result, json_t **out) {
  qry_gql_error_t err;
  walk_t w = {.doc = doc, .err = &err};
  json_t *o = json_object();
  if (!o)
    return SF_ENOMEM;
  int rc = connection(&w, r->field->sels, r->cls, r, result, o);
  if (rc) {
    json_decref(o);
    return rc;
  }
  *out = o;
  return 0;
}

int qry_gqlm_shape_one(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                       const json_t *obj, json_t **out) {
  qry_gql_error_t err;
  walk_t w = {.doc = doc, .err = &err};
  json_t *o = json_object();
  if (!o)
    return SF_ENOMEM;
  int rc = node(&w, r->field->sels, r->cls, 0, obj, o);
  if (rc) {
    json_decref(o);
    return rc;
  }
  *out = o;
  return 0;
}

int qry_gqlm_shape_viewer(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                          const json_t *user, const char *session_token,
                          json_t **out) {
  qry_gql_error_t err;
  walk_t w = {.doc = doc, .err = &err};
  json_t *o = json_object();
  if (!o)
    return SF_ENOMEM;
  int rc = viewer(&w, r->field->sels, user, session_token, o);
  if (rc) {
    json_decref(o);
    return rc;
  }
  *out = o;
  return 0;
}

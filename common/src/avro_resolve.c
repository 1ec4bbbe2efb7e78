/* avro_resolve: Avro schema resolution with reader defaults
 * (sf/avro_resolve.h).
 *
 * A plan pairs writer and reader nodes in a flat table compiled once per
 * writer schema; a record pair is compiled once, which also closes
 * recursive types. Executing it walks the writer's generic value and fills
 * the reader's; each reader field the writer lacks is set from its default,
 * kept as the reader schema's JSON (borrowed from the sf_avro_reader). */
#include "sf/avro_resolve.h"
#include "sf/avro.h"
#include "sf/err.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The reader's record definitions by unqualified name, for the defaults. */
struct sf_avro_reader {
  json_t *root;          /* the reader schema's JSON, owned */
  const char **names;    /* borrowed from root */
  const json_t **fields; /* each record's "fields" array, borrowed */
  size_t n, cap;
  size_t text_bytes; /* sum of (length + 1) over every string in defaults */
};
typedef struct sf_avro_reader rdefs_t;

void sf_avro_reader_destroy(sf_avro_reader_t *d) {
  if (!d)
    return;
  free(d->names);
  free(d->fields);
  json_decref(d->root);
  free(d);
}

static const json_t *rdefs_fields(const rdefs_t *d, const char *name) {
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->names[i], name) == 0)
      return d->fields[i];
  return NULL;
}

/* Bytes that the strings of a default may add to a decoded event. */
static size_t json_text_bytes(const json_t *j, int depth) {
  size_t n = 0, i;
  const char *k;
  const json_t *x;
  if (depth > SF_AVRO_MAX_DEPTH)
    return 0;
  if (json_is_string(j))
    return json_string_length(j) + 1;
  if (json_is_array(j))
    json_array_foreach(j, i, x) n += json_text_bytes(x, depth + 1);
  if (json_is_object(j))
    json_object_foreach((json_t *)j, k, x) n += json_text_bytes(x, depth + 1);
  return n;
}

/* Collects the record definitions of schema JSON s. Two records with one
 * unqualified name are refused (SF_ESCHEMA): defaults are found by it. */
static int rdefs_collect(rdefs_t *d, const json_t *s, int depth) {
  size_t i;
  const json_t *x;
  if (depth > SF_AVRO_MAX_DEPTH)
    return SF_ESCHEMA;
  if (json_is_array(s)) {
    json_array_foreach(s, i, x) {
      int rc = rdefs_collect(d, x, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  }
  if (!json_is_object(s))
    return 0; /* a name or a primitive */
  const json_t *type = json_object_get(s, "type");
  if (!json_is_string(type))
    return rdefs_collect(d, type, depth + 1);
  const char *t = json_string_value(type);
  if (strcmp(t, "array") == 0)
    return rdefs_collect(d, json_object_get(s, "items"), depth + 1);
  if (strcmp(t, "map") == 0)
    return rdefs_collect(d, json_object_get(s, "values"), depth + 1);
  if (strcmp(t, "record") != 0 && strcmp(t, "error") != 0)
    return 0;
  const char *name = json_string_value(json_object_get(s, "name"));
  const json_t *fields = json_object_get(s, "fields");
  if (!name || !json_is_array(fields))
    return SF_ESCHEMA;
  const char *dot = strrchr(name, '.');
  name = dot ? dot + 1 : name;
  if (rdefs_fields(d, name))
    return SF_ESCHEMA;
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 16;
    const char **names = realloc(d->names, cap * sizeof(*names));
    if (!names)
      return SF_ENOMEM;
    d->names = names;
    const json_t **f = realloc(d->fields, cap * sizeof(*f));
    if (!f)
      return SF_ENOMEM;
    d->fields = f;
    d->cap = cap;
  }
  d->names[d->n] = name;
  d->fields[d->n] = fields;
  d->n++;
  json_array_foreach(fields, i, x) {
    const json_t *def = json_object_get(x, "default");
    if (def)
      d->text_bytes += json_text_bytes(def, 0);
    int rc = rdefs_collect(d, json_object_get(x, "type"), depth + 1);
    if (rc)
      return rc;
  }
  return 0;
}

static avro_schema_t unlink_schema(avro_schema_t s) {
  while (s && is_avro_link(s))
    s = avro_schema_link_target(s);
  return s;
}

/* avro-c status to ours: only running out of memory is not the input's
 * fault. */
static int av_err(int rc) {
  return rc == 0 ? 0 : rc == ENOMEM ? SF_ENOMEM
                                    : SF_EPARSE;
}

static bool ascii_only(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] > 0x7f)
      return false;
  return true;
}

/* Sets v (of schema s) to the JSON default j; with v NULL, only checks that
 * j is a valid default for s. Defaults of bytes and fixed must be ASCII
 * text (the only encoding of Avro's "code points 0-255" rule we accept).
 * Returns 0, SF_ESCHEMA (j does not fit s) or an av_err code. */
static int set_default(const rdefs_t *d, avro_value_t *v, avro_schema_t s,
                       const json_t *j, int depth) {
  s = unlink_schema(s);
  if (!s || !j || depth > SF_AVRO_MAX_DEPTH)
    return SF_ESCHEMA;
  avro_value_t child;
  const char *t = json_string_value(j);
  size_t tn = t ? json_string_length(j) : 0;
  int rc = 0;
  switch (avro_typeof(s)) {
  case AVRO_NULL:
    if (!json_is_null(j))
      return SF_ESCHEMA;
    return v ? av_err(avro_value_set_null(v)) : 0;
  case AVRO_BOOLEAN:
    if (!json_is_boolean(j))
      return SF_ESCHEMA;
    return v ? av_err(avro_value_set_boolean(v, json_is_true(j))) : 0;
  case AVRO_INT32:
    if (!json_is_integer(j) || json_integer_value(j) < INT32_MIN ||
        json_integer_value(j) > INT32_MAX)
      return SF_ESCHEMA;
    return v ? av_err(avro_value_set_int(v, (int32_t)json_integer_value(j)))
             : 0;
  case AVRO_INT64:
    if (!json_is_integer(j))
      return SF_ESCHEMA;
    return v ? av_err(avro_value_set_long(v, json_integer_value(j))) : 0;
  case AVRO_FLOAT:
  case AVRO_DOUBLE:
    if (!json_is_number(j))
      return SF_ESCHEMA;
    if (!v)
      return 0;
    return av_err(avro_typeof(s) == AVRO_FLOAT
                      ? avro_value_set_float(v, (float)json_number_value(j))
                      : avro_value_set_double(v, json_number_value(j)));
  case AVRO_STRING:
    if (!t || strlen(t) != tn) /* no NUL: decoded strings are C strings */
      return SF_ESCHEMA;
    return v ? av_err(avro_value_set_string_len(v, t, tn + 1)) : 0;
  case AVRO_BYTES:
  case AVRO_FIXED:
    if (!t || !ascii_only(t, tn) ||
        (avro_typeof(s) == AVRO_FIXED &&
         (int64_t)tn != avro_schema_fixed_size(s)))
      return SF_ESCHEMA;
    if (!v)
      return 0;
    return av_err(avro_typeof(s) == AVRO_BYTES
                      ? avro_value_set_bytes(v, (void *)t, tn)
                      : avro_value_set_fixed(v, (void *)t, tn));
  case AVRO_ENUM: {
    int sym = t ? avro_schema_enum_get_by_name(s, t) : -1;
    if (sym < 0)
      return SF_ESCHEMA;
    return v ? av_err(avro_value_set_enum(v, sym)) : 0;
  }
  case AVRO_UNION: /* a union's default is of its first branch */
    if (v && (rc = av_err(avro_value_set_branch(v, 0, &child))))
      return rc;
    return set_default(d, v ? &child : NULL, avro_schema_union_branch(s, 0),
                       j, depth + 1);
  case AVRO_RECORD: {
    if (!json_is_object(j))
      return SF_ESCHEMA;
    const json_t *fields = rdefs_fields(d, avro_schema_name(s));
    for (size_t i = 0; i < avro_schema_record_size(s); i++) {
      const json_t *fj =
          json_object_get(j, avro_schema_record_field_name(s, (int)i));
      if (!fj) /* a field left out takes its own default */
        fj = json_object_get(json_array_get(fields, i), "default");
      if (v && (rc = av_err(avro_value_get_by_index(v, i, &child, NULL))))
        return rc;
      if ((rc = set_default(d, v ? &child : NULL,
                            avro_schema_record_field_get_by_index(s, (int)i),
                            fj, depth + 1)))
        return rc;
    }
    return 0;
  }
  case AVRO_ARRAY: {
    size_t i;
    const json_t *x;
    if (!json_is_array(j))
      return SF_ESCHEMA;
    json_array_foreach(j, i, x) {
      if (v && (rc = av_err(avro_value_append(v, &child, NULL))))
        return rc;
      if ((rc = set_default(d, v ? &child : NULL, avro_schema_array_items(s),
                            x, depth + 1)))
        return rc;
    }
    return 0;
  }
  case AVRO_MAP: {
    const char *k;
    const json_t *x;
    if (!json_is_object(j))
      return SF_ESCHEMA;
    json_object_foreach((json_t *)j, k, x) {
      if (v && (rc = av_err(avro_value_add(v, k, &child, NULL, NULL))))
        return rc;
      if ((rc = set_default(d, v ? &child : NULL, avro_schema_map_values(s), x,
                            depth + 1)))
        return rc;
    }
    return 0;
  }
  default:
    return SF_ESCHEMA;
  }
}

typedef enum rkind {
  RK_PRIM,
  RK_FIXED,
  RK_ENUM,
  RK_RECORD,
  RK_ARRAY,
  RK_MAP,
  RK_WUNION,
  RK_RUNION
} rkind_t;

/* One (writer, reader) pair. RECORD: kids[first .. first + n), one per
 * reader field; ENUM and WUNION: one kid per writer symbol or branch (the
 * reader symbol or the pair's node, -1 when the reader has none); ARRAY and
 * MAP: kids[first] is the items' pair; RUNION (the writer is not a union,
 * the reader is): reader branch n, kids[first] the pair for it; PRIM: a
 * copy from wtype to rtype. */
typedef struct rnode {
  rkind_t kind;
  avro_type_t wtype, rtype;
  uint32_t first, n;
} rnode_t;

typedef struct rkid {
  int32_t to;            /* node or reader symbol, -1 for none */
  int32_t widx;          /* RECORD: the writer's field, -1 to take the default */
  const json_t *def;     /* RECORD, widx -1: the default (borrowed from rdefs) */
  avro_schema_t rschema; /* RECORD, widx -1: the reader field's schema */
} rkid_t;

struct sf_avro_plan {
  rnode_t *nodes;
  rkid_t *kids;
  avro_schema_t *memo_w, *memo_r; /* the pair each node stands for */
  size_t n_nodes, cap_nodes, n_kids, cap_kids;
  const sf_avro_reader_t *defs; /* borrowed */
};
typedef struct sf_avro_plan rplan_t;

void sf_avro_plan_destroy(sf_avro_plan_t *p) {
  if (!p)
    return;
  free(p->nodes);
  free(p->kids);
  free(p->memo_w);
  free(p->memo_r);
  free(p);
}

static int rplan_add(rplan_t *p, avro_schema_t w, avro_schema_t r, size_t n,
                     uint32_t *idx) {
  if (p->n_nodes == p->cap_nodes) {
    size_t cap = p->cap_nodes ? p->cap_nodes * 2 : 64;
    rnode_t *nodes = realloc(p->nodes, cap * sizeof(*nodes));
    if (!nodes)
      return SF_ENOMEM;
    p->nodes = nodes;
    avro_schema_t *mw = realloc(p->memo_w, cap * sizeof(*mw));
    if (!mw)
      return SF_ENOMEM;
    p->memo_w = mw;
    avro_schema_t *mr = realloc(p->memo_r, cap * sizeof(*mr));
    if (!mr)
      return SF_ENOMEM;
    p->memo_r = mr;
    p->cap_nodes = cap;
  }
  if (p->n_kids + n > p->cap_kids) {
    size_t cap = p->cap_kids ? p->cap_kids * 2 : 64;
    while (cap < p->n_kids + n)
      cap *= 2;
    rkid_t *kids = realloc(p->kids, cap * sizeof(*kids));
    if (!kids)
      return SF_ENOMEM;
    p->kids = kids;
    p->cap_kids = cap;
  }
  *idx = (uint32_t)p->n_nodes;
  p->nodes[*idx] = (rnode_t){RK_PRIM, AVRO_NULL, AVRO_NULL,
                             (uint32_t)p->n_kids, (uint32_t)n};
  p->memo_w[*idx] = w;
  p->memo_r[*idx] = r;
  for (size_t i = 0; i < n; i++)
    p->kids[p->n_kids + i] = (rkid_t){-1, -1, NULL, NULL};
  p->n_kids += n;
  p->n_nodes++;
  return 0;
}

/* Avro's promotions, and equal primitive types. */
static bool prim_promotes(avro_type_t w, avro_type_t r) {
  if (w == r)
    return true;
  switch (w) {
  case AVRO_INT32:
    return r == AVRO_INT64 || r == AVRO_FLOAT || r == AVRO_DOUBLE;
  case AVRO_INT64:
    return r == AVRO_FLOAT || r == AVRO_DOUBLE;
  case AVRO_FLOAT:
    return r == AVRO_DOUBLE;
  case AVRO_STRING:
    return r == AVRO_BYTES;
  case AVRO_BYTES:
    return r == AVRO_STRING;
  default:
    return false;
  }
}

/* The shallow test of Avro's resolution rules (and of picking a reader
 * union branch): same kind and name; the contents are checked when the pair
 * is compiled. Neither schema is a link or a union. */
static bool r_match(avro_schema_t w, avro_schema_t r) {
  avro_type_t wt = avro_typeof(w), rt = avro_typeof(r);
  if (is_avro_named_type(w))
    return wt == rt && strcmp(avro_schema_name(w), avro_schema_name(r)) == 0 &&
           (wt != AVRO_FIXED ||
            avro_schema_fixed_size(w) == avro_schema_fixed_size(r));
  if (wt == AVRO_ARRAY || wt == AVRO_MAP)
    return wt == rt;
  return is_avro_primitive(w) && is_avro_primitive(r) && prim_promotes(wt, rt);
}

/* The first branch of reader union r that writer w (not a union) matches,
 * or -1. */
static int r_branch(avro_schema_t w, avro_schema_t r) {
  for (size_t i = 0; i < avro_schema_union_size(r); i++) {
    avro_schema_t b = unlink_schema(avro_schema_union_branch(r, (int)i));
    if (b && !is_avro_union(b) && r_match(w, b))
      return (int)i;
  }
  return -1;
}

/* Compiles the pair (w, r) into p; *idx is its node. Returns 0, SF_ENOMEM or
 * SF_ESCHEMA (the writer does not resolve to the reader). */
static int rplan_compile(rplan_t *p, const rdefs_t *d, avro_schema_t w,
                         avro_schema_t r, int depth, uint32_t *idx) {
  w = unlink_schema(w);
  r = unlink_schema(r);
  if (!w || !r || depth > SF_AVRO_MAX_DEPTH)
    return SF_ESCHEMA;
  if (is_avro_record(w)) /* a second use, or a recursive one */
    for (size_t i = 0; i < p->n_nodes; i++)
      if (p->memo_w[i] == w && p->memo_r[i] == r) {
        *idx = (uint32_t)i;
        return 0;
      }
  rkind_t kind;
  size_t n = 0;
  uint32_t rbranch = 0;
  if (is_avro_union(w)) {
    kind = RK_WUNION;
    n = avro_schema_union_size(w);
  } else if (is_avro_union(r)) {
    int b = r_branch(w, r);
    if (b < 0)
      return SF_ESCHEMA;
    kind = RK_RUNION;
    n = 1;
    rbranch = (uint32_t)b;
  } else if (!r_match(w, r)) {
    return SF_ESCHEMA;
  } else if (is_avro_record(w)) {
    kind = RK_RECORD;
    n = avro_schema_record_size(r);
  } else if (is_avro_enum(w)) {
    kind = RK_ENUM;
    n = (size_t)avro_schema_enum_number_of_symbols(w);
  } else if (is_avro_array(w) || is_avro_map(w)) {
    kind = is_avro_array(w) ? RK_ARRAY : RK_MAP;
    n = 1;
  } else {
    kind = is_avro_fixed(w) ? RK_FIXED : RK_PRIM;
  }
  int rc = rplan_add(p, w, r, n, idx);
  if (rc)
    return rc;
  uint32_t me = *idx, first = p->nodes[me].first, child;
  p->nodes[me].kind = kind;
  p->nodes[me].wtype = avro_typeof(w);
  p->nodes[me].rtype = avro_typeof(r);
  const json_t *rfields =
      kind == RK_RECORD ? rdefs_fields(d, avro_schema_name(r)) : NULL;
  for (size_t i = 0; i < n; i++) {
    rkid_t *k = &p->kids[first + i];
    switch (kind) {
    case RK_WUNION: {
      /* a writer branch without a reader match fails only when used */
      avro_schema_t b = unlink_schema(avro_schema_union_branch(w, (int)i));
      if (!b || is_avro_union(b))
        return SF_ESCHEMA;
      if (is_avro_union(r) ? r_branch(b, r) < 0 : !r_match(b, r))
        continue;
      if ((rc = rplan_compile(p, d, b, r, depth + 1, &child)))
        return rc;
      p->kids[first + i].to = (int32_t)child;
      break;
    }
    case RK_RUNION:
      if ((rc = rplan_compile(p, d, w,
                              avro_schema_union_branch(r, (int)rbranch),
                              depth + 1, &child)))
        return rc;
      p->nodes[me].n = rbranch;
      p->kids[first].to = (int32_t)child;
      break;
    case RK_ENUM:
      k->to = avro_schema_enum_get_by_name(r, avro_schema_enum_get(w, (int)i));
      break;
    case RK_ARRAY:
    case RK_MAP:
      if ((rc = rplan_compile(p, d,
                              kind == RK_ARRAY ? avro_schema_array_items(w)
                                               : avro_schema_map_values(w),
                              kind == RK_ARRAY ? avro_schema_array_items(r)
                                               : avro_schema_map_values(r),
                              depth + 1, &child)))
        return rc;
      p->kids[first].to = (int32_t)child;
      break;
    default: { /* RK_RECORD */
      const char *name = avro_schema_record_field_name(r, (int)i);
      avro_schema_t rf = avro_schema_record_field_get_by_index(r, (int)i);
      int wi = avro_schema_record_field_get_index(w, name);
      if (wi < 0) {
        const json_t *def =
            json_object_get(json_array_get(rfields, i), "default");
        if (!def || set_default(d, NULL, rf, def, 0))
          return SF_ESCHEMA; /* a new field without a (valid) default */
        *k = (rkid_t){-1, -1, def, rf};
        break;
      }
      if ((rc = rplan_compile(p, d,
                              avro_schema_record_field_get_by_index(w, wi), rf,
                              depth + 1, &child)))
        return rc;
      p->kids[first + i] = (rkid_t){(int32_t)child, wi, NULL, NULL};
      break;
    }
    }
  }
  return 0;
}

/* Copies a primitive from the writer's value to the reader's, promoting. */
static int copy_prim(avro_type_t wt, avro_type_t rt, avro_value_t *w,
                     avro_value_t *r) {
  int32_t i32;
  int64_t i64;
  float f;
  double x;
  int b;
  const char *s;
  const void *buf;
  size_t size;
  switch (wt) {
  case AVRO_NULL:
    return av_err(avro_value_set_null(r));
  case AVRO_BOOLEAN:
    return av_err(avro_value_get_boolean(w, &b) ||
                  avro_value_set_boolean(r, b));
  case AVRO_INT32:
    if (avro_value_get_int(w, &i32))
      return SF_EPARSE;
    return av_err(rt == AVRO_INT32   ? avro_value_set_int(r, i32)
                  : rt == AVRO_INT64 ? avro_value_set_long(r, i32)
                  : rt == AVRO_FLOAT ? avro_value_set_float(r, (float)i32)
                                     : avro_value_set_double(r, i32));
  case AVRO_INT64:
    if (avro_value_get_long(w, &i64))
      return SF_EPARSE;
    return av_err(rt == AVRO_INT64   ? avro_value_set_long(r, i64)
                  : rt == AVRO_FLOAT ? avro_value_set_float(r, (float)i64)
                                     : avro_value_set_double(r, (double)i64));
  case AVRO_FLOAT:
    if (avro_value_get_float(w, &f))
      return SF_EPARSE;
    return av_err(rt == AVRO_FLOAT ? avro_value_set_float(r, f)
                                   : avro_value_set_double(r, f));
  case AVRO_DOUBLE:
    return av_err(avro_value_get_double(w, &x) || avro_value_set_double(r, x));
  case AVRO_STRING:
    if (avro_value_get_string(w, &s, &size) || size == 0)
      return SF_EPARSE;
    return av_err(rt == AVRO_STRING ? avro_value_set_string_len(r, s, size)
                                    : avro_value_set_bytes(r, (void *)s,
                                                           size - 1));
  case AVRO_BYTES: {
    if (avro_value_get_bytes(w, &buf, &size))
      return SF_EPARSE;
    if (rt == AVRO_BYTES)
      return av_err(avro_value_set_bytes(r, (void *)buf, size));
    /* bytes read as a string: the walk checked neither NUL nor UTF-8 */
    if (memchr(buf, 0, size) || !sf_avro_utf8_valid(buf, size))
      return SF_EPARSE;
    char *t = malloc(size + 1);
    if (!t)
      return SF_ENOMEM;
    memcpy(t, buf, size);
    t[size] = '\0';
    int rc = av_err(avro_value_set_string_len(r, t, size + 1));
    free(t);
    return rc;
  }
  default:
    return SF_EPARSE;
  }
}

/* Copies writer value w into reader value r (reset) along node idx. */
static int rplan_exec(const rplan_t *p, const rdefs_t *d, uint32_t idx,
                      avro_value_t *w, avro_value_t *r, int depth) {
  if (depth > SF_AVRO_MAX_DEPTH)
    return SF_EPARSE;
  const rnode_t *node = &p->nodes[idx];
  const rkid_t *k = &p->kids[node->first];
  avro_value_t wc, rc_;
  const void *buf;
  const char *key;
  size_t size;
  int x, rc;
  switch (node->kind) {
  case RK_PRIM:
    return copy_prim(node->wtype, node->rtype, w, r);
  case RK_FIXED:
    if (avro_value_get_fixed(w, &buf, &size))
      return SF_EPARSE;
    return av_err(avro_value_set_fixed(r, (void *)buf, size));
  case RK_ENUM:
    if (avro_value_get_enum(w, &x) || x < 0 || (uint32_t)x >= node->n)
      return SF_EPARSE;
    if (k[x].to < 0)
      return SF_ESCHEMA; /* a symbol the reader does not know */
    return av_err(avro_value_set_enum(r, k[x].to));
  case RK_RECORD:
    for (uint32_t i = 0; i < node->n; i++) {
      if ((rc = av_err(avro_value_get_by_index(r, i, &rc_, NULL))))
        return rc;
      if (k[i].widx < 0)
        rc = set_default(d, &rc_, k[i].rschema, k[i].def, 0);
      else if (!(rc = av_err(avro_value_get_by_index(w, (size_t)k[i].widx,
                                                     &wc, NULL))))
        rc = rplan_exec(p, d, (uint32_t)k[i].to, &wc, &rc_, depth + 1);
      if (rc)
        return rc;
    }
    return 0;
  case RK_ARRAY:
  case RK_MAP:
    if (avro_value_get_size(w, &size))
      return SF_EPARSE;
    for (size_t i = 0; i < size; i++) {
      key = NULL;
      if ((rc = av_err(avro_value_get_by_index(w, i, &wc, &key))) ||
          (rc = av_err(node->kind == RK_ARRAY
                           ? avro_value_append(r, &rc_, NULL)
                           : avro_value_add(r, key, &rc_, NULL, NULL))) ||
          (rc = rplan_exec(p, d, (uint32_t)k[0].to, &wc, &rc_, depth + 1)))
        return rc;
    }
    return 0;
  case RK_WUNION:
    if (avro_value_get_discriminant(w, &x) ||
        avro_value_get_current_branch(w, &wc) || x < 0 ||
        (uint32_t)x >= node->n)
      return SF_EPARSE;
    if (k[x].to < 0)
      return SF_ESCHEMA; /* e.g. an event type the reader does not know */
    return rplan_exec(p, d, (uint32_t)k[x].to, &wc, r, depth + 1);
  case RK_RUNION:
    if ((rc = av_err(avro_value_set_branch(r, (int)node->n, &rc_))))
      return rc;
    return rplan_exec(p, d, (uint32_t)k[0].to, w, &rc_, depth + 1);
  }
  return SF_EPARSE;
}

int sf_avro_reader_new(const char *json, size_t len, sf_avro_reader_t **out) {
  *out = NULL;
  sf_avro_reader_t *d = calloc(1, sizeof(*d));
  if (!d)
    return SF_ENOMEM;
  json_error_t jerr;
  d->root = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
  int rc = d->root ? rdefs_collect(d, d->root, 0) : SF_ESCHEMA;
  if (rc) {
    sf_avro_reader_destroy(d);
    return rc;
  }
  *out = d;
  return 0;
}

size_t sf_avro_reader_default_text_bytes(const sf_avro_reader_t *r) {
  return r->text_bytes;
}

int sf_avro_reader_fill_defaults(const sf_avro_reader_t *r,
                                 avro_value_t *rec) {
  avro_schema_t s = avro_value_get_schema(rec);
  const json_t *fields = s ? rdefs_fields(r, avro_schema_name(s)) : NULL;
  avro_value_t f;
  for (size_t i = 0; fields && i < avro_schema_record_size(s); i++) {
    const json_t *def = json_object_get(json_array_get(fields, i), "default");
    if (!def)
      continue;
    if (avro_value_get_by_index(rec, i, &f, NULL))
      return SF_EINVAL;
    int rc = set_default(r, &f,
                         avro_schema_record_field_get_by_index(s, (int)i), def,
                         0);
    if (rc)
      return rc == SF_ENOMEM ? SF_ENOMEM : SF_EINVAL;
  }
  return 0;
}

int sf_avro_plan_new(const sf_avro_reader_t *defs, avro_schema_t writer,
                     avro_schema_t reader_schema, sf_avro_plan_t **out) {
  *out = NULL;
  sf_avro_plan_t *p = calloc(1, sizeof(*p));
  if (!p)
    return SF_ENOMEM;
  p->defs = defs;
  uint32_t root = 0;
  int rc = rplan_compile(p, defs, writer, reader_schema, 0, &root);
  if (rc) {
    sf_avro_plan_destroy(p);
    return rc;
  }
  *out = p; /* root is node 0 */
  return 0;
}

int sf_avro_plan_exec(const sf_avro_plan_t *p, avro_value_t *w,
                      avro_value_t *r) {
  return rplan_exec(p, p->defs, 0, w, r, 0);
}

/* avro: CRC-64-AVRO, the Parsing Canonical Form and the bounds-checking
 * walk of a binary datum (sf/avro.h).
 *
 * The canonical form is built as a jansson tree (objects keep insertion
 * order) and dumped compactly. The walk is a flat node table compiled from
 * an avro-c schema: named types are compiled once, which also closes
 * recursive types, and each node knows the fewest bytes any datum of it
 * takes, so a count of items is refused before the first item is read. */
#include "sf/avro.h"
#include "sf/err.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC-64-AVRO ------------------------------------------------------ */

#define SF__CRC64_EMPTY UINT64_C(0xc15d213aa4d7a795)

/* The table is built per call exactly as the Avro specification's reference
 * code builds it (2048 shifts): fingerprints are computed once per codec, so
 * a 2 KiB constant table would buy nothing. */
uint64_t sf_avro_crc64(const void *bytes, size_t len) {
  uint64_t table[256];
  for (uint64_t i = 0; i < 256; i++) {
    uint64_t fp = i;
    for (int j = 0; j < 8; j++)
      fp = (fp >> 1) ^ (SF__CRC64_EMPTY & (0 - (fp & 1)));
    table[i] = fp;
  }
  const uint8_t *p = bytes;
  uint64_t fp = SF__CRC64_EMPTY;
  for (size_t i = 0; i < len; i++)
    fp = (fp >> 8) ^ table[(fp ^ p[i]) & 0xff];
  return fp;
}

/* ---- Parsing Canonical Form (Avro spec, "Transforming into Parsing
 * Canonical Form"): primitives in simple form, full names, only the
 * attributes name, type, fields, symbols, items, values, size in that order,
 * no whitespace. Built as a jansson tree (objects keep insertion order) and
 * dumped compactly. ---------------------------------------------------- */

static bool pcf_is_primitive(const char *t) {
  static const char *const prim[] = {"null", "boolean", "int", "long",
                                     "float", "double", "bytes", "string"};
  for (size_t i = 0; i < sizeof(prim) / sizeof(prim[0]); i++)
    if (strcmp(t, prim[i]) == 0)
      return true;
  return false;
}

/* Full name of name in namespace ns, malloc'd. */
static char *pcf_fullname(const char *name, const char *ns) {
  size_t nl = strlen(name), sl = ns ? strlen(ns) : 0;
  bool qualify = !strchr(name, '.') && sl > 0;
  char *out = malloc(nl + (qualify ? sl + 1 : 0) + 1);
  if (!out)
    return NULL;
  if (qualify) {
    memcpy(out, ns, sl);
    out[sl] = '.';
    memcpy(out + sl + 1, name, nl + 1);
  } else {
    memcpy(out, name, nl + 1);
  }
  return out;
}

static json_t *pcf_node(const json_t *s, const char *ns, int depth);

/* Named types: record, enum, fixed. */
static json_t *pcf_named(const json_t *s, const char *type, const char *ns,
                         int depth) {
  const char *name = json_string_value(json_object_get(s, "name"));
  const char *own_ns = json_string_value(json_object_get(s, "namespace"));
  if (!name)
    return NULL;
  char *full = pcf_fullname(name, own_ns ? own_ns : ns);
  if (!full)
    return NULL;
  json_t *out = json_object();
  char *dot = strrchr(full, '.');
  /* The enclosing namespace of everything nested is this type's own. */
  char *inner_ns = dot ? strndup(full, (size_t)(dot - full)) : strdup("");
  if (!out || !inner_ns ||
      json_object_set_new(out, "name", json_string(full)) ||
      json_object_set_new(out, "type", json_string(type)))
    goto fail;
  if (strcmp(type, "record") == 0) {
    const json_t *fields = json_object_get(s, "fields");
    json_t *ofields = json_is_array(fields) ? json_array() : NULL;
    /* json_object_set_new takes ofields even when it fails */
    if (!ofields || json_object_set_new(out, "fields", ofields))
      goto fail;
    size_t i;
    const json_t *f;
    json_array_foreach(fields, i, f) {
      const json_t *fname = json_object_get(f, "name");
      json_t *of = json_object();
      if (!of || json_array_append_new(ofields, of) || !json_is_string(fname) ||
          json_object_set_new(of, "name", json_copy((json_t *)fname)) ||
          json_object_set_new(
              of, "type",
              pcf_node(json_object_get(f, "type"), inner_ns, depth + 1)))
        goto fail;
    }
  } else if (strcmp(type, "enum") == 0) {
    const json_t *sym = json_object_get(s, "symbols");
    if (!json_is_array(sym) ||
        json_object_set_new(out, "symbols", json_deep_copy(sym)))
      goto fail;
  } else {
    const json_t *size = json_object_get(s, "size");
    if (!json_is_integer(size) ||
        json_object_set_new(out, "size",
                            json_integer(json_integer_value(size))))
      goto fail;
  }
  free(inner_ns);
  free(full);
  return out;
fail:
  json_decref(out);
  free(inner_ns);
  free(full);
  return NULL;
}

static json_t *pcf_node(const json_t *s, const char *ns, int depth) {
  if (!s || depth > SF_AVRO_MAX_DEPTH)
    return NULL;
  if (json_is_string(s)) {
    const char *t = json_string_value(s);
    if (pcf_is_primitive(t))
      return json_string(t);
    char *full = pcf_fullname(t, ns);
    json_t *out = full ? json_string(full) : NULL;
    free(full);
    return out;
  }
  if (json_is_array(s)) {
    json_t *out = json_array();
    size_t i;
    const json_t *b;
    json_array_foreach(s, i, b) {
      if (!out || json_array_append_new(out, pcf_node(b, ns, depth + 1))) {
        json_decref(out);
        return NULL;
      }
    }
    return out;
  }
  if (!json_is_object(s))
    return NULL;
  const json_t *type = json_object_get(s, "type");
  if (!json_is_string(type)) /* {"type": {...}} or {"type": [...]} */
    return pcf_node(type, ns, depth + 1);
  const char *t = json_string_value(type);
  if (pcf_is_primitive(t)) /* drops logicalType and the like */
    return json_string(t);
  if (strcmp(t, "record") == 0 || strcmp(t, "enum") == 0 ||
      strcmp(t, "fixed") == 0)
    return pcf_named(s, t, ns, depth);
  bool arr = strcmp(t, "array") == 0;
  if (!arr && strcmp(t, "map") != 0) /* a reference written as an object */
    return pcf_node(type, ns, depth + 1);
  const char *key = arr ? "items" : "values";
  json_t *out = json_object();
  if (!out || json_object_set_new(out, "type", json_string(t)) ||
      json_object_set_new(out, key,
                          pcf_node(json_object_get(s, key), ns, depth + 1))) {
    json_decref(out);
    return NULL;
  }
  return out;
}

/* Canonical form of schema text, malloc'd; NULL on a malformed schema or
 * out of memory. */
static char *pcf_of_text(const char *text, size_t len) {
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
  if (!root)
    return NULL;
  json_t *canon = pcf_node(root, "", 0);
  char *out = canon ? json_dumps(canon, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(canon);
  json_decref(root);
  return out;
}

int sf_avro_canonical_form(const char *json, size_t len, char **out) {
  *out = pcf_of_text(json, len);
  return *out ? 0 : SF_ESCHEMA;
}

int sf_avro_schema_fingerprint(const char *json, size_t len, uint64_t *out) {
  char *canon = pcf_of_text(json, len);
  if (!canon)
    return SF_ESCHEMA;
  *out = sf_avro_crc64(canon, strlen(canon));
  free(canon);
  return 0;
}

void sf_avro_fingerprint_bytes(uint64_t fp, uint8_t out[8]) {
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(fp >> (8 * i));
}

/* ---- the validation walk ---------------------------------------------- */

typedef enum vkind {
  VK_NULL,
  VK_BOOLEAN,
  VK_INT,
  VK_LONG,
  VK_FLOAT,
  VK_DOUBLE,
  VK_STRING,
  VK_BYTES,
  VK_FIXED,
  VK_ENUM,
  VK_RECORD,
  VK_UNION,
  VK_ARRAY,
  VK_MAP
} vkind_t;

/* One schema node. RECORD and UNION: children kids[first .. first + n);
 * ARRAY and MAP: first is the item node; ENUM: n symbols; FIXED: n bytes.
 * min is the fewest bytes any datum of the node takes. */
typedef struct vnode {
  vkind_t kind;
  uint32_t first, n;
  size_t min;
} vnode_t;

struct sf_avro_walk {
  vnode_t *nodes;
  uint32_t *kids;
  avro_schema_t *named; /* schema of each node, to reuse named types */
  size_t n_nodes, cap_nodes, n_kids, cap_kids;
  uint32_t root;
};

void sf_avro_walk_destroy(sf_avro_walk_t *w) {
  if (!w)
    return;
  free(w->nodes);
  free(w->kids);
  free(w->named);
  free(w);
}

static int vprog_add_node(sf_avro_walk_t *p, avro_schema_t s, uint32_t *idx) {
  if (p->n_nodes == p->cap_nodes) {
    size_t cap = p->cap_nodes ? p->cap_nodes * 2 : 64;
    vnode_t *nodes = realloc(p->nodes, cap * sizeof(*nodes));
    if (!nodes)
      return SF_ENOMEM;
    p->nodes = nodes;
    avro_schema_t *named = realloc(p->named, cap * sizeof(*named));
    if (!named)
      return SF_ENOMEM;
    p->named = named;
    p->cap_nodes = cap;
  }
  *idx = (uint32_t)p->n_nodes;
  memset(&p->nodes[*idx], 0, sizeof(vnode_t));
  p->named[*idx] = s;
  p->n_nodes++;
  return 0;
}

static int vprog_add_kids(sf_avro_walk_t *p, size_t n, uint32_t *first) {
  if (p->n_kids + n > p->cap_kids) {
    size_t cap = p->cap_kids ? p->cap_kids * 2 : 64;
    while (cap < p->n_kids + n)
      cap *= 2;
    uint32_t *kids = realloc(p->kids, cap * sizeof(*kids));
    if (!kids)
      return SF_ENOMEM;
    p->kids = kids;
    p->cap_kids = cap;
  }
  *first = (uint32_t)p->n_kids;
  p->n_kids += n;
  return 0;
}

/* Compiles schema s into p; *idx is its node. Named types are compiled once
 * (a second reference reuses the node, which also closes recursive types). */
static int vprog_compile(sf_avro_walk_t *p, avro_schema_t s, int depth,
                         uint32_t *idx) {
  if (!s || depth > SF_AVRO_MAX_DEPTH)
    return SF_ESCHEMA;
  if (avro_typeof(s) == AVRO_LINK)
    s = avro_schema_link_target(s);
  if (is_avro_named_type(s)) {
    for (size_t i = 0; i < p->n_nodes; i++) {
      if (p->named[i] == s) {
        *idx = (uint32_t)i;
        return 0;
      }
    }
  }
  int rc = vprog_add_node(p, s, idx);
  if (rc)
    return rc;
  uint32_t me = *idx, first = 0, child = 0;
  size_t n = 0, min = 0;
  vkind_t kind;
  switch (avro_typeof(s)) {
  case AVRO_NULL: kind = VK_NULL; break;
  case AVRO_BOOLEAN:
    kind = VK_BOOLEAN;
    min = 1;
    break;
  case AVRO_INT32:
    kind = VK_INT;
    min = 1;
    break;
  case AVRO_INT64:
    kind = VK_LONG;
    min = 1;
    break;
  case AVRO_FLOAT:
    kind = VK_FLOAT;
    min = 4;
    break;
  case AVRO_DOUBLE:
    kind = VK_DOUBLE;
    min = 8;
    break;
  case AVRO_STRING:
    kind = VK_STRING;
    min = 1;
    break;
  case AVRO_BYTES:
    kind = VK_BYTES;
    min = 1;
    break;
  case AVRO_FIXED:
    kind = VK_FIXED;
    if (avro_schema_fixed_size(s) < 0 ||
        avro_schema_fixed_size(s) > SF_AVRO_MAX_FIXED)
      return SF_ESCHEMA;
    n = min = (size_t)avro_schema_fixed_size(s);
    break;
  case AVRO_ENUM:
    kind = VK_ENUM;
    min = 1;
    if (avro_schema_enum_number_of_symbols(s) <= 0)
      return SF_ESCHEMA;
    n = (size_t)avro_schema_enum_number_of_symbols(s);
    break;
  case AVRO_ARRAY:
  case AVRO_MAP:
    kind = avro_typeof(s) == AVRO_ARRAY ? VK_ARRAY : VK_MAP;
    min = 1;
    rc = vprog_compile(p,
                       kind == VK_ARRAY ? avro_schema_array_items(s)
                                        : avro_schema_map_values(s),
                       depth + 1, &child);
    if (rc)
      return rc;
    first = child;
    break;
  case AVRO_RECORD:
  case AVRO_UNION:
    kind = avro_typeof(s) == AVRO_RECORD ? VK_RECORD : VK_UNION;
    n = kind == VK_RECORD ? avro_schema_record_size(s)
                          : avro_schema_union_size(s);
    if (kind == VK_UNION && n == 0)
      return SF_ESCHEMA;
    rc = vprog_add_kids(p, n, &first);
    if (rc)
      return rc;
    min = kind == VK_UNION ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
      avro_schema_t k =
          kind == VK_RECORD
              ? avro_schema_record_field_get_by_index(s, (int)i)
              : avro_schema_union_branch(s, (int)i);
      rc = vprog_compile(p, k, depth + 1, &child);
      if (rc)
        return rc;
      p->kids[first + i] = child;
      /* a recursive reference may still be under construction (min 0) */
      if (kind == VK_RECORD)
        min += p->nodes[child].min;
    }
    break;
  default:
    return SF_ESCHEMA;
  }
  vnode_t *node = &p->nodes[me]; /* p->nodes may have moved */
  node->kind = kind;
  node->first = first;
  node->n = (uint32_t)n;
  node->min = min;
  return 0;
}

typedef struct vstate {
  const uint8_t *p, *end;
  size_t items; /* array and map items so far, at most max_items */
  size_t max_items;
} vstate_t;

/* Reads one zig-zag varint: at most 10 bytes, and the 10th may only carry
 * bit 63. */
static int v_long(vstate_t *v, int64_t *out) {
  uint64_t u = 0;
  for (int i = 0; i < 10; i++) {
    if (v->p == v->end)
      return SF_ETRUNCATED;
    uint8_t b = *v->p++;
    if (i == 9 && b > 1)
      return SF_EPARSE;
    u |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *out = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
      return 0;
    }
  }
  return SF_EPARSE; /* unreachable: the 10th byte is <= 1 */
}

static int v_skip(vstate_t *v, size_t n) {
  if ((size_t)(v->end - v->p) < n)
    return SF_ETRUNCATED;
  v->p += n;
  return 0;
}

bool sf_avro_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len)
      return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

static int v_bytes(vstate_t *v, bool text) {
  int64_t n;
  int rc = v_long(v, &n);
  if (rc)
    return rc;
  if (n < 0)
    return SF_EPARSE;
  if ((uint64_t)n > (size_t)(v->end - v->p))
    return SF_ETRUNCATED;
  /* sf_event_t strings are C strings: an embedded NUL would cut them */
  if (text && (memchr(v->p, 0, (size_t)n) || !sf_avro_utf8_valid(v->p, (size_t)n)))
    return SF_EPARSE;
  v->p += n;
  return 0;
}

static int v_walk(const sf_avro_walk_t *p, vstate_t *v, uint32_t idx, int depth);

/* Arrays and maps: blocks of count items (a negative count is followed by
 * the block's byte size), ended by a zero count. */
static int v_blocks(const sf_avro_walk_t *p, vstate_t *v, const vnode_t *node,
                    int depth) {
  size_t item_min = p->nodes[node->first].min + (node->kind == VK_MAP);
  for (;;) {
    int64_t count, size = -1;
    int rc = v_long(v, &count);
    if (rc)
      return rc;
    if (count == 0)
      return 0;
    if (count < 0) {
      if (count == INT64_MIN)
        return SF_EPARSE;
      count = -count;
      if ((rc = v_long(v, &size)))
        return rc;
      if (size < 0)
        return SF_EPARSE;
      if ((uint64_t)size > (size_t)(v->end - v->p))
        return SF_ETRUNCATED;
    }
    size_t left = (size_t)(v->end - v->p);
    if (item_min > 0 && (uint64_t)count > left / item_min)
      return SF_ETRUNCATED;
    if ((uint64_t)count > v->max_items - v->items)
      return SF_ETOOBIG;
    v->items += (size_t)count;
    const uint8_t *start = v->p;
    for (int64_t i = 0; i < count; i++) {
      if (node->kind == VK_MAP && (rc = v_bytes(v, true)))
        return rc;
      if ((rc = v_walk(p, v, node->first, depth + 1)))
        return rc;
    }
    if (size >= 0 && v->p - start != size)
      return SF_EPARSE;
  }
}

static int v_walk(const sf_avro_walk_t *p, vstate_t *v, uint32_t idx, int depth) {
  if (depth > SF_AVRO_MAX_DEPTH)
    return SF_EPARSE;
  const vnode_t *node = &p->nodes[idx];
  int64_t x;
  int rc;
  switch (node->kind) {
  case VK_NULL:
    return 0;
  case VK_BOOLEAN:
    if (v->p == v->end)
      return SF_ETRUNCATED;
    return (*v->p++ > 1) ? SF_EPARSE : 0;
  case VK_INT:
    if ((rc = v_long(v, &x)))
      return rc;
    return (x < INT32_MIN || x > INT32_MAX) ? SF_EPARSE : 0;
  case VK_LONG:
    return v_long(v, &x);
  case VK_FLOAT:
  case VK_DOUBLE:
  case VK_FIXED:
    return v_skip(v, node->kind == VK_FIXED ? node->n : node->min);
  case VK_STRING:
  case VK_BYTES:
    return v_bytes(v, node->kind == VK_STRING);
  case VK_ENUM:
  case VK_UNION:
    if ((rc = v_long(v, &x)))
      return rc;
    if (x < 0 || x >= (int64_t)node->n)
      return SF_EPARSE;
    return node->kind == VK_ENUM
               ? 0
               : v_walk(p, v, p->kids[node->first + (uint32_t)x], depth + 1);
  case VK_RECORD:
    for (uint32_t i = 0; i < node->n; i++)
      if ((rc = v_walk(p, v, p->kids[node->first + i], depth + 1)))
        return rc;
    return 0;
  case VK_ARRAY:
  case VK_MAP:
    return v_blocks(p, v, node, depth);
  }
  return SF_EPARSE;
}

int sf_avro_walk_new(avro_schema_t schema, sf_avro_walk_t **out) {
  *out = NULL;
  sf_avro_walk_t *w = calloc(1, sizeof(*w));
  if (!w)
    return SF_ENOMEM;
  int rc = vprog_compile(w, schema, 0, &w->root);
  if (rc) {
    sf_avro_walk_destroy(w);
    return rc;
  }
  *out = w;
  return 0;
}

int sf_avro_walk_check(const sf_avro_walk_t *w, const uint8_t *buf,
                       size_t len, size_t max_items) {
  vstate_t v = {buf, buf + len, 0, max_items};
  int rc = v_walk(w, &v, w->root, 0);
  if (rc)
    return rc;
  return v.p != v.end ? SF_EPARSE : 0; /* trailing bytes */
}

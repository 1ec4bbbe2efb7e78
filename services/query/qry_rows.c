/* qry_rows: table-driven mapping of result rows to JSON. Each answer shape
 * is a list of fields (JSON name, column, conversion); the derived
 * "available" is on_hand - reserved of the same row. See qry_rows.h. */
#include "qry_rows.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/jbuf.h"
#include "sf/json.h"

typedef enum field_kind {
  F_STR,       /* text, never NULL */
  F_STR_NULL,  /* text or null */
  F_I64,       /* bigint, never NULL */
  F_BOOL,      /* boolean "t"/"f" */
  F_TIME,      /* microseconds since the epoch -> RFC 3339 */
  F_TIME_NULL, /* same, or null */
  F_PRICE,     /* numeric text -> normalised decimal string */
  F_AVAILABLE, /* on_hand - reserved (columns "on_hand", "reserved") */
  F_JSON       /* JSON text built by PostgreSQL (json_agg), parsed */
} field_kind_t;

typedef struct field {
  const char *json;
  const char *col;
  field_kind_t kind;
} field_t;

struct qry_shape {
  const field_t *fields; /* ends with a NULL json name */
};

static const field_t inventory_fields[] = {
    {"product_id", "product_id", F_STR},
    {"sku", "sku", F_STR},
    {"name", "name", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

static const field_t inventory_at_fields[] = {
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"sku", "sku", F_STR},
    {"name", "name", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

static const field_t holding_fields[] = {
    {"store_id", "store_id", F_STR},
    {"store_name", "store_name", F_STR},
    {"product_id", "product_id", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

static const field_t transaction_fields[] = {
    {"transaction_id", "transaction_id", F_STR},
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"type", "type", F_STR},
    {"quantity", "quantity", F_I64},
    {"delta", "delta", F_I64},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"reason", "reason", F_STR_NULL},
    {"reference", "reference", F_STR_NULL},
    {"actor", "actor", F_STR_NULL},
    {"created_at", "created_us", F_TIME},
    {NULL, NULL, F_STR}};

static const field_t product_fields[] = {
    {"id", "id", F_STR},
    {"sku", "sku", F_STR},
    {"name", "name", F_STR},
    {"category", "category", F_STR_NULL},
    {"price", "price", F_PRICE},
    {"reorder_level", "reorder_level", F_I64},
    {"discontinued", "discontinued", F_BOOL},
    {"version", "version", F_I64},
    {"created_at", "created_us", F_TIME},
    {"updated_at", "updated_us", F_TIME},
    {"total_on_hand", "total_on_hand", F_I64},
    {"total_available", "total_available", F_I64},
    {"policy", "policy", F_JSON}, /* rules: PUT /v1/products/{id}/policy */
    {NULL, NULL, F_STR}};

static const field_t store_fields[] = {
    {"id", "id", F_STR},
    {"name", "name", F_STR},
    {"location", "location", F_STR},
    {"manager_id", "manager_id", F_STR_NULL},
    {"closed", "closed", F_BOOL},
    {"version", "version", F_I64},
    {"created_at", "created_us", F_TIME},
    {"updated_at", "updated_us", F_TIME},
    {NULL, NULL, F_STR}};

static const field_t order_fields[] = {
    {"order_id", "order_id", F_STR},
    {"store_id", "store_id", F_STR},
    {"status", "status", F_STR},
    {"lines", "lines", F_JSON},
    {"reference", "reference", F_STR_NULL},
    {"version", "version", F_I64},
    {"created_at", "created_us", F_TIME},
    {"updated_at", "updated_us", F_TIME},
    {"cancel_cause", "cancel_cause", F_STR_NULL}, /* rules: null or expired */
    {NULL, NULL, F_STR}};

static const field_t change_fields[] = {
    {"id", "id", F_I64},
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"cause", "cause", F_STR},
    {"transaction_id", "transaction_id", F_STR},
    {"occurred_at", "occurred_us", F_TIME},
    {NULL, NULL, F_STR}};

static const field_t snapshot_fields[] = {
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

/* Parses a bigint column's text. */
static int parse_i64(const char *v, int64_t *out) {
  if (!*v)
    return SF_EPARSE;
  errno = 0;
  char *end = NULL;
  long long n = strtoll(v, &end, 10);
  if (errno || *end)
    return SF_EPARSE;
  *out = (int64_t)n;
  return 0;
}

/* Reads column c of row as a bigint; SF_ENOTFOUND when NULL. */
static int col_i64(const PGresult *res, int row, int c, int64_t *out) {
  if (PQgetisnull(res, row, c))
    return SF_ENOTFOUND;
  return parse_i64(PQgetvalue(res, row, c), out);
}

int qry_row_i64(const PGresult *res, int row, const char *name, int64_t *out) {
  int c = PQfnumber(res, name);
  if (c < 0 || row < 0 || row >= PQntuples(res))
    return SF_ENOTFOUND;
  return col_i64(res, row, c, out);
}

int qry_rowmap_init(qry_rowmap_t *m, const PGresult *res,
                    const qry_shape_t *shape) {
  m->shape = shape;
  m->res = res;
  m->on_hand = PQfnumber(res, "on_hand");
  m->reserved = PQfnumber(res, "reserved");
  size_t i = 0;
  for (const field_t *f = shape->fields; f->json; f++, i++) {
    if (i == QRY_ROWMAP_MAX)
      return SF_EINTERNAL;
    if (f->kind == F_AVAILABLE) {
      m->cols[i] = -1;
      if (m->on_hand < 0 || m->reserved < 0)
        return SF_EPARSE;
      continue;
    }
    m->cols[i] = PQfnumber(res, f->col);
    if (m->cols[i] < 0)
      return SF_EPARSE;
  }
  return 0;
}

/* Writes one field's value from column c; 0 or SF_EPARSE when malformed. */
static int write_field(sf_jbuf_t *b, const qry_rowmap_t *m, int row,
                       const field_t *f, int c) {
  const PGresult *res = m->res;
  if (f->kind == F_AVAILABLE) {
    int64_t on_hand, reserved;
    if (col_i64(res, row, m->on_hand, &on_hand) != 0 ||
        col_i64(res, row, m->reserved, &reserved) != 0)
      return SF_EPARSE;
    sf_jbuf_i64(b, on_hand - reserved);
    return 0;
  }
  if (PQgetisnull(res, row, c)) {
    if (f->kind != F_STR_NULL && f->kind != F_TIME_NULL)
      return SF_EPARSE;
    sf_jbuf_lit(b, "null");
    return 0;
  }
  const char *v = PQgetvalue(res, row, c);
  switch (f->kind) {
  case F_STR:
  case F_STR_NULL:
    sf_jbuf_str(b, v, (size_t)PQgetlength(res, row, c));
    return 0;
  case F_I64: {
    int64_t n;
    if (parse_i64(v, &n) != 0)
      return SF_EPARSE;
    sf_jbuf_i64(b, n);
    return 0;
  }
  case F_BOOL:
    if (strcmp(v, "t") == 0)
      sf_jbuf_lit(b, "true");
    else if (strcmp(v, "f") == 0)
      sf_jbuf_lit(b, "false");
    else
      return SF_EPARSE;
    return 0;
  case F_TIME:
  case F_TIME_NULL: {
    int64_t us;
    if (parse_i64(v, &us) != 0)
      return SF_EPARSE;
    char buf[40];
    sf_json_format_time(us, buf, sizeof(buf));
    sf_jbuf_str(b, buf, strlen(buf));
    return 0;
  }
  case F_PRICE: {
    char buf[64];
    if (qry_price_normalize(v, buf, sizeof(buf)) != 0)
      return SF_EPARSE;
    sf_jbuf_str(b, buf, strlen(buf));
    return 0;
  }
  case F_JSON:
    return qry_json_column(v, b);
  case F_AVAILABLE:
    break;
  }
  return SF_EPARSE;
}

int qry_rowmap_text(const qry_rowmap_t *m, int row, sf_jbuf_t *b) {
  if (row < 0 || row >= PQntuples(m->res))
    return SF_EPARSE;
  size_t i = 0;
  for (const field_t *f = m->shape->fields; f->json; f++, i++) {
    sf_jbuf_raw(b, i ? ",\"" : "{\"", 2);
    sf_jbuf_lit(b, f->json); /* field names are plain ASCII */
    sf_jbuf_raw(b, "\":", 2);
    int rc = write_field(b, m, row, f, m->cols[i]);
    if (rc)
      return rc;
  }
  sf_jbuf_raw(b, "}", 1);
  return b->err;
}

int qry_rowmap_row_text(const qry_rowmap_t *m, int row, char **out,
                        size_t *len) {
  sf_jbuf_t b;
  sf_jbuf_init(&b, 512);
  int rc = qry_rowmap_text(m, row, &b);
  if (rc) {
    sf_jbuf_free(&b);
    return rc == SF_ENOMEM ? rc : SF_EPARSE;
  }
  return sf_jbuf_take(&b, out, len);
}

json_t *qry_rowmap_row(const qry_rowmap_t *m, int row) {
  char *text = NULL;
  size_t len = 0;
  if (qry_rowmap_row_text(m, row, &text, &len) != 0)
    return NULL;
  json_t *obj = json_loadb(text, len, 0, NULL);
  free(text);
  return obj;
}

int qry_row_text(const PGresult *res, int row, const qry_shape_t *shape,
                 char **out, size_t *len) {
  qry_rowmap_t m;
  int rc = qry_rowmap_init(&m, res, shape);
  return rc ? rc : qry_rowmap_row_text(&m, row, out, len);
}

json_t *qry_row(const PGresult *res, int row, const qry_shape_t *shape) {
  qry_rowmap_t m;
  if (qry_rowmap_init(&m, res, shape) != 0)
    return NULL;
  return qry_rowmap_row(&m, row);
}

#define SHAPE(name, list)                         \
  static const qry_shape_t name##_shape = {list}; \
  const qry_shape_t *const name = &name##_shape;
SHAPE(QRY_SHAPE_INVENTORY, inventory_fields)
SHAPE(QRY_SHAPE_INVENTORY_AT, inventory_at_fields)
SHAPE(QRY_SHAPE_HOLDING, holding_fields)
SHAPE(QRY_SHAPE_TRANSACTION, transaction_fields)
SHAPE(QRY_SHAPE_PRODUCT, product_fields)
SHAPE(QRY_SHAPE_STORE, store_fields)
SHAPE(QRY_SHAPE_ORDER, order_fields)
SHAPE(QRY_SHAPE_CHANGE, change_fields)
SHAPE(QRY_SHAPE_SNAPSHOT, snapshot_fields)
#undef SHAPE

int qry_page_build(const PGresult *res, const char *key_col, int limit,
                   qry_cursor_kind_t kind, const qry_shape_t *shape,
                   bool owner_row, const json_t *extra, char **out,
                   size_t *out_len) {
  int n = PQntuples(res);
  if (owner_row && n == 0)
    return SF_ENOTFOUND;
  int key = PQfnumber(res, key_col);
  qry_rowmap_t map;
  if (key < 0 || limit < 1 || qry_rowmap_init(&map, res, shape) != 0)
    return SF_EPARSE;
  sf_jbuf_t b;
  sf_jbuf_init(&b, 4096);
  sf_jbuf_lit(&b, "{\"items\":[");
  int kept = 0;
  int last = -1;
  bool more = false;
  int rc = 0;
  for (int r = 0; r < n && !rc; r++) {
    if (PQgetisnull(res, r, key))
      continue;
    if (kept == limit) {
      more = true;
      break;
    }
    if (kept)
      sf_jbuf_raw(&b, ",", 1);
    rc = qry_rowmap_text(&map, r, &b);
    kept++;
    last = r;
  }
  sf_jbuf_lit(&b, "],\"next_cursor\":");
  if (!rc && more) {
    char cur[QRY_CURSOR_CAP];
    rc = qry_cursor_encode(kind, PQgetvalue(res, last, key), cur) != 0
             ? SF_EPARSE
             : 0;
    if (!rc)
      sf_jbuf_str(&b, cur, strlen(cur));
  } else {
    sf_jbuf_lit(&b, "null");
  }
  /* extra's members after the page's own: {"a":1} adds ,"a":1 */
  if (!rc && extra && json_object_size(extra) > 0) {
    char *t = json_dumps(extra, JSON_COMPACT);
    if (!t) {
      rc = SF_ENOMEM;
    } else {
      size_t tl = strlen(t);
      sf_jbuf_raw(&b, ",", 1);
      sf_jbuf_raw(&b, t + 1, tl - 2); /* without its braces */
      free(t);
    }
  }
  sf_jbuf_raw(&b, "}", 1);
  if (rc) {
    sf_jbuf_free(&b);
    return rc;
  }
  rc = sf_jbuf_take(&b, out, out_len);
  return rc == SF_ENOMEM ? SF_ENOMEM : rc ? SF_EPARSE
                                          : 0;
}

int qry_json_column(const char *text, sf_jbuf_t *b) {
  json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!t)
    return SF_EPARSE;
  sf_jbuf_lit(b, t);
  free(t);
  return 0;
}

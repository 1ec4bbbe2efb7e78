/* qry_rows: table-driven mapping of result rows to JSON. Each answer shape
 * is a list of fields (JSON name, column, conversion); the derived
 * "available" is on_hand - reserved of the same row. See qry_rows.h. */
#include "qry_rows.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
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

/* Converts one field from column c; returns the JSON value or NULL when
 * malformed. */
static json_t *field_value(const qry_rowmap_t *m, int row, const field_t *f,
                           int c) {
  const PGresult *res = m->res;
  if (f->kind == F_AVAILABLE) {
    int64_t on_hand, reserved;
    if (col_i64(res, row, m->on_hand, &on_hand) != 0 ||
        col_i64(res, row, m->reserved, &reserved) != 0)
      return NULL;
    return json_integer((json_int_t)(on_hand - reserved));
  }
  if (PQgetisnull(res, row, c)) {
    if (f->kind == F_STR_NULL || f->kind == F_TIME_NULL)
      return json_null();
    return NULL;
  }
  const char *v = PQgetvalue(res, row, c);
  switch (f->kind) {
  case F_STR:
  case F_STR_NULL:
    return json_stringn(v, (size_t)PQgetlength(res, row, c));
  case F_I64: {
    int64_t n;
    if (parse_i64(v, &n) != 0)
      return NULL;
    return json_integer((json_int_t)n);
  }
  case F_BOOL:
    if (strcmp(v, "t") == 0)
      return json_true();
    if (strcmp(v, "f") == 0)
      return json_false();
    return NULL;
  case F_TIME:
  case F_TIME_NULL: {
    int64_t us;
    if (parse_i64(v, &us) != 0)
      return NULL;
    char buf[40];
    sf_json_format_time(us, buf, sizeof(buf));
    return json_string_nocheck(buf);
  }
  case F_PRICE: {
    char buf[64];
    if (qry_price_normalize(v, buf, sizeof(buf)) != 0)
      return NULL;
    return json_string(buf);
  }
  case F_JSON:
    return json_loads(v, JSON_REJECT_DUPLICATES, NULL);
  case F_AVAILABLE:
    break;
  }
  return NULL;
}

json_t *qry_rowmap_row(const qry_rowmap_t *m, int row) {
  if (row < 0 || row >= PQntuples(m->res))
    return NULL;
  json_t *obj = json_object();
  if (!obj)
    return NULL;
  size_t i = 0;
  for (const field_t *f = m->shape->fields; f->json; f++, i++) {
    json_t *v = field_value(m, row, f, m->cols[i]);
    if (!v || json_object_set_new_nocheck(obj, f->json, v) != 0) {
      json_decref(obj);
      return NULL;
    }
  }
  return obj;
}

json_t *qry_row(const PGresult *res, int row, const qry_shape_t *shape) {
  qry_rowmap_t m;
  if (qry_rowmap_init(&m, res, shape) != 0)
    return NULL;
  return qry_rowmap_row(&m, row);
}

#define SHAPE(name, list)                                                      \
  static const qry_shape_t name##_shape = {list};                             \
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
                   bool owner_row, json_t **out) {
  int n = PQntuples(res);
  if (owner_row && n == 0)
    return SF_ENOTFOUND;
  int key = PQfnumber(res, key_col);
  qry_rowmap_t map;
  if (key < 0 || limit < 1 || qry_rowmap_init(&map, res, shape) != 0)
    return SF_EPARSE;
  /* json_object_set_new steals items even when it fails. */
  json_t *page = json_object();
  json_t *items = json_array();
  if (!page || !items) {
    json_decref(items);
    json_decref(page);
    return SF_ENOMEM;
  }
  if (json_object_set_new(page, "items", items) != 0) {
    json_decref(page);
    return SF_ENOMEM;
  }
  int kept = 0;
  int last = -1;
  bool more = false;
  for (int r = 0; r < n; r++) {
    if (PQgetisnull(res, r, key))
      continue;
    if (kept == limit) {
      more = true;
      break;
    }
    json_t *item = qry_rowmap_row(&map, r);
    if (!item) {
      json_decref(page);
      return SF_EPARSE;
    }
    if (json_array_append_new(items, item) != 0) {
      json_decref(page);
      return SF_ENOMEM;
    }
    kept++;
    last = r;
  }
  json_t *next;
  if (more) {
    char cur[QRY_CURSOR_CAP];
    if (qry_cursor_encode(kind, PQgetvalue(res, last, key), cur) != 0) {
      json_decref(page);
      return SF_EPARSE;
    }
    next = json_string(cur);
  } else {
    next = json_null();
  }
  if (!next || json_object_set_new(page, "next_cursor", next) != 0) {
    json_decref(page);
    return SF_ENOMEM;
  }
  *out = page;
  return 0;
}

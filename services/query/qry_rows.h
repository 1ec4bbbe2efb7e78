/* qry_rows: PostgreSQL result rows -> JSON answers of the query service.
 *
 * The statements in qry_sql.c name their columns after the JSON fields (times
 * as "<field>_us": microseconds since the epoch as bigint text); the
 * functions here look columns up by name (once per result for a page),
 * convert text to JSON integers,
 * booleans and RFC 3339 times, and add the derived "available". A NULL in a
 * column that must not be NULL, or a number that does not parse, makes the
 * row function return NULL: the caller answers 500, never half a row.
 * Pure and thread-safe; results are borrowed, returned JSON is owned by the
 * caller. */
#ifndef QRY_ROWS_H
#define QRY_ROWS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "qry_params.h"
#include "sf/jbuf.h"

/* An answer shape: the JSON fields of one kind of row and the columns they
 * come from. */
typedef struct qry_shape qry_shape_t;

/* {product_id, sku, name, on_hand, reserved, available, version, updated_at}
 * from columns product_id, sku, name, on_hand, reserved, version, updated_us
 * (updated_us may be NULL: updated_at null). */
extern const qry_shape_t *const QRY_SHAPE_INVENTORY;
/* The same with store_id first (column store_id). */
extern const qry_shape_t *const QRY_SHAPE_INVENTORY_AT;
/* {store_id, store_name, product_id, on_hand, reserved, available, version,
 * updated_at}: one store's holding of a product. */
extern const qry_shape_t *const QRY_SHAPE_HOLDING;
/* {transaction_id, store_id, product_id, type, quantity, delta, on_hand,
 * reserved, available, version, reason, reference, actor, created_at}. */
extern const qry_shape_t *const QRY_SHAPE_TRANSACTION;
/* {id, sku, name, category, price, reorder_level, discontinued, version,
 * created_at, updated_at, total_on_hand, total_available}; price is
 * normalised with qry_price_normalize. */
extern const qry_shape_t *const QRY_SHAPE_PRODUCT;
/* {id, name, location, manager_id, closed, version, created_at,
 * updated_at}. */
extern const qry_shape_t *const QRY_SHAPE_STORE;
/* {order_id, store_id, status, lines: [{product_id, quantity}], reference,
 * version, created_at, updated_at}; column lines is the JSON text of the
 * array (QRY_SQL_ORDER). */
extern const qry_shape_t *const QRY_SHAPE_ORDER;
/* {id, store_id, product_id, on_hand, reserved, available, version, cause,
 * transaction_id, occurred_at}: one row of the changes table. */
extern const qry_shape_t *const QRY_SHAPE_CHANGE;
/* {store_id, product_id, on_hand, reserved, available, version,
 * updated_at}: an inventory row sent as a stream's snapshot. */
extern const qry_shape_t *const QRY_SHAPE_SNAPSHOT;

#define QRY_ROWMAP_MAX 16

/* A result's columns for one shape, looked up once (PQfnumber) and used
 * for every row: a value the caller owns, valid while res lives. */
typedef struct qry_rowmap {
  const qry_shape_t *shape;
  const PGresult *res;
  int cols[QRY_ROWMAP_MAX];
  int on_hand, reserved;
} qry_rowmap_t;

/* Looks up the shape's columns in res: 0, or SF_EPARSE when one is
 * missing. */
int qry_rowmap_init(qry_rowmap_t *m, const PGresult *res,
                    const qry_shape_t *shape);

/* Appends row as a JSON object to b: 0, SF_EPARSE when the row is
 * malformed (b then holds part of it) or b's own error. */
int qry_rowmap_text(const qry_rowmap_t *m, int row, sf_jbuf_t *b);

/* Maps row to a JSON object; NULL when the row is malformed or on out of
 * memory. */
json_t *qry_rowmap_row(const qry_rowmap_t *m, int row);

/* Row as JSON text: 0 with *out (NUL-terminated, *len bytes; free() it),
 * SF_EPARSE or SF_ENOMEM. */
int qry_rowmap_row_text(const qry_rowmap_t *m, int row, char **out,
                        size_t *len);

/* One row, for a result read once: qry_rowmap_init + qry_rowmap_row. */
json_t *qry_row(const PGresult *res, int row, const qry_shape_t *shape);

/* The same as JSON text: 0 with *out (NUL-terminated, *len bytes; free()
 * it), SF_EPARSE or SF_ENOMEM. */
int qry_row_text(const PGresult *res, int row, const qry_shape_t *shape,
                 char **out, size_t *len);

/* Reads column name of row as a signed 64-bit integer. Returns 0,
 * SF_ENOTFOUND (no such column, or NULL) or SF_EPARSE. */
int qry_row_i64(const PGresult *res, int row, const char *name, int64_t *out);

/* Appends the JSON text of a column that PostgreSQL built (json_agg,
 * to_json: an array or an object) to b, checked and made compact by
 * jansson. Returns 0 or SF_EPARSE (not such JSON; b untouched). */
int qry_json_column(const char *text, sf_jbuf_t *b);

/* Writes {"items": [...], "next_cursor": ...} as JSON text from a result
 * that holds up to limit + 1 rows ordered by key_col, straight from the
 * rows (no jansson tree: for a 100-row page the tree cost more than the
 * query). Rows whose key_col is NULL are skipped (the LEFT JOIN row of an
 * owner without items). When more than limit rows remain, only limit are
 * kept and next_cursor encodes the key of the last kept one; otherwise
 * next_cursor is null. extra (may be NULL; borrowed) is an object whose
 * members follow next_cursor (e.g. a product's totals).
 * When owner_row is true the result must have at least one row (the owner:
 * store or product); zero rows returns SF_ENOTFOUND. Returns 0 with *out
 * (NUL-terminated, *out_len bytes; free() it) owned by the caller,
 * SF_EPARSE (a row did not map) or SF_ENOMEM. */
int qry_page_build(const PGresult *res, const char *key_col, int limit,
                   qry_cursor_kind_t kind, const qry_shape_t *shape,
                   bool owner_row, const json_t *extra, char **out,
                   size_t *out_len);

#endif

/* qry_rows: PostgreSQL result rows -> JSON answers of the query service.
 *
 * The statements in qry_sql.c name their columns after the JSON fields (times
 * as "<field>_us": microseconds since the epoch as bigint text); the
 * functions here look columns up by name, convert text to JSON integers,
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

/* Maps one row to a JSON object; NULL when the row is malformed or on out of
 * memory. */
typedef json_t *(*qry_row_fn)(const PGresult *res, int row);

/* {product_id, sku, name, on_hand, reserved, available, version, updated_at}
 * from columns product_id, sku, name, on_hand, reserved, version, updated_us
 * (updated_us may be NULL: updated_at null). */
json_t *qry_row_inventory(const PGresult *res, int row);

/* The same with store_id first (column store_id). */
json_t *qry_row_inventory_at(const PGresult *res, int row);

/* {store_id, store_name, product_id, on_hand, reserved, available, version,
 * updated_at}: one store's holding of a product. */
json_t *qry_row_holding(const PGresult *res, int row);

/* {transaction_id, store_id, product_id, type, quantity, delta, on_hand,
 * reserved, available, version, reason, reference, actor, created_at}. */
json_t *qry_row_transaction(const PGresult *res, int row);

/* {id, sku, name, category, price, reorder_level, discontinued, version,
 * created_at, updated_at, total_on_hand, total_available}; price is
 * normalised with qry_price_normalize. */
json_t *qry_row_product(const PGresult *res, int row);

/* {id, name, location, manager_id, closed, version, created_at,
 * updated_at}. */
json_t *qry_row_store(const PGresult *res, int row);

/* {order_id, store_id, status, lines: [{product_id, quantity}], reference,
 * version, created_at, updated_at}; column lines is the JSON text of the
 * array (QRY_SQL_ORDER). */
json_t *qry_row_order(const PGresult *res, int row);

/* {id, store_id, product_id, on_hand, reserved, available, version, cause,
 * transaction_id, occurred_at}: one row of the changes table. */
json_t *qry_row_change(const PGresult *res, int row);

/* {store_id, product_id, on_hand, reserved, available, version,
 * updated_at}: an inventory row sent as a stream's snapshot. */
json_t *qry_row_snapshot(const PGresult *res, int row);

/* Reads column name of row as a signed 64-bit integer. Returns 0,
 * SF_ENOTFOUND (no such column, or NULL) or SF_EPARSE. */
int qry_row_i64(const PGresult *res, int row, const char *name, int64_t *out);

/* Builds {"items": [...], "next_cursor": ...} from a result that holds up to
 * limit + 1 rows ordered by key_col. Rows whose key_col is NULL are skipped
 * (the LEFT JOIN row of an owner without items). When more than limit rows
 * remain, only limit are kept and next_cursor encodes the key of the last
 * kept one; otherwise next_cursor is null.
 * When owner_row is true the result must have at least one row (the owner:
 * store or product); zero rows returns SF_ENOTFOUND. Returns 0 with *out
 * owned by the caller, SF_EPARSE (a row did not map) or SF_ENOMEM. */
int qry_page_build(const PGresult *res, const char *key_col, int limit,
                   qry_cursor_kind_t kind, qry_row_fn fn, bool owner_row,
                   json_t **out);

#endif

/* qry_sql: every SQL statement of the query service, prepared once per
 * connection through sf_pg. Each name below is documented with its
 * parameters (all text; the statement casts them) and its columns, which are
 * named after the JSON fields qry_rows.c maps them to.
 *
 * Lists fetch limit + 1 rows so that the caller knows whether a next page
 * exists. Keyset pagination never uses OFFSET: a list with no cursor passes
 * the smallest (or, newest-first, the largest) UUID as its bound so the
 * index condition is always the same. Lists that belong to an owner (a
 * store's stock, a product's holdings) drive the query from the owner's row
 * with a LEFT JOIN LATERAL: zero rows means the owner does not exist, one
 * row with NULL key means it exists and holds nothing. */
#ifndef QRY_SQL_H
#define QRY_SQL_H

#include "sf/pg.h"

/* Lower and upper keyset bounds used when a list has no cursor. */
#define QRY_UUID_MIN "00000000-0000-0000-0000-000000000000"
#define QRY_UUID_MAX "ffffffff-ffff-ffff-ffff-ffffffffffff"

/* $1 store id, $2 after product_id, $3 below_reorder (bool), $4 row limit.
 * Columns: owner_id, product_id, sku, name, on_hand, reserved, version,
 * updated_us; ordered by product_id. */
#define QRY_SQL_STORE_INVENTORY "qry_store_inventory"

/* As QRY_SQL_STORE_INVENTORY plus $5 as_of (microseconds since the epoch):
 * the latest transaction per product created at or before as_of; updated_us
 * is that transaction's time. */
#define QRY_SQL_STORE_INVENTORY_AS_OF "qry_store_inventory_as_of"

/* $1 store id, $2 product id. Always one row: store_id and product_id are
 * NULL when that one does not exist; a pair without stock events has
 * on_hand, reserved and version 0 and updated_us NULL. */
#define QRY_SQL_INVENTORY_ROW "qry_inventory_row"

/* $1 store id, $2 before transaction id, $3 product id or NULL, $4 type or
 * NULL, $5 since (us) or NULL, $6 until (us) or NULL, $7 row limit.
 * Columns: owner_id, transaction_id, store_id, product_id, type, quantity,
 * delta, on_hand, reserved, version, reason, reference, actor, created_us;
 * newest first. */
#define QRY_SQL_TRANSACTIONS "qry_transactions"

/* $1 product id. Columns of QRY_SHAPE_PRODUCT; zero rows when unknown. */
#define QRY_SQL_PRODUCT "qry_product"

/* $1 after product id, $2 category or NULL, $3 ILIKE pattern or NULL, $4 row
 * limit. Columns of QRY_SHAPE_PRODUCT, ordered by id. */
#define QRY_SQL_PRODUCTS "qry_products"

/* $1 product id, $2 after store id, $3 row limit, $4 the stores the caller
 * may see (uuid[] text) or NULL for all (accounts). Columns: owner_id,
 * total_on_hand, total_available (over every store), then store_id,
 * store_name, product_id, on_hand, reserved, version, updated_us; ordered
 * by store_id. */
#define QRY_SQL_PRODUCT_INVENTORY "qry_product_inventory"

/* $1 after store id, $2 row limit, $3 the stores the caller may see
 * (uuid[] text) or NULL for all (accounts). Columns of qry_row_store, by
 * id. */
#define QRY_SQL_STORES "qry_stores"

/* $1 store id. Columns of qry_row_store; zero rows when unknown. */
#define QRY_SQL_STORE "qry_store"

/* $1 consumer group, $2 topic of stock tokens, $3 topic of catalog tokens,
 * then three parallel arrays, one entry per position: $4 kinds int[] (1
 * stock, 0 catalog), $5 partitions int[], $6 offsets bigint[]. One row,
 * column pending: how many positions are not applied yet (no offsets row,
 * or next_offset <= offset). */
#define QRY_SQL_POSITIONS "qry_positions"

/* $1 order id. Columns of qry_row_order; zero rows when unknown. */
#define QRY_SQL_ORDER "qry_order"

/* $1 store id, $2 before order id, $3 status or NULL, $4 row limit.
 * Columns: owner_id, then those of qry_row_order; newest first. */
#define QRY_SQL_STORE_ORDERS "qry_store_orders"

/* Start of a change stream. $1 store id or NULL, $2 product id or NULL, $3
 * snapshot (bool). Everything comes from ONE statement, hence one MVCC
 * snapshot: max_id (the highest changes id visible), pruned_through,
 * store_found and product_found (true when that filter is NULL), then, when
 * $3 is true and both are found, the inventory rows of the filter (columns
 * of qry_row_snapshot; NULL store_id in the single row when there are
 * none), ordered by store_id, product_id. The inventory rows are exactly
 * the state after changes 1..max_id, because the projector writes a change
 * and its inventory row in one transaction. */
#define QRY_SQL_CHANGES_START "qry_changes_start"

/* A catch-up page of one subscriber. $1 after id, $2 store id or NULL, $3
 * product id or NULL, $4 row limit. Columns: bound (the highest id visible
 * in the same snapshot), pruned_through, then those of QRY_SHAPE_CHANGE (NULL
 * id in the single row when no change matches); ordered by id. */
#define QRY_SQL_CHANGES_PAGE "qry_changes_page"

/* The shared fetch of new changes for every live subscriber. $1 after id,
 * $2 row limit. Columns of QRY_SHAPE_CHANGE, ordered by id. */
#define QRY_SQL_CHANGES_NEXT "qry_changes_next"

/* Registers every statement above with the pool. Returns 0 or the first
 * error of sf_pg_prepare. */
int qry_sql_prepare_all(sf_pg_t *pg);

#endif

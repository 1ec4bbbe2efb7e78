/* qry_sql: the statement texts of the query service. See qry_sql.h for each
 * statement's parameters and columns.
 *
 * Times leave PostgreSQL as bigint microseconds since the epoch (exact: in
 * PostgreSQL 14 and later extract() returns numeric) and are formatted by
 * sf_json_format_time, so the session time zone never matters. Times come in
 * the same way and become timestamptz by adding microseconds to the epoch,
 * which is exact too. */
#include "qry_sql.h"

#include <stddef.h>

#define US(x) "(extract(epoch from " x ") * 1000000)::bigint"
#define TS(p) "(timestamptz 'epoch' + " p "::bigint * interval '1 microsecond')"

/* Totals of one product over every store, for products p. */
#define PRODUCT_TOTALS                                                    \
  "CROSS JOIN LATERAL (SELECT coalesce(sum(iv.on_hand), 0)::bigint"       \
  " AS total_on_hand, coalesce(sum(iv.on_hand - iv.reserved), 0)::bigint" \
  " AS total_available FROM inventory iv WHERE iv.product_id = p.id) tot "

#define PRODUCT_COLUMNS                                                                                                       \
  "p.id, p.sku, p.name, p.category, p.price::text AS price,"                                                                  \
  " p.reorder_level, p.discontinued, p.version,"                                                                              \
  " " US("p.created_at") " AS created_us, " US("p.updated_at") " AS updated_us, tot.total_on_hand, tot.total_available,"      \
                                                               " json_build_object('max_sale_quantity', p.max_sale_quantity," \
                                                               " 'max_negative_adjustment', p.max_negative_adjustment,"       \
                                                               " 'count_requires_reason', p.count_requires_reason)::text AS policy "

#define STORE_COLUMNS                                            \
  "s.id, s.name, s.location, s.manager_id, s.closed, s.version," \
  " " US("s.created_at") " AS created_us, " US("s.updated_at") " AS updated_us "

#define ORDER_COLUMNS                                                                                                         \
  "o.id AS order_id, o.store_id, o.status, o.reference, o.version,"                                                           \
  " o.cancel_cause,"                                                                                                          \
  " " US("o.created_at") " AS created_us, " US("o.updated_at") " AS updated_us, coalesce((SELECT json_agg(json_build_object(" \
                                                               "'product_id', l.product_id, 'quantity', l.quantity)"          \
                                                               " ORDER BY l.product_id)::text FROM order_lines l"             \
                                                               " WHERE l.order_id = o.id), '[]') AS lines "

#define CHANGE_COLUMNS                                                \
  "c.id, c.store_id, c.product_id, c.on_hand, c.reserved, c.version," \
  " c.cause, c.transaction_id, " US("c.occurred_at") " AS occurred_us "

typedef struct stmt {
  const char *name;
  const char *sql;
} stmt_t;

static const stmt_t statements[] = {
    {QRY_SQL_STORE_INVENTORY,
     "SELECT s.id AS owner_id, x.product_id, x.sku, x.name, x.on_hand,"
     " x.reserved, x.version, x.updated_us"
     " FROM stores s LEFT JOIN LATERAL ("
     "  SELECT i.product_id, p.sku, p.name, i.on_hand, i.reserved, i.version,"
     "  " US("i.updated_at") " AS updated_us"
                             "  FROM inventory i JOIN products p ON p.id = i.product_id"
                             "  WHERE i.store_id = s.id AND i.product_id > $2::uuid"
                             "  AND (NOT $3::boolean OR i.on_hand - i.reserved < p.reorder_level)"
                             "  ORDER BY i.product_id LIMIT $4::int) x ON true"
                             " WHERE s.id = $1::uuid ORDER BY x.product_id"},

    {QRY_SQL_STORE_INVENTORY_AS_OF,
     "SELECT s.id AS owner_id, x.product_id, x.sku, x.name, x.on_hand,"
     " x.reserved, x.version, x.updated_us"
     " FROM stores s LEFT JOIN LATERAL ("
     "  SELECT t.product_id, p.sku, p.name, t.on_hand_after AS on_hand,"
     "  t.reserved_after AS reserved, t.version,"
     "  " US("t.created_at") " AS updated_us"
                             "  FROM (SELECT DISTINCT ON (tr.product_id) tr.product_id,"
                             "   tr.on_hand_after, tr.reserved_after, tr.version, tr.created_at"
                             "   FROM transactions tr"
                             "   WHERE tr.store_id = s.id AND tr.product_id > $2::uuid"
                             "   AND tr.created_at <= " TS("$5") "   ORDER BY tr.product_id, tr.created_at DESC, tr.version DESC) t"
                                                                 "  JOIN products p ON p.id = t.product_id"
                                                                 "  WHERE (NOT $3::boolean"
                                                                 "   OR t.on_hand_after - t.reserved_after < p.reorder_level)"
                                                                 "  ORDER BY t.product_id LIMIT $4::int) x ON true"
                                                                 " WHERE s.id = $1::uuid ORDER BY x.product_id"},

    {QRY_SQL_INVENTORY_ROW,
     "SELECT s.id AS store_id, p.id AS product_id, p.sku, p.name,"
     " coalesce(i.on_hand, 0) AS on_hand, coalesce(i.reserved, 0) AS reserved,"
     " coalesce(i.version, 0) AS version, " US("i.updated_at") " AS updated_us"
                                                               " FROM (SELECT $1::uuid AS sid, $2::uuid AS pid) k"
                                                               " LEFT JOIN stores s ON s.id = k.sid"
                                                               " LEFT JOIN products p ON p.id = k.pid"
                                                               " LEFT JOIN inventory i ON i.store_id = k.sid AND i.product_id = k.pid"},

    {QRY_SQL_TRANSACTIONS,
     "SELECT s.id AS owner_id, x.transaction_id, x.store_id, x.product_id,"
     " x.type, x.quantity, x.delta, x.on_hand, x.reserved, x.version,"
     " x.reason, x.reference, x.actor, x.created_us"
     " FROM stores s LEFT JOIN LATERAL ("
     "  SELECT t.id AS transaction_id, t.store_id, t.product_id, t.type,"
     "  t.quantity, t.delta, t.on_hand_after AS on_hand,"
     "  t.reserved_after AS reserved, t.version, t.reason, t.reference,"
     "  t.actor, " US("t.created_at") " AS created_us"
                                      "  FROM transactions t"
                                      "  WHERE t.store_id = s.id AND t.id < $2::uuid"
                                      "  AND ($3::uuid IS NULL OR t.product_id = $3::uuid)"
                                      "  AND ($4::text IS NULL OR t.type = $4::text)"
                                      "  AND ($5::bigint IS NULL OR t.created_at >= " TS("$5") ")"
                                                                                               "  AND ($6::bigint IS NULL OR t.created_at <= " TS("$6") ")"
                                                                                                                                                        "  ORDER BY t.id DESC LIMIT $7::int) x ON true"
                                                                                                                                                        " WHERE s.id = $1::uuid ORDER BY x.transaction_id DESC"},

    {QRY_SQL_PRODUCT,
     "SELECT " PRODUCT_COLUMNS "FROM products p " PRODUCT_TOTALS
     "WHERE p.id = $1::uuid"},

    {QRY_SQL_PRODUCTS,
     "SELECT " PRODUCT_COLUMNS "FROM products p " PRODUCT_TOTALS
     "WHERE p.id > $1::uuid"
     " AND ($2::text IS NULL OR p.category = $2::text)"
     " AND ($3::text IS NULL OR p.name ILIKE $3::text OR p.sku ILIKE $3::text)"
     " ORDER BY p.id LIMIT $4::int"},

    {QRY_SQL_PRODUCT_INVENTORY,
     "SELECT p.id AS owner_id, tot.total_on_hand, tot.total_available,"
     " x.store_id, x.store_name, x.product_id, x.on_hand, x.reserved,"
     " x.version, x.updated_us"
     " FROM products p " PRODUCT_TOTALS
     "LEFT JOIN LATERAL ("
     "  SELECT i.store_id, st.name AS store_name, i.product_id, i.on_hand,"
     "  i.reserved, i.version, " US("i.updated_at") " AS updated_us"
                                                    "  FROM inventory i JOIN stores st ON st.id = i.store_id"
                                                    "  WHERE i.product_id = p.id AND i.store_id > $2::uuid"
                                                    "  AND ($4::uuid[] IS NULL OR i.store_id = ANY($4::uuid[]))"
                                                    "  ORDER BY i.store_id LIMIT $3::int) x ON true"
                                                    " WHERE p.id = $1::uuid ORDER BY x.store_id"},

    {QRY_SQL_STORES,
     "SELECT " STORE_COLUMNS "FROM stores s WHERE s.id > $1::uuid"
     " AND ($3::uuid[] IS NULL OR s.id = ANY($3::uuid[]))"
     " ORDER BY s.id LIMIT $2::int"},

    {QRY_SQL_STORE, "SELECT " STORE_COLUMNS "FROM stores s WHERE s.id = $1::uuid"},

    {QRY_SQL_POSITIONS,
     "SELECT count(*) AS pending"
     " FROM unnest($4::int[], $5::int[], $6::bigint[]) AS p(kind, part, off)"
     " WHERE NOT EXISTS (SELECT 1 FROM projector_offsets o"
     "  WHERE o.consumer_group = $1::text"
     "  AND o.topic = CASE WHEN p.kind = 1 THEN $2::text ELSE $3::text END"
     "  AND o.partition = p.part AND o.next_offset > p.off)"},

    {QRY_SQL_ORDER, "SELECT " ORDER_COLUMNS "FROM orders o WHERE o.id = $1::uuid"},

    {QRY_SQL_STORE_ORDERS,
     "SELECT s.id AS owner_id, x.* FROM stores s LEFT JOIN LATERAL ("
     "  SELECT " ORDER_COLUMNS "FROM orders o"
     "  WHERE o.store_id = s.id AND o.id < $2::uuid"
     "  AND ($3::text IS NULL OR o.status = $3::text)"
     "  ORDER BY o.id DESC LIMIT $4::int) x ON true"
     " WHERE s.id = $1::uuid ORDER BY x.order_id DESC"},

    {QRY_SQL_CHANGES_START,
     "SELECT m.max_id, m.pruned_through, m.store_found, m.product_found,"
     " x.store_id, x.product_id, x.on_hand, x.reserved, x.version,"
     " x.updated_us"
     " FROM (SELECT (SELECT coalesce(max(id), 0) FROM changes) AS max_id,"
     "  (SELECT coalesce(max(pruned_through), 0) FROM changes_meta)"
     "  AS pruned_through,"
     "  ($1::uuid IS NULL OR EXISTS (SELECT 1 FROM stores st"
     "   WHERE st.id = $1::uuid)) AS store_found,"
     "  ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM products pr"
     "   WHERE pr.id = $2::uuid)) AS product_found) m"
     " LEFT JOIN LATERAL ("
     "  SELECT i.store_id, i.product_id, i.on_hand, i.reserved, i.version,"
     "  " US("i.updated_at") " AS updated_us FROM inventory i"
                             "  WHERE $3::boolean AND m.store_found AND m.product_found"
                             "  AND ($1::uuid IS NULL OR i.store_id = $1::uuid)"
                             "  AND ($2::uuid IS NULL OR i.product_id = $2::uuid)) x ON true"
                             " ORDER BY x.store_id, x.product_id"},

    {QRY_SQL_CHANGES_PAGE,
     "SELECT m.bound, m.pruned_through, x.*"
     " FROM (SELECT (SELECT coalesce(max(id), 0) FROM changes) AS bound,"
     "  (SELECT coalesce(max(pruned_through), 0) FROM changes_meta)"
     "  AS pruned_through) m"
     " LEFT JOIN LATERAL ("
     "  SELECT " CHANGE_COLUMNS "FROM changes c WHERE c.id > $1::bigint"
     "  AND ($2::uuid IS NULL OR c.store_id = $2::uuid)"
     "  AND ($3::uuid IS NULL OR c.product_id = $3::uuid)"
     "  ORDER BY c.id LIMIT $4::int) x ON true"
     " ORDER BY x.id"},

    {QRY_SQL_CHANGES_NEXT,
     "SELECT " CHANGE_COLUMNS "FROM changes c WHERE c.id > $1::bigint"
     " ORDER BY c.id LIMIT $2::int"},
};

int qry_sql_prepare_all(sf_pg_t *pg) {
  for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++) {
    int rc = sf_pg_prepare(pg, statements[i].name, statements[i].sql);
    if (rc != 0)
      return rc;
  }
  return 0;
}

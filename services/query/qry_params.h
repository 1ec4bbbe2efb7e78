/* qry_params: pure parsing and formatting of the query service's inputs.
 *
 * Everything a handler validates before it touches PostgreSQL lives here so
 * that it can be tested without a loop or a database: page limits, opaque
 * keyset cursors, boolean flags, the transaction type filter, position
 * tokens ("stock-3-1234"), ILIKE patterns and the normalisation of prices as
 * PostgreSQL prints them. All functions are pure and thread-safe; none
 * allocates. */
#ifndef QRY_PARAMS_H
#define QRY_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/uuid.h"

#define QRY_LIMIT_DEFAULT 50
#define QRY_LIMIT_MAX 500

/* Longest free-text search (?q=) accepted, in bytes. */
#define QRY_Q_MAX 200
/* Bytes needed for the ILIKE pattern of a QRY_Q_MAX search, with the NUL. */
#define QRY_LIKE_CAP (2 * QRY_Q_MAX + 3)

/* Encoded cursor: base64url (no padding) of a kind byte and 16 id bytes,
 * 23 characters; the capacity leaves room for the NUL. */
#define QRY_CURSOR_CAP 32

/* Parses ?limit=. NULL means absent: *out = QRY_LIMIT_DEFAULT. Otherwise
 * only 1 to 3 plain decimal digits with a value in 1..QRY_LIMIT_MAX are
 * accepted (no sign, no spaces). Returns 0 or SF_EINVAL. */
int qry_parse_limit(const char *text, int *out);

/* Parses a boolean query flag: "true"/"1" or "false"/"0" (exact, lower
 * case). NULL means absent: *out = def. Returns 0 or SF_EINVAL. */
int qry_parse_bool(const char *text, bool def, bool *out);

/* What a cursor points into. The kind is part of the encoding so that a
 * cursor of one list is rejected by another. */
typedef enum qry_cursor_kind {
  QRY_CURSOR_STORE_INVENTORY = 'i',   /* last product_id of a store's stock */
  QRY_CURSOR_TRANSACTIONS = 't',      /* last transaction id */
  QRY_CURSOR_PRODUCTS = 'p',          /* last product id */
  QRY_CURSOR_STORES = 's',            /* last store id */
  QRY_CURSOR_PRODUCT_INVENTORY = 'h', /* last store_id holding a product */
  QRY_CURSOR_ORDERS = 'o'             /* last order id of a store */
} qry_cursor_kind_t;

/* Encodes the id (a UUID string) of the last row of a page into out.
 * Returns 0 or SF_EINVAL (id is not a UUID). */
int qry_cursor_encode(qry_cursor_kind_t kind, const char *id,
                      char out[QRY_CURSOR_CAP]);

/* Decodes a cursor made by qry_cursor_encode for the same kind into the
 * lowercase UUID string id_out. Anything else (not base64url, wrong length,
 * another kind, trailing garbage) is SF_EPARSE. */
int qry_cursor_decode(const char *text, qry_cursor_kind_t kind,
                      char id_out[SF_UUID_STR_LEN + 1]);

/* True when t is a stock movement type a client may filter on: receipt,
 * sale, return, adjustment, count, transfer_out, transfer_in (and the
 * history rows of orders: order_placed, order_fulfilled,
 * order_cancelled, order_expired). */
bool qry_tx_type_valid(const char *t);

/* True when s is an order status: placed, fulfilled or cancelled. */
bool qry_order_status_valid(const char *s);

typedef enum qry_topic_kind {
  QRY_TOPIC_CATALOG = 0,
  QRY_TOPIC_STOCK = 1
} qry_topic_kind_t;

/* A position token "<kind>-<partition>-<offset>" as returned by writes. */
typedef struct qry_position {
  qry_topic_kind_t kind;
  int32_t partition; /* 0..INT32_MAX */
  int64_t offset;    /* 0..INT64_MAX */
} qry_position_t;

/* Parses a token: kind "stock" or "catalog", then decimal partition and
 * offset without sign or leading zeros ("0" itself is fine). Returns 0 or
 * SF_EPARSE. */
int qry_position_parse(const char *text, qry_position_t *out);

/* Most positions one min_position list may name. */
#define QRY_POSITIONS_MAX 32

/* Parses a comma-separated list of tokens ("stock-5-169,stock-1-0"), as a
 * write that touched several partitions returns it, into out[0..*n). Blanks
 * (spaces, tabs) around a token are allowed; an empty token, a bad token or
 * more than cap tokens is SF_EPARSE (out may be partly written). */
int qry_positions_parse(const char *text, qry_position_t *out, size_t cap,
                        size_t *n);

/* True when the comma-separated header value (e.g. Connection: "keep-alive,
 * Upgrade") holds token, compared case-insensitively; blanks around items
 * are ignored. NULL value: false. */
bool qry_header_has_token(const char *value, const char *token);

/* True when an Accept header value lists media type (e.g.
 * "text/event-stream"), ignoring parameters such as ";q=0.9" and case. A
 * wildcard does not count: a stream must be asked for. */
bool qry_accepts_media(const char *accept, const char *media);

/* Normalises a numeric as PostgreSQL prints it ("19.9900") for answers:
 * trailing fraction zeros are dropped down to two fraction digits
 * ("19.99", "20.00", "0.125"); an integer gets ".00". Returns 0, SF_EINVAL
 * (not an unsigned decimal) or SF_ETOOBIG (out too small). */
int qry_price_normalize(const char *text, char *out, size_t cap);

/* Builds the ILIKE pattern "%<q>%" with '\\', '%' and '_' escaped by '\\'
 * (PostgreSQL's default LIKE escape) so q matches literally. Returns 0,
 * SF_EINVAL (q empty or longer than QRY_Q_MAX) or SF_ETOOBIG (cap too
 * small; QRY_LIKE_CAP always suffices). */
int qry_like_pattern(const char *q, char *out, size_t cap);

#endif

/* ctl_stock: `stockflowctl stock` (stock levels from the query service, as
 * a table or JSON) and `stockflowctl move` (a movement posted to the
 * command service).
 *
 * Not thread-safe (one ctl_http_t). */
#ifndef CTL_STOCK_H
#define CTL_STOCK_H

#include <jansson.h>
#include <stdio.h>

#include "ctl_config.h"
#include "ctl_http.h"
#include "ctl_table.h"

/* The commands; token may be NULL; they return a ctl_exit_t. */
int ctl_stock_show(const ctl_args_t *a, ctl_http_t *h, const char *token,
                   FILE *out, FILE *err);
int ctl_stock_move(const ctl_args_t *a, ctl_http_t *h, const char *token,
                   FILE *out, FILE *err);

/* The table of stock rows (the items of GET /v1/stores/{id}/inventory or
 * the single row of .../inventory/{product_id}; borrowed): product, sku,
 * name, on hand, reserved, available, version, updated. Returns 0,
 * SF_EINVAL (rows is not an array of objects) or SF_ENOMEM; *out is the
 * caller's. */
int ctl_stock_table(const json_t *rows, ctl_table_t **out);

/* The body of a movement (caller decrefs), NULL when out of memory. */
json_t *ctl_stock_move_body(const ctl_args_t *a);

#endif

/* cmd_stock: the stock commands: movements of one store x product
 * (receipt, sale, return, adjustment, count), transfers between stores (two
 * events in one transaction) and orders that reserve stock (place, fulfil,
 * cancel). Events go to the stock topic keyed by store id, so all events of
 * a store are ordered. */
#ifndef CMD_STOCK_H
#define CMD_STOCK_H

#include "cmd_app.h"
#include "sf/http.h"

/* Registers POST /v1/stores/{store_id}/transactions, /v1/transfers,
 * /v1/stores/{store_id}/orders, /v1/orders/{id}/fulfil|cancel. */
int cmd_stock_routes(cmd_app_t *a, sf_http_server_t *http);

#endif

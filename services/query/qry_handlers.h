/* qry_handlers: the /v1 query endpoints of API.md (qry_handlers.c), each a
 * validation of its path and query parameters, one prepared statement run
 * through qry_call_run and a render function. Loop thread only. */
#ifndef QRY_HANDLERS_H
#define QRY_HANDLERS_H

#include "qry_call.h"
#include "sf/http.h"

/* Registers the /v1 routes with ud = k (borrowed; it must outlive the
 * server's routing). Returns 0 or an error of qry_route. */
int qry_handlers_register(qry_calls_t *k, sf_http_server_t *http);

#endif

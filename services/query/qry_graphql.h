/* qry_graphql: Parse Server's GraphQL API at /graphql, for the classes the
 * Parse facade serves (docs/parse-compat.md "GraphQL", the schema in
 * docs/parse-graphql.graphql).
 *
 * POST /graphql with a JSON body {"query", "variables"?, "operationName"?}
 * or GET /graphql?query=&variables=&operationName=. The request carries
 * Parse's headers and passes the facade's own checks (qry_parse_check_app:
 * X-Parse-Application-Id, no master key; qry_parse_session:
 * X-Parse-Session-Token, a stockflow bearer token), then the document is
 * parsed (qry_gql), each root field planned against the schema
 * (qry_gql_map: the same query builder as /parse, qry_parse_query, scoped
 * to the session's stores), and the root fields run one after the other
 * through the query service's call context. Answers:
 *  - 200 {"data": {...}, "errors"?: [...]}: a field the builder refuses or
 *    an object not found is null in data with an error whose extensions
 *    carry the Parse code ({"code": 101});
 *  - 400 {"errors": [...]} with locations: a syntax error
 *    (extensions.code "GRAPHQL_PARSE_FAILED") or a document that does not
 *    fit the schema ("GRAPHQL_VALIDATION_FAILED"); nothing is run;
 *  - the facade's Parse-shaped errors for the app id and the session.
 * Mutations (logIn, logOut, createTransaction, createOrder; POST only)
 * go through the facade's write path (qry_parse_writes_call: /v1 on the
 * command service, the same rules as /parse); a created object is read
 * back once the read model has it (its position). logIn is the one field
 * that needs no session. Loop thread only. */
#ifndef QRY_GRAPHQL_H
#define QRY_GRAPHQL_H

#include "qry_parse.h"
#include "sf/http.h"

#define QRY_GRAPHQL_MAX_ROOTS 16 /* root fields of one operation */

/* Adds GET and POST /graphql, served with the checks and the call context
 * of p (borrowed; it must outlive the server's routes). Returns 0 or an
 * error of sf_http_route. */
int qry_graphql_register(qry_parse_t *p, sf_http_server_t *http);

#endif

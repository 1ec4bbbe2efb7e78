/* cmd_app: the command service: lifecycle, routes, and the write pipeline
 * that every command handler goes through.
 *
 * A write is: cmd_app_begin_write (503 while the state is not there; the
 * Idempotency-Key gate: replay of the first answer, 422 for a reused key
 * with another body), parse and validate, decide against the state, then
 * cmd_app_commit: the events are encoded, folded into the state at once (so
 * the next command sees them) and queued for the group-commit writer. The
 * HTTP answer waits for the transaction that carries them: the body built
 * by cmd_reply from the events plus their position, or 503 if the commit
 * failed (the writer then rebuilds the state from the log, so the state is
 * as if the command never happened; meanwhile writes answer 503).
 *
 * The handler modules (cmd_catalog.c, cmd_stock.c) use the pipeline API
 * below. Everything here runs on the loop thread. */
#ifndef CMD_APP_H
#define CMD_APP_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "cmd_config.h"
#include "cmd_state.h"
#include "sf/auth.h"
#include "sf/event.h"
#include "sf/http.h"
#include "sf/log.h"

typedef struct cmd_app cmd_app_t;

/* Creates the service (nothing listens yet). cfg, loop and log are
 * borrowed for the app's life. */
int cmd_app_new(cmd_app_t **out, uv_loop_t *loop, const cmd_settings_t *cfg,
                sf_log_t *log);
/* Listens and starts the writer lanes (the state is rebuilt once every
 * lane has initialised its transactions). */
int cmd_app_start(cmd_app_t *a);
/* Stops the writer (pending commands are answered), stops listening,
 * closes handles; done fires on the loop when everything is closed. */
void cmd_app_stop(cmd_app_t *a, void (*done)(void *), void *ud);
void cmd_app_destroy(cmd_app_t *a);

/* Whether the instance stopped because it can no longer write (a lane was
 * fenced by another instance with the same transactional ids): the app
 * then stops by itself and main exits non-zero so that a supervisor
 * restarts it. */
bool cmd_app_failed(const cmd_app_t *a);

/* The writer lanes the settings ask for (writer-lanes; 0: one per core). */
size_t cmd_app_lane_count(const cmd_settings_t *cfg);

/* ---- the write pipeline, for the handler modules ---- */

/* A write in progress; lives in the request's memory (HTTP) or on the heap
 * until its answer (bus). */
typedef struct cmd_req cmd_req_t;

/* Where the answer of a command that did not come over HTTP goes: status
 * and the JSON text of the answer (borrowed for the call). Fires once. */
typedef void (*cmd_answer_cb)(void *ud, int status, const char *body);

/* Starts a write. Returns NULL when the request is already answered (503
 * not ready, 400 bad Idempotency-Key, an idempotent replay, 422
 * idempotency_key_reused, 409 idempotency_key_in_flight). */
cmd_req_t *cmd_app_begin_write(cmd_app_t *a, sf_http_req_t *req);

/* Starts a write that came from the bus (inventory.commands): no HTTP, no
 * token (who may publish there is a matter of Kafka ACLs). key is the
 * Idempotency-Key (the command id; copied), hash the hex SHA-256 of the
 * command, actor a user id or NULL. Returns NULL when it was answered at
 * once through answer (503 while rebuilding, an idempotent replay, 422 for a
 * reused key); otherwise the context, freed after its answer. */
cmd_req_t *cmd_app_begin_bus(cmd_app_t *a, const char *key, const char *hash,
                             const char *actor, cmd_answer_cb answer,
                             void *ud);

/* Starts a command of the service itself (rules: the expiry of a
 * reservation): no HTTP, no actor, no Idempotency-Key. Its answer goes to
 * answer (fires once, then the context is freed). Returns NULL, without
 * calling answer, while the service is not writing (rebuilding, fatal) or
 * out of memory. */
cmd_req_t *cmd_app_begin_system(cmd_app_t *a, cmd_answer_cb answer, void *ud);

/* The JSON object body (caller owns it), or NULL after answering 415/400. */
json_t *cmd_app_parse_body(cmd_app_t *a, cmd_req_t *c);

/* cmd_app_begin_write, then cmd_app_parse_body: the body (caller owns it)
 * with *c set, or NULL when the request was answered (*c then freed or
 * never made). The start of every write with a JSON body. */
json_t *cmd_app_begin_json(cmd_app_t *a, sf_http_req_t *req, cmd_req_t **c);

/* Answers a problem (recorded under the request's Idempotency-Key, so a
 * retry gets the same answer). extra (ownership taken, may be NULL) is
 * merged into the problem object. */
void cmd_app_problem(cmd_app_t *a, cmd_req_t *c, int status, const char *code,
                     const char *detail, json_t *extra);
/* The problem+json object {type, title, status, detail, code[, request_id]}
 * every answer of the command service uses (new reference; request_id may
 * be NULL, e.g. for a batch item). */
json_t *cmd_problem_json(int status, const char *code, const char *detail,
                         const char *request_id);

/* 422 validation_failed. */
void cmd_app_invalid(cmd_app_t *a, cmd_req_t *c, const char *detail);
/* The status and code of a verdict, with detail. */
void cmd_app_refuse(cmd_app_t *a, cmd_req_t *c, cmd_verdict_t v,
                    const char *detail, json_t *extra);

/* The state commands are decided against (valid during a handler). */
const cmd_state_t *cmd_app_state(const cmd_app_t *a);
/* A fresh UUIDv7 (strictly increasing). */
void cmd_app_new_id(cmd_app_t *a, char out[SF_ID_LEN]);
/* Starts an event: zeroes e, gives it a fresh event id (a UUIDv7, which
 * is also the transaction, product, store or order id of what it creates),
 * a new command id (or command_id when given: the events of one command
 * share it), the time, the actor, the idempotency key and request hash. */
void cmd_app_envelope(cmd_app_t *a, cmd_req_t *c, sf_event_t *e,
                      const char *command_id);

typedef struct cmd_outgoing {
  sf_event_t *e;   /* borrowed until cmd_app_commit returns */
  bool catalog;    /* inventory.catalog, else inventory.stock */
  const char *key; /* partition key: store id, product id */
} cmd_outgoing_t;

/* Folds the events of one command into the state and queues them as one
 * unit: they commit together or not at all. The answer is sent when the
 * transaction ends. */
void cmd_app_commit(cmd_app_t *a, cmd_req_t *c, const cmd_outgoing_t *evs,
                    size_t n);

sf_http_req_t *cmd_req_http(cmd_req_t *c);
/* The Idempotency-Key of the write and its request hash, or NULL. */
const char *cmd_req_idem_key(const cmd_req_t *c);

/* ---- instances (cmd_instances.h): who decides for which store ---- */

/* Whether this instance owns store_id's stock partition (true while the
 * partition count is unknown: the write then answers 503 anyway). */
bool cmd_app_store_is_local(const cmd_app_t *a, const char *store_id);
/* The instance that owns store_id's stock partition. */
unsigned cmd_app_store_owner(const cmd_app_t *a, const char *store_id);
/* true when this instance decides for store_id. Otherwise answers c
 * without writing or recording anything (its Idempotency-Key is released,
 * so the owner can take it): 307 to the owner's URL for the same path with
 * code wrong_instance, 421 wrong_instance when that URL is unknown (and
 * 421 on the bus results topic), and returns false. */
bool cmd_app_route_store(cmd_app_t *a, cmd_req_t *c, const char *store_id);
/* The same for the catalog (owned by instance 0), before any write has
 * begun: true when this instance writes the catalog; else req is answered
 * 307 or 421. */
bool cmd_app_route_catalog(cmd_app_t *a, sf_http_req_t *req);
/* Answers 409 cross_instance_transfer naming both owners. */
void cmd_app_cross_instance(cmd_app_t *a, cmd_req_t *c, const char *from,
                            const char *to);
/* A store, product (catalog true) or order (catalog false) c names is
 * unknown, and other instances write to the log this instance folds with a
 * delay (cmd_tail.h): when that can be the reason (an HTTP request,
 * several instances, not the catalog's own writer for a catalog entry, not
 * asked already for this request), releases c's Idempotency-Key, parks the
 * request until the tail has folded everything committed so far, runs
 * again(req, a) then (which decides again with the newer state) and
 * returns true; the caller returns without answering. Otherwise false:
 * answer 404 as usual. */
bool cmd_app_catch_up(cmd_app_t *a, cmd_req_t *c, bool catalog,
                      sf_http_handler_cb again);

/* ---- authorization (sf/authn.h; added with the accounts) ---- */

/* Registers a business route behind the authentication gate: a missing or
 * bad token is answered 401, then sf_auth_allows(action, path parameter
 * store_param) is checked (store_param NULL: a store-independent action;
 * SF_ACT_READ_CATALOG means any signed-in user) and answered 403, and only
 * then cb(req, a) runs. Returns 0 or an error of sf_authn_route. */
int cmd_app_route(cmd_app_t *a, sf_http_server_t *http, const char *method,
                  const char *pattern, sf_auth_action_t action,
                  const char *store_param, sf_http_handler_cb cb);
/* For checks that need the body or the state (a transfer's two stores, a
 * count, an order's store): true when the caller may do action on
 * store_id; otherwise answers 403 forbidden with cmd_app_problem and
 * returns false. */
bool cmd_app_allowed(cmd_app_t *a, cmd_req_t *c, sf_auth_action_t action,
                     const char *store_id);
/* The same check, without answering. */
bool cmd_req_may(const cmd_req_t *c, sf_auth_action_t action,
                 const char *store_id);
/* SF_ACT_STOCK_COUNT_ADJUST for counts and adjustments, else
 * SF_ACT_STOCK_WRITE. */
sf_auth_action_t cmd_movement_action(sf_movement_t m);

/* ---- batches: many commands, one transaction, one answer ---- */

typedef struct cmd_batch cmd_batch_t;

/* Starts a batch answering c. results is a JSON array (ownership taken),
 * one object per item in order; items that will not be committed already
 * hold their final answer. NULL on out of memory (then c is answered). */
cmd_batch_t *cmd_app_batch_new(cmd_app_t *a, cmd_req_t *c, json_t *results);
/* Adds the message of e (already folded into the state by the caller).
 * When the batch commits, results[index].body (body: ownership taken) gets
 * "position", and item_key (may be NULL; copied) remembers that body as its
 * first answer. Returns 0 or SF_ENOMEM / SF_EINVAL. */
int cmd_app_batch_add(cmd_app_t *a, cmd_batch_t *b, const sf_event_t *e,
                      size_t index, json_t *body, const char *item_key,
                      const char *item_hash);
/* Commits the batch's messages in one transaction and answers 200
 * {"results": [...]} after it (at once when there are none); 503 for the
 * whole batch if the commit fails. Consumes b. */
void cmd_app_batch_commit(cmd_app_t *a, cmd_batch_t *b);
/* Frees an uncommitted batch (the caller answers the request). */
void cmd_app_batch_discard(cmd_batch_t *b);

#endif

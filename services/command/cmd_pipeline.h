/* cmd_pipeline: the write pipeline every command of the command service
 * goes through, whatever its origin (HTTP, the bus intake, the service's
 * own rules such as the expiry of a reservation).
 *
 * A write is: cmd_pipeline_begin_* (503 while the state is not there; the
 * Idempotency-Key gate: replay of the first answer, 422 for a reused key
 * with another body), parse and validate, decide against the state, then
 * cmd_pipeline_commit: the events are encoded, folded into the state at
 * once (so the next command sees them) and handed to the sink as one unit.
 * The answer waits for the transaction that carries them: the body built by
 * cmd_reply from the events plus their position, or 503 if the commit
 * failed (the writer then rebuilds the state from the log, so the state is
 * as if the command never happened; meanwhile writes answer 503).
 *
 * The handler modules (cmd_catalog.c, cmd_stock.c, cmd_batch.c, cmd_bus.c,
 * cmd_expiry.c) depend on this header only; cmd_app owns the pipeline,
 * wires its sink to the writer lanes and feeds it the rebuilt state. The
 * sink is a seam: the unit tests drive the pipeline over a sink of their
 * own. Everything here runs on the loop thread. */
#ifndef CMD_PIPELINE_H
#define CMD_PIPELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cmd_config.h"
#include "cmd_instances.h"
#include "cmd_schema.h"
#include "cmd_state.h"
#include "cmd_writer.h"
#include "sf/auth.h"
#include "sf/authn.h"
#include "sf/event.h"
#include "sf/http.h"
#include "sf/log.h"

typedef struct cmd_pipeline cmd_pipeline_t;

/* Where committed units go. submit takes ownership of the unit and must
 * hand it back through cmd_pipeline_unit_done exactly once (with u->err
 * set on failure); resync asks for a rebuild of the state from the log
 * (reason borrowed for the call). */
typedef struct cmd_pipeline_sink {
  void (*submit)(void *ud, cmd_unit_t *u);
  void (*resync)(void *ud, const char *reason);
  /* instances (may be NULL: a single instance): parks a request until
   * everything the other instances committed so far is folded into the
   * state, then calls done(done_ud, caught_up) on the loop, never inside
   * this call. Returns false when it cannot park (then done never fires). */
  bool (*park)(void *ud, void (*done)(void *done_ud, bool caught_up),
               void *done_ud);
  void *ud;
} cmd_pipeline_sink_t;

/* Counters for /metrics. */
typedef struct cmd_pipeline_stats {
  uint64_t accepted, rejected, failed, replayed;
  uint64_t pending; /* commands waiting for their commit */
  /* instances: requests for another instance's stores or catalog */
  uint64_t redirected, misdirected;
} cmd_pipeline_stats_t;

/* Creates a pipeline with no state yet (every write answers 503 until
 * cmd_pipeline_set_state). cfg, log, authn (NULL: no routes can be
 * registered) and schema are borrowed for its life; sink is copied. schema
 * is the wire format events are encoded in (writes answer 503 while it is
 * not ready); NULL: Avro single-object encoding with a codec of the
 * pipeline's own. Returns 0, SF_ENOMEM, or the codec's error (logged). */
int cmd_pipeline_new(cmd_pipeline_t **out, const cmd_settings_t *cfg,
                     sf_authn_t *authn, cmd_schema_t *schema,
                     const cmd_pipeline_sink_t *sink, sf_log_t *log);
/* Frees the pipeline and its state. Every submitted unit must have come
 * back through cmd_pipeline_unit_done first. */
void cmd_pipeline_destroy(cmd_pipeline_t *pl);

/* ---- fed by the owner (cmd_app) ---- */

/* A rebuilt state (ownership taken; the previous one is freed): writes
 * resume. generation is the lanes' generation of that state. */
void cmd_pipeline_set_state(cmd_pipeline_t *pl, cmd_state_t *state,
                            uint64_t generation);
/* This instance's share of the stock partitions and the catalog (copied;
 * the peers string is borrowed for the pipeline's life). Until called, the
 * pipeline is the only instance and owns everything. */
void cmd_pipeline_set_instances(cmd_pipeline_t *pl, const cmd_instances_t *ins);
/* Writes pause (503) until the next cmd_pipeline_set_state. */
void cmd_pipeline_pause(cmd_pipeline_t *pl);
/* Writes stop for good (503 with reason, copied): the instance was fenced
 * or is shutting down. */
void cmd_pipeline_stop(cmd_pipeline_t *pl, const char *reason);
/* A unit handed to the sink came back (committed, or u->err set): the
 * answer of its command or batch is sent. Takes ownership of u. */
void cmd_pipeline_unit_done(cmd_pipeline_t *pl, cmd_unit_t *u);
/* Forgets idempotency keys past their retention; returns how many. */
size_t cmd_pipeline_expire_keys(cmd_pipeline_t *pl);

/* Whether writes are taken now (a state, no rebuild, not stopped). */
bool cmd_pipeline_writable(const cmd_pipeline_t *pl);
/* Whether a state was ever set, and whether a rebuild is under way. */
bool cmd_pipeline_has_state(const cmd_pipeline_t *pl);
bool cmd_pipeline_resyncing(const cmd_pipeline_t *pl);
/* The reason given to cmd_pipeline_stop, or NULL while not stopped. */
const char *cmd_pipeline_stopped(const cmd_pipeline_t *pl);
void cmd_pipeline_stats(const cmd_pipeline_t *pl, cmd_pipeline_stats_t *out);

/* ---- for the handler modules ---- */

/* A write in progress; lives in the request's memory (HTTP) or on the heap
 * until its answer (bus, system). */
typedef struct cmd_req cmd_req_t;

/* Where the answer of a command that did not come over HTTP goes: status
 * and the JSON text of the answer (borrowed for the call). Fires once. */
typedef void (*cmd_answer_cb)(void *ud, int status, const char *body);

/* Starts a write. Returns NULL when the request is already answered (503
 * not ready, 400 bad Idempotency-Key, an idempotent replay, 422
 * idempotency_key_reused, 409 idempotency_key_in_flight). */
cmd_req_t *cmd_pipeline_begin_write(cmd_pipeline_t *pl, sf_http_req_t *req);

/* Starts a write that came from the bus (inventory.commands): no HTTP, no
 * token (who may publish there is a matter of Kafka ACLs). key is the
 * Idempotency-Key (the command id; copied), hash the hex SHA-256 of the
 * command, actor a user id or NULL. Returns NULL when it was answered at
 * once through answer (503 while rebuilding, an idempotent replay, 422 for a
 * reused key); otherwise the context, freed after its answer. */
cmd_req_t *cmd_pipeline_begin_bus(cmd_pipeline_t *pl, const char *key,
                                  const char *hash, const char *actor,
                                  cmd_answer_cb answer, void *ud);

/* Starts a command of the service itself (rules: the expiry of a
 * reservation): no HTTP, no actor, no Idempotency-Key. Its answer goes to
 * answer (fires once, then the context is freed). Returns NULL, without
 * calling answer, while the service is not writing (rebuilding, stopped) or
 * out of memory. */
cmd_req_t *cmd_pipeline_begin_system(cmd_pipeline_t *pl, cmd_answer_cb answer,
                                     void *ud);

/* The JSON object body (caller owns it), or NULL after answering 415/400. */
json_t *cmd_pipeline_parse_body(cmd_pipeline_t *pl, cmd_req_t *c);

/* cmd_pipeline_begin_write, then cmd_pipeline_parse_body: the body (caller
 * owns it) with *c set, or NULL when the request was answered (*c then
 * freed or never made). The start of every write with a JSON body. */
json_t *cmd_pipeline_begin_json(cmd_pipeline_t *pl, sf_http_req_t *req,
                                cmd_req_t **c);

/* Answers a problem (recorded under the request's Idempotency-Key, so a
 * retry gets the same answer). extra (ownership taken, may be NULL) is
 * merged into the problem object. */
void cmd_pipeline_problem(cmd_pipeline_t *pl, cmd_req_t *c, int status,
                          const char *code, const char *detail, json_t *extra);
/* The problem+json object {type, title, status, detail, code[, request_id]}
 * every answer of the command service uses (new reference; request_id may
 * be NULL, e.g. for a batch item). */
json_t *cmd_problem_json(int status, const char *code, const char *detail,
                         const char *request_id);

/* 422 validation_failed. */
void cmd_pipeline_invalid(cmd_pipeline_t *pl, cmd_req_t *c,
                          const char *detail);
/* The status and code of a verdict, with detail. */
void cmd_pipeline_refuse(cmd_pipeline_t *pl, cmd_req_t *c, cmd_verdict_t v,
                         const char *detail, json_t *extra);

/* The state commands are decided against (valid during a handler; NULL
 * before the first rebuild). */
const cmd_state_t *cmd_pipeline_state(const cmd_pipeline_t *pl);
/* A fresh UUIDv7 (strictly increasing). */
void cmd_pipeline_new_id(cmd_pipeline_t *pl, char out[SF_ID_LEN]);
/* Starts an event: zeroes e, gives it a fresh event id (a UUIDv7, which
 * is also the transaction, product, store or order id of what it creates),
 * a new command id (or command_id when given: the events of one command
 * share it), the time, the actor, the idempotency key and request hash. */
void cmd_pipeline_envelope(cmd_pipeline_t *pl, cmd_req_t *c, sf_event_t *e,
                           const char *command_id);

typedef struct cmd_outgoing {
  sf_event_t *e;   /* borrowed until cmd_pipeline_commit returns */
  bool catalog;    /* inventory.catalog, else inventory.stock */
  const char *key; /* partition key: store id, product id */
} cmd_outgoing_t;

/* Folds the events of one command into the state and submits them as one
 * unit: they commit together or not at all. The answer is sent when the
 * transaction ends. */
void cmd_pipeline_commit(cmd_pipeline_t *pl, cmd_req_t *c,
                         const cmd_outgoing_t *evs, size_t n);

sf_http_req_t *cmd_req_http(cmd_req_t *c);
/* The Idempotency-Key of the write and its request hash, or NULL. */
const char *cmd_req_idem_key(const cmd_req_t *c);

/* ---- instances (cmd_instances.h): who decides for which store ---- */

/* Whether this instance owns store_id's stock partition (true while the
 * partition count is unknown: the write then answers 503 anyway). */
bool cmd_pipeline_store_is_local(const cmd_pipeline_t *pl,
                                 const char *store_id);
/* This instance's share (valid for the pipeline's life). */
const cmd_instances_t *cmd_pipeline_instances(const cmd_pipeline_t *pl);
/* The stock topic's partition count, 0 while unknown (no state yet). */
int32_t cmd_pipeline_stock_partitions(const cmd_pipeline_t *pl);
/* The instance that owns store_id's stock partition. */
unsigned cmd_pipeline_store_owner(const cmd_pipeline_t *pl,
                                  const char *store_id);
/* true when this instance decides for store_id. Otherwise answers c
 * without writing or recording anything (its Idempotency-Key is released,
 * so the owner can take it): 307 to the owner's URL for the same path with
 * code wrong_instance, 421 wrong_instance when that URL is unknown (and
 * 421 on the bus results topic), and returns false. */
bool cmd_pipeline_route_store(cmd_pipeline_t *pl, cmd_req_t *c,
                              const char *store_id);
/* The same for the catalog (owned by instance 0), before any write has
 * begun: true when this instance writes the catalog; else req is answered
 * 307 or 421. */
bool cmd_pipeline_route_catalog(cmd_pipeline_t *pl, sf_http_req_t *req);
/* Answers 409 cross_instance_transfer naming both owners. */
void cmd_pipeline_cross_instance(cmd_pipeline_t *pl, cmd_req_t *c,
                                 const char *from, const char *to);
/* A store, product (catalog true) or order (catalog false) c names is
 * unknown, and other instances write to the log this instance folds with a
 * delay (cmd_tail.h): when that can be the reason (an HTTP request, or a
 * bus command allowed to by cmd_req_allow_catch_up; a sink that can park;
 * not the catalog's own writer for a catalog entry; not asked already for
 * this request), releases c's Idempotency-Key, parks the request until the
 * tail has folded everything committed so far and returns true; the caller
 * returns without answering. Then an HTTP request runs again(req, pl)
 * (which decides again with the newer state); a bus command's c is freed
 * at once and its origin's cbs->again fires. Otherwise false: answer 404 as
 * usual. A handler deciding many items (a batch) asks once, at the first
 * unknown one, and decides them all again. */
bool cmd_pipeline_catch_up(cmd_pipeline_t *pl, cmd_req_t *c, bool catalog,
                           sf_http_handler_cb again);

/* What a bus command's origin hears of a catch-up (both get the ud given to
 * cmd_pipeline_begin_bus). */
typedef struct cmd_catch_up_cbs {
  void (*parked)(void *ud); /* fires inside the call that parks the command */
  void (*again)(void *ud);  /* fires once, later, on the loop: start the
                             * command anew (cmd_pipeline_begin_bus) */
} cmd_catch_up_cbs_t;

/* Lets cmd_pipeline_catch_up park c, a command of the bus, once (cbs
 * borrowed for c's life: a static table). Without this call a bus command
 * is answered 404 at once. */
void cmd_req_allow_catch_up(cmd_req_t *c, const cmd_catch_up_cbs_t *cbs);

/* ---- authorization (sf/authn.h) ---- */

/* Registers a business route behind the authentication gate: a missing or
 * bad token is answered 401, then sf_auth_allows(action, path parameter
 * store_param) is checked (store_param NULL: a store-independent action;
 * SF_ACT_READ_CATALOG means any signed-in user) and answered 403, and only
 * then cb(req, pl) runs. Returns 0 or an error of sf_authn_route. */
int cmd_pipeline_route(cmd_pipeline_t *pl, sf_http_server_t *http,
                       const char *method, const char *pattern,
                       sf_auth_action_t action, const char *store_param,
                       sf_http_handler_cb cb);
/* For checks that need the body or the state (a transfer's two stores, a
 * count, an order's store): true when the caller may do action on
 * store_id; otherwise answers 403 forbidden with cmd_pipeline_problem and
 * returns false. */
bool cmd_pipeline_allowed(cmd_pipeline_t *pl, cmd_req_t *c,
                          sf_auth_action_t action, const char *store_id);
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
cmd_batch_t *cmd_pipeline_batch_new(cmd_pipeline_t *pl, cmd_req_t *c,
                                    json_t *results);
/* Adds the message of e (already folded into the state by the caller).
 * When the batch commits, results[index].body (body: ownership taken) gets
 * "position", and item_key (may be NULL; copied) remembers that body as its
 * first answer. Returns 0 or SF_ENOMEM / SF_EINVAL. */
int cmd_pipeline_batch_add(cmd_pipeline_t *pl, cmd_batch_t *b,
                           const sf_event_t *e, size_t index, json_t *body,
                           const char *item_key, const char *item_hash);
/* Commits the batch's messages in one transaction and answers 200
 * {"results": [...]} after it (at once when there are none); 503 for the
 * whole batch if the commit fails. Consumes b. */
void cmd_pipeline_batch_commit(cmd_pipeline_t *pl, cmd_batch_t *b);
/* Frees an uncommitted batch (the caller answers the request). */
void cmd_pipeline_batch_discard(cmd_batch_t *b);

#endif

/* cmd_batch: POST /v1/batches. See cmd_batch.h.
 *
 * Items are decided in order against the state, each folded at once so the
 * next sees it (two sales of the last unit: the second is refused). Under a
 * batch Idempotency-Key K, item i's event carries the key "K#i" with the
 * hash of the item, so after a restart a retried batch replays the items
 * that were committed (rebuilt from the log) instead of applying them
 * twice; the whole-batch answer itself is remembered in memory only. */
#include "cmd_batch.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_reply.h"
#include "cmd_stock.h"
#include "sf/json.h"
#include "sf/uuid.h"

static json_t *problem_json(int status, const char *code, const char *detail) {
  return cmd_problem_json(status, code, detail, NULL);
}

static void set_result(json_t *results, size_t i, int status, json_t *body) {
  json_array_append_new(results, json_pack("{s:I, s:i, s:o}", "index",
                                           (json_int_t)i, "status", status,
                                           "body", body));
}

static void item_hash(json_t *item, char *out, size_t cap) {
  char *text = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, (const unsigned char *)(text ? text : ""),
                     text ? strlen(text) : 0);
  sodium_bin2hex(out, cap, digest, sizeof(digest));
  free(text);
}

/* Decides one item. On success fills e (folded by the caller) and returns
 * 0; else sets *status and *problem, and *verdict when the state refused
 * it (CMD_OK for a validation failure). */
static int decide_item(const cmd_state_t *st, json_t *item, sf_event_t *e,
                       int *status, json_t **problem, cmd_verdict_t *verdict) {
  char err[256];
  *verdict = CMD_OK;
  cmd_movement_fields_t f;
  if (!json_is_object(item)) {
    *status = 422;
    *problem = problem_json(422, "validation_failed",
                            "each transaction must be an object");
    return -1;
  }
  if (cmd_movement_fields(item, true, &f, err, sizeof(err)) != 0) {
    *status = 422;
    *problem = problem_json(422, "validation_failed", err);
    return -1;
  }
  const char *store_id = f.store_id, *product_id = f.product_id;
  int64_t q = f.quantity;
  sf_movement_t m = f.movement;
  const char *rule = NULL;
  if (!sf_uuid_valid(store_id) || !sf_uuid_valid(product_id))
    rule = "store_id, product_id: must be UUIDs";
  else
    rule = cmd_check_movement(m, q, f.reason);
  if (rule) {
    *status = 422;
    *problem = problem_json(422, "validation_failed", rule);
    return -1;
  }
  cmd_movement_cmd_t mc = {store_id, product_id, m, q, f.reason, f.reference,
                           -1};
  cmd_verdict_t v = cmd_decide_movement(st, &mc, e);
  *verdict = v;
  if (v != CMD_OK) {
    char detail[200];
    cmd_stock_row_t row;
    cmd_state_stock(st, store_id, product_id, &row);
    if (v == CMD_INSUFFICIENT_STOCK)
      snprintf(detail, sizeof(detail),
               "%s of %" PRId64 " would take available stock below zero "
               "(on_hand %" PRId64 ", reserved %" PRId64 ")",
               f.type, q, row.on_hand, row.reserved);
    else {
      cmd_product_view_t pv;
      if (!cmd_state_product(st, product_id, &pv) ||
          !cmd_policy_explain(&pv.policy, v, q, detail, sizeof(detail)))
        snprintf(detail, sizeof(detail), "%s", cmd_verdict_code(v));
    }
    *status = cmd_verdict_status(v);
    *problem = problem_json(*status, cmd_verdict_code(v), detail);
    return -1;
  }
  return 0;
}

static void h_batch(sf_http_req_t *req, void *ud) {
  cmd_pipeline_t *pl = ud;
  const char *atomic_q = sf_http_req_query(req, "atomic");
  bool atomic = atomic_q && (strcmp(atomic_q, "true") == 0 ||
                             strcmp(atomic_q, "1") == 0);
  if (atomic_q && !atomic && strcmp(atomic_q, "false") != 0 &&
      strcmp(atomic_q, "0") != 0) {
    sf_http_respond_problem(req, 422, "validation_failed",
                            "atomic: must be true or false", NULL);
    return;
  }
  cmd_req_t *c = NULL;
  json_t *obj = cmd_pipeline_begin_json(pl, req, &c);
  if (!obj)
    return;
  static const char *const keys[] = {"transactions", NULL};
  char err[256];
  json_t *items = json_object_get(obj, "transactions");
  size_t n = json_is_array(items) ? json_array_size(items) : 0;
  if (sf_json_only_keys(obj, keys, err, sizeof(err))) {
    cmd_pipeline_invalid(pl, c, err);
    goto out;
  }
  if (n < 1 || n > CMD_BATCH_MAX_ITEMS) {
    cmd_pipeline_invalid(pl, c, "transactions: must be an array of 1 to 1000 "
                                "stock transactions");
    goto out;
  }
  cmd_state_t *st = (cmd_state_t *)cmd_pipeline_state(pl);
  const char *batch_key = cmd_req_idem_key(c);
  json_t *results = json_array();
  cmd_batch_t *b = results ? cmd_pipeline_batch_new(pl, c, results) : NULL;
  if (!b)
    goto out;
  cmd_state_savepoint(st);
  size_t refused = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *item = json_array_get(items, i);
    char key[300], hash[2 * crypto_hash_sha256_BYTES + 1];
    if (batch_key) {
      snprintf(key, sizeof(key), "%s#%zu", batch_key, i);
      item_hash(item, hash, sizeof(hash));
      cmd_idem_view_t v;
      if (cmd_state_idem_get(st, key, &v) && !v.pending) {
        /* committed before (e.g. the batch is retried after a restart) */
        json_t *prev = strcmp(v.request_hash, hash) == 0
                           ? json_loads(v.body, 0, NULL)
                           : NULL;
        if (prev) {
          set_result(results, i, v.status, prev);
          continue;
        }
        set_result(results, i, 422,
                   problem_json(422, "idempotency_key_reused",
                                "this item differs from the one first sent "
                                "under this Idempotency-Key"));
        refused++;
        continue;
      }
    }
    /* accounts: the item's store and type decide; refused items get 403 */
    {
      const char *istore = json_string_value(json_object_get(item, "store_id"));
      const char *itype = json_string_value(json_object_get(item, "type"));
      sf_movement_t im = SF_MOVE_RECEIPT;
      if (itype && sf_movement_parse(itype, &im) == 0 &&
          !cmd_req_may(c, cmd_movement_action(im), istore)) {
        set_result(results, i, 403,
                   problem_json(403, "forbidden",
                                "your role may not write this transaction "
                                "for this store"));
        refused++;
        continue;
      }
    }
    /* instances: an item of another instance's store is not decided
     * here (one batch is one transaction of one instance) */
    {
      const char *istore = json_string_value(json_object_get(item, "store_id"));
      if (istore && !cmd_pipeline_store_is_local(pl, istore)) {
        char detail[160];
        unsigned owner = cmd_pipeline_store_owner(pl, istore);
        snprintf(detail, sizeof(detail),
                 "store %.36s is decided by command instance %u; send this "
                 "transaction there",
                 istore, owner);
        json_t *p = problem_json(421, "wrong_instance", detail);
        json_object_set_new(p, "owner_instance", json_integer(owner));
        set_result(results, i, 421, p);
        refused++;
        continue;
      }
    }
    sf_event_t e;
    cmd_pipeline_envelope(pl, c, &e, NULL);
    e.idempotency_key = batch_key ? key : NULL;
    e.request_hash = batch_key ? hash : NULL;
    int status = 0;
    json_t *problem = NULL;
    cmd_verdict_t v;
    if (decide_item(st, item, &e, &status, &problem, &v) != 0) {
      /* instances: an unknown store or product may be one another
       * instance just wrote; the whole batch waits for the tail once and
       * is decided again (nothing of it is written yet) */
      if ((v == CMD_NOT_FOUND_STORE || v == CMD_NOT_FOUND_PRODUCT) &&
          cmd_pipeline_catch_up(pl, c, true, h_batch)) {
        json_decref(problem);
        cmd_state_rollback(st);
        cmd_pipeline_batch_discard(b);
        goto out;
      }
      set_result(results, i, status, problem);
      refused++;
      continue;
    }
    cmd_apply_result_t res;
    int status201 = 0;
    const sf_event_t *one = &e;
    json_t *body = NULL;
    if (cmd_state_apply(st, &e, &res) != 0 ||
        !(body = cmd_reply_build(st, &one, 1, &status201)) ||
        cmd_pipeline_batch_add(pl, b, &e, i, body, batch_key ? key : NULL,
                               hash) != 0) {
      /* The state may hold a fold without its message: put every row
       * back and write nothing. */
      cmd_state_rollback(st);
      cmd_pipeline_batch_discard(b);
      cmd_pipeline_problem(pl, c, 500, "internal",
                           "a transaction could not be encoded; nothing was "
                           "written",
                           NULL);
      goto out;
    }
    /* the body slot is filled with position after the commit */
    set_result(results, i, 201, json_null());
  }
  if (atomic && refused) {
    cmd_state_rollback(st);
    /* Nothing is written: committed-looking items become "not applied". */
    json_t *res_copy = json_deep_copy(results);
    cmd_pipeline_batch_discard(b);
    size_t idx;
    json_t *r;
    json_array_foreach(res_copy, idx, r) {
      if (json_integer_value(json_object_get(r, "status")) == 201) {
        json_object_set_new(r, "status", json_integer(409));
        json_object_set_new(
            r, "body",
            problem_json(409, "not_applied",
                         "another transaction of this atomic batch was "
                         "refused; nothing was written"));
      }
    }
    char detail[120];
    snprintf(detail, sizeof(detail),
             "%zu of %zu transactions were refused; with atomic=true nothing "
             "was written",
             refused, n);
    cmd_pipeline_problem(pl, c, 409, "batch_rejected", detail,
                         json_pack("{s:o}", "results", res_copy));
    goto out;
  }
  cmd_state_release(st);
  cmd_pipeline_batch_commit(pl, b);
out:
  json_decref(obj);
}

int cmd_batch_routes(cmd_pipeline_t *pl, sf_http_server_t *http, size_t max_body) {
  /* 1,000 transactions do not fit the default 64 KiB */
  int rc = sf_http_body_limit(http, "POST", "/v1/batches", max_body);
  if (rc)
    return rc;
  /* accounts: any signed-in user; each item is checked on its store */
  return cmd_pipeline_route(pl, http, "POST", "/v1/batches", SF_ACT_READ_CATALOG,
                            NULL, h_batch);
}

/* cmd_reply: answer bodies from events. See cmd_reply.h. */
#include "cmd_reply.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/json.h"

static json_t *str_or_null(const char *s) {
  return s ? json_string(s) : json_null();
}

static json_t *time_json(int64_t us) {
  char when[40];
  sf_json_format_time(us, when, sizeof(when));
  return json_string(when);
}

static json_t *limit_json(bool some, int64_t x) {
  return some ? json_integer((json_int_t)x) : json_null();
}

/* The policy of a product as the answers show it (rules). */
static json_t *policy_json(const cmd_policy_t *p) {
  return json_pack("{s:o, s:o, s:b}", "max_sale_quantity",
                   limit_json(p->has_max_sale, p->max_sale_quantity),
                   "max_negative_adjustment",
                   limit_json(p->has_max_negative_adjustment,
                              p->max_negative_adjustment),
                   "count_requires_reason", p->count_requires_reason);
}

static json_t *product_body(const cmd_state_t *s, const sf_event_t *e,
                            const char *time_key) {
  cmd_product_view_t v;
  if (!cmd_state_product(s, e->product_id, &v))
    return NULL;
  return json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:b, s:I, s:o, s:o}", "id",
                   e->product_id, "sku", v.sku, "name", v.name, "category",
                   str_or_null(v.category), "price", v.price, "reorder_level",
                   (json_int_t)v.reorder_level, "discontinued", v.discontinued,
                   "version", (json_int_t)e->stream_version, time_key,
                   time_json(e->occurred_at_us), "policy",
                   policy_json(&v.policy));
}

static json_t *store_body(const cmd_state_t *s, const sf_event_t *e,
                          const char *time_key) {
  cmd_store_view_t v;
  if (!cmd_state_store(s, e->store_id, &v))
    return NULL;
  return json_pack("{s:s, s:s, s:s, s:o, s:b, s:I, s:o}", "id", e->store_id,
                   "name", v.name, "location", v.location, "manager_id",
                   str_or_null(v.manager_id), "closed", v.closed, "version",
                   (json_int_t)e->stream_version, time_key,
                   time_json(e->occurred_at_us));
}

static json_t *movement_body(const sf_event_t *e) {
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}",
      "transaction_id", e->event_id, "store_id", e->store_id, "product_id",
      e->product_id, "type", sf_movement_name(e->stock.movement), "quantity",
      (json_int_t)e->stock.quantity, "delta", (json_int_t)e->stock.delta,
      "on_hand", (json_int_t)e->stock.on_hand, "reserved",
      (json_int_t)e->stock.reserved, "available",
      (json_int_t)(e->stock.on_hand - e->stock.reserved), "version",
      (json_int_t)e->stream_version, "reason", str_or_null(e->stock.reason),
      "reference", str_or_null(e->stock.reference), "created_at",
      time_json(e->occurred_at_us));
}

static json_t *leg(const sf_event_t *e) {
  return json_pack("{s:s, s:I, s:I, s:I, s:I}", "transaction_id", e->event_id,
                   "on_hand", (json_int_t)e->stock.on_hand, "reserved",
                   (json_int_t)e->stock.reserved, "available",
                   (json_int_t)(e->stock.on_hand - e->stock.reserved),
                   "version", (json_int_t)e->stream_version);
}

static json_t *transfer_body(const sf_event_t *out, const sf_event_t *in) {
  return json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o}",
                   "transfer_id", out->stock.transfer_id, "from_store_id",
                   out->store_id, "to_store_id", in->store_id, "product_id",
                   out->product_id, "quantity", (json_int_t)out->stock.quantity,
                   "reference", str_or_null(out->stock.reference),
                   "created_at", time_json(out->occurred_at_us), "from",
                   leg(out), "to", leg(in));
}

static json_t *order_body(const sf_event_t *e) {
  json_t *lines = json_array();
  for (size_t i = 0; lines && i < e->order.n_lines; i++)
    json_array_append_new(
        lines, json_pack("{s:s, s:I}", "product_id",
                         e->order.lines[i].product_id, "quantity",
                         (json_int_t)e->order.lines[i].quantity));
  const char *status = e->type == SF_EV_ORDER_PLACED      ? "placed"
                       : e->type == SF_EV_ORDER_FULFILLED ? "fulfilled"
                                                          : "cancelled";
  return json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:o}", "order_id",
                   e->order.order_id, "store_id", e->store_id, "status", status,
                   "lines", lines, "reference", str_or_null(e->order.reference),
                   "version", (json_int_t)e->stream_version,
                   e->type == SF_EV_ORDER_PLACED ? "created_at" : "updated_at",
                   time_json(e->occurred_at_us));
}

json_t *cmd_reply_build(const cmd_state_t *s, const sf_event_t *const *evs,
                        size_t n, int *status) {
  if (n == 2 && evs[0]->type == SF_EV_TRANSFER_OUT &&
      evs[1]->type == SF_EV_TRANSFER_IN) {
    *status = 201;
    return transfer_body(evs[0], evs[1]);
  }
  if (n != 1)
    return NULL;
  const sf_event_t *e = evs[0];
  switch (e->type) {
  case SF_EV_PRODUCT_CREATED:
    *status = 201;
    return product_body(s, e, "created_at");
  case SF_EV_PRODUCT_UPDATED:
  case SF_EV_PRODUCT_DISCONTINUED:
  case SF_EV_PRODUCT_POLICY_SET:
    *status = 200;
    return product_body(s, e, "updated_at");
  case SF_EV_STORE_OPENED:
    *status = 201;
    return store_body(s, e, "created_at");
  case SF_EV_STORE_UPDATED:
  case SF_EV_STORE_CLOSED:
    *status = 200;
    return store_body(s, e, "updated_at");
  case SF_EV_STOCK_MOVED:
    *status = 201;
    return movement_body(e);
  case SF_EV_ORDER_PLACED:
    *status = 201;
    return order_body(e);
  case SF_EV_ORDER_FULFILLED:
  case SF_EV_ORDER_CANCELLED:
    *status = 200;
    return order_body(e);
  default:
    return NULL;
  }
}

void cmd_reply_position(char *out, size_t cap, bool catalog, int32_t partition,
                        int64_t offset) {
  snprintf(out, cap, "%s-%" PRId32 "-%" PRId64, catalog ? "catalog" : "stock",
           partition, offset);
}

char *cmd_reply_finish(json_t *body, const char *const *positions, size_t n) {
  char joined[512];
  size_t len = 0;
  joined[0] = '\0';
  for (size_t i = 0; i < n && len < sizeof(joined); i++)
    len += (size_t)snprintf(joined + len, sizeof(joined) - len, "%s%s",
                            i ? "," : "", positions[i]);
  if (json_object_set_new(body, "position", json_string(joined)) != 0)
    return NULL;
  return json_dumps(body, JSON_COMPACT);
}

/* ctl_stock: stock levels and movements (see ctl_stock.h). */
#include "ctl_stock.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

#define PAGE_LIMIT 500
#define PAGES_MAX 10000 /* 5 million rows: a bug, not a store */

static const ctl_column_t k_cols[] = {
    {"PRODUCT", false, 0},
    {"SKU", false, 24},
    {"NAME", false, 32},
    {"ON_HAND", true, 0},
    {"RESERVED", true, 0},
    {"AVAILABLE", true, 0},
    {"VERSION", true, 0},
    {"UPDATED", false, 0},
};
#define N_COLS (sizeof k_cols / sizeof k_cols[0])

static const char *q(const char *s) { return s ? s : "?"; }

/* A cell's text: strings as they are, integers in decimal, null as "-". */
static const char *cell(const json_t *row, const char *key, char *buf,
                        size_t cap) {
  const json_t *v = json_object_get(row, key);
  if (json_is_string(v))
    return json_string_value(v);
  if (json_is_integer(v)) {
    snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return buf;
  }
  return NULL;
}

int ctl_stock_table(const json_t *rows, ctl_table_t **out) {
  if (!json_is_array(rows))
    return SF_EINVAL;
  ctl_table_t *t = NULL;
  int rc = ctl_table_new(&t, k_cols, N_COLS);
  if (rc)
    return rc;
  size_t i;
  const json_t *row;
  json_array_foreach(rows, i, row) {
    if (!json_is_object(row)) {
      rc = SF_EINVAL;
      break;
    }
    char b[4][32];
    const char *cells[N_COLS] = {
        cell(row, "product_id", NULL, 0),
        cell(row, "sku", NULL, 0),
        cell(row, "name", NULL, 0),
        cell(row, "on_hand", b[0], 32),
        cell(row, "reserved", b[1], 32),
        cell(row, "available", b[2], 32),
        cell(row, "version", b[3], 32),
        cell(row, "updated_at", NULL, 0),
    };
    rc = ctl_table_add(t, cells);
    if (rc)
      break;
  }
  if (rc) {
    ctl_table_destroy(t);
    return rc;
  }
  *out = t;
  return 0;
}

/* GETs path from the query service and parses the JSON answer. Returns
 * CTL_EXIT_OK with *out, or the exit code after reporting. */
static int get_json(const ctl_args_t *a, ctl_http_t *h, const char *token,
                    const char *path, const char *what, json_t **out,
                    FILE *err) {
  ctl_resp_t resp;
  int rc = ctl_http_request(h, "GET", a->query_url, path, token, NULL, NULL,
                            &resp);
  if (rc || resp.status != 200) {
    rc = ctl_http_report(&resp, what, err);
    ctl_resp_free(&resp);
    return rc;
  }
  json_error_t je;
  *out = json_loadb(resp.body, resp.len, 0, &je);
  ctl_resp_free(&resp);
  if (!*out) {
    fprintf(err, "stockflowctl: %s: the answer is not JSON: %s\n", what,
            je.text);
    return CTL_EXIT_FAIL;
  }
  return CTL_EXIT_OK;
}

/* Every row of the store, page after page, into rows. */
static int store_rows(const ctl_args_t *a, ctl_http_t *h, const char *token,
                      const char *store, json_t *rows, FILE *err) {
  char *cursor = NULL;
  int rc = CTL_EXIT_OK;
  for (int page = 0; page < PAGES_MAX; page++) {
    char path[1024];
    snprintf(path, sizeof path, "/v1/stores/%s/inventory?limit=%d%s%s%s",
             store, PAGE_LIMIT, a->below_reorder ? "&below_reorder=true" : "",
             cursor ? "&cursor=" : "", cursor ? cursor : "");
    free(cursor);
    cursor = NULL;
    json_t *ans = NULL;
    rc = get_json(a, h, token, path, "stock", &ans, err);
    if (rc)
      break;
    json_t *items = json_object_get(ans, "items");
    const char *next = json_string_value(json_object_get(ans, "next_cursor"));
    if (!json_is_array(items) || json_array_extend(rows, items) != 0) {
      fputs("stockflowctl: stock: the answer has no items\n", err);
      json_decref(ans);
      rc = CTL_EXIT_FAIL;
      break;
    }
    if (next) {
      cursor = ctl_http_escape(h, next);
      if (!cursor) {
        json_decref(ans);
        rc = CTL_EXIT_FAIL;
        break;
      }
    }
    json_decref(ans);
    if (!cursor)
      break;
  }
  free(cursor);
  return rc;
}

int ctl_stock_show(const ctl_args_t *a, ctl_http_t *h, const char *token,
                   FILE *out, FILE *err) {
  char *store = ctl_http_escape(h, a->store);
  char *product = a->product ? ctl_http_escape(h, a->product) : NULL;
  json_t *rows = json_array();
  int rc = CTL_EXIT_OK;
  if (!store || (a->product && !product) || !rows) {
    fputs("stockflowctl: out of memory\n", err);
    rc = CTL_EXIT_FAIL;
    goto done;
  }
  json_t *one = NULL;
  if (product) {
    char path[1024];
    snprintf(path, sizeof path, "/v1/stores/%s/inventory/%s", store, product);
    rc = get_json(a, h, token, path, "stock", &one, err);
    if (!rc && json_array_append_new(rows, one) != 0)
      rc = CTL_EXIT_FAIL;
  } else {
    rc = store_rows(a, h, token, store, rows, err);
  }
  if (rc)
    goto done;
  if (a->json) {
    json_dumpf(product ? json_array_get(rows, 0) : rows, out,
               JSON_COMPACT | JSON_ENCODE_ANY);
    fputc('\n', out);
    goto done;
  }
  ctl_table_t *t = NULL;
  if (ctl_stock_table(rows, &t)) {
    fputs("stockflowctl: stock: unexpected rows in the answer\n", err);
    rc = CTL_EXIT_FAIL;
    goto done;
  }
  ctl_table_print(t, out);
  if (ctl_table_rows(t) == 0)
    fprintf(err, "(no stock rows%s)\n",
            a->below_reorder ? " below the reorder level" : "");
  ctl_table_destroy(t);
done:
  json_decref(rows);
  free(store);
  free(product);
  return rc;
}

json_t *ctl_stock_move_body(const ctl_args_t *a) {
  return json_pack("{s:s, s:s, s:I, s:s*, s:s*}", "product_id", a->product,
                   "type", a->type, "quantity", (json_int_t)a->quantity,
                   "reason", a->reason, "reference", a->reference);
}

int ctl_stock_move(const ctl_args_t *a, ctl_http_t *h, const char *token,
                   FILE *out, FILE *err) {
  json_t *body = ctl_stock_move_body(a);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  char *store = ctl_http_escape(h, a->store);
  if (!text || !store) {
    fputs("stockflowctl: move: out of memory, or an argument is not "
          "UTF-8\n",
          err);
    free(text);
    free(store);
    return CTL_EXIT_USAGE;
  }
  char path[512];
  snprintf(path, sizeof path, "/v1/stores/%s/transactions", store);
  free(store);
  ctl_resp_t resp;
  int rc = ctl_http_request(h, "POST", a->command_url, path, token, a->key,
                            text, &resp);
  free(text);
  if (rc || resp.status != 201) {
    rc = ctl_http_report(&resp, "move", err);
    ctl_resp_free(&resp);
    return rc;
  }
  json_t *ans = json_loadb(resp.body, resp.len, 0, NULL);
  if (a->json || !ans) {
    fprintf(out, "%s\n", resp.body);
  } else {
    char b[5][32];
    const char *type = cell(ans, "type", NULL, 0);
    const char *qty = cell(ans, "quantity", b[0], 32);
    const char *pos = cell(ans, "position", NULL, 0);
    const char *txn = cell(ans, "transaction_id", NULL, 0);
    fprintf(out,
            "%s of %s accepted: on_hand %s, reserved %s, available %s, "
            "version %s\ntransaction %s at %s\n",
            type ? type : a->type, q(qty), q(cell(ans, "on_hand", b[1], 32)),
            q(cell(ans, "reserved", b[2], 32)),
            q(cell(ans, "available", b[3], 32)),
            q(cell(ans, "version", b[4], 32)), q(txn), q(pos));
  }
  json_decref(ans);
  ctl_resp_free(&resp);
  return CTL_EXIT_OK;
}

/* qry_params: validation of the query service's inputs, cursors, position
 * tokens and price formatting. See qry_params.h for the contract. Cursors
 * use libsodium's base64url codec (strict: it rejects padding, characters
 * outside the alphabet and non-zero trailing bits). */
#include "qry_params.h"

#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "sf/err.h"

/* Parses 1..max_digits decimal digits into [0, max]; no sign, no leading
 * zero unless the number is 0. Returns 0 or SF_EINVAL. */
static int parse_digits(const char *s, size_t len, size_t max_digits,
                        int64_t max, int64_t *out) {
  if (len == 0 || len > max_digits)
    return SF_EINVAL;
  if (len > 1 && s[0] == '0')
    return SF_EINVAL;
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return SF_EINVAL;
    int d = s[i] - '0';
    if (v > (max - d) / 10)
      return SF_EINVAL;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int qry_parse_limit(const char *text, int *out) {
  if (!text) {
    *out = QRY_LIMIT_DEFAULT;
    return 0;
  }
  int64_t v;
  if (parse_digits(text, strlen(text), 3, QRY_LIMIT_MAX, &v) != 0 || v < 1)
    return SF_EINVAL;
  *out = (int)v;
  return 0;
}

int qry_parse_bool(const char *text, bool def, bool *out) {
  if (!text) {
    *out = def;
    return 0;
  }
  if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) {
    *out = true;
    return 0;
  }
  if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0) {
    *out = false;
    return 0;
  }
  return SF_EINVAL;
}

#define CURSOR_BIN_LEN 17 /* kind byte + 16 id bytes */

int qry_cursor_encode(qry_cursor_kind_t kind, const char *id,
                      char out[QRY_CURSOR_CAP]) {
  sf_uuid_t u;
  if (!id || sf_uuid_parse(id, &u) != 0)
    return SF_EINVAL;
  unsigned char bin[CURSOR_BIN_LEN];
  bin[0] = (unsigned char)kind;
  memcpy(bin + 1, u.b, sizeof(u.b));
  sodium_bin2base64(out, QRY_CURSOR_CAP, bin, sizeof(bin),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return 0;
}

int qry_cursor_decode(const char *text, qry_cursor_kind_t kind,
                      char id_out[SF_UUID_STR_LEN + 1]) {
  if (!text)
    return SF_EPARSE;
  size_t len = strlen(text);
  if (len + 1 != sodium_base64_ENCODED_LEN(CURSOR_BIN_LEN,
                                           sodium_base64_VARIANT_URLSAFE_NO_PADDING))
    return SF_EPARSE;
  unsigned char bin[CURSOR_BIN_LEN + 1];
  size_t bin_len = 0;
  const char *end = NULL;
  if (sodium_base642bin(bin, sizeof(bin), text, len, NULL, &bin_len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return SF_EPARSE;
  if (end != text + len || bin_len != CURSOR_BIN_LEN ||
      bin[0] != (unsigned char)kind)
    return SF_EPARSE;
  sf_uuid_t u;
  memcpy(u.b, bin + 1, sizeof(u.b));
  sf_uuid_format(&u, id_out);
  return 0;
}

bool qry_tx_type_valid(const char *t) {
  static const char *const types[] = {
      "receipt", "sale", "return", "adjustment",
      "count", "transfer_out", "transfer_in", "order_placed",
      "order_fulfilled", "order_cancelled", "order_expired"};
  if (!t)
    return false;
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    if (strcmp(t, types[i]) == 0)
      return true;
  return false;
}

bool qry_order_status_valid(const char *st) {
  return st && (strcmp(st, "placed") == 0 || strcmp(st, "fulfilled") == 0 ||
                strcmp(st, "cancelled") == 0);
}

int qry_position_parse(const char *text, qry_position_t *out) {
  if (!text)
    return SF_EPARSE;
  qry_position_t p;
  const char *rest;
  if (strncmp(text, "stock-", 6) == 0) {
    p.kind = QRY_TOPIC_STOCK;
    rest = text + 6;
  } else if (strncmp(text, "catalog-", 8) == 0) {
    p.kind = QRY_TOPIC_CATALOG;
    rest = text + 8;
  } else {
    return SF_EPARSE;
  }
  const char *dash = strchr(rest, '-');
  if (!dash)
    return SF_EPARSE;
  int64_t part, off;
  if (parse_digits(rest, (size_t)(dash - rest), 10, INT32_MAX, &part) != 0 ||
      parse_digits(dash + 1, strlen(dash + 1), 19, INT64_MAX, &off) != 0)
    return SF_EPARSE;
  p.partition = (int32_t)part;
  p.offset = off;
  *out = p;
  return 0;
}

int qry_positions_parse(const char *text, qry_position_t *out, size_t cap,
                        size_t *n) {
  if (!text || !out || !n)
    return SF_EPARSE;
  size_t count = 0;
  const char *p = text;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len && (*p == ' ' || *p == '\t')) {
      p++;
      len--;
    }
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
      len--;
    /* "catalog-" + 10 digits + "-" + 19 digits fits in 64 bytes. */
    char tok[64];
    if (len == 0 || len >= sizeof(tok) || count == cap)
      return SF_EPARSE;
    memcpy(tok, p, len);
    tok[len] = '\0';
    if (qry_position_parse(tok, &out[count]) != 0)
      return SF_EPARSE;
    count++;
    if (!end)
      break;
    p = end + 1;
  }
  *n = count;
  return 0;
}

/* True when one comma-separated item of value, trimmed of blanks and, when
 * cut_params, of everything from ';', equals want (ignoring case). */
static bool any_item(const char *value, bool cut_params, const char *want) {
  if (!value || !want)
    return false;
  size_t wlen = strlen(want);
  const char *p = value;
  for (;;) {
    size_t len = strcspn(p, ",");
    const char *next = p[len] ? p + len + 1 : NULL;
    if (cut_params) {
      size_t semi = strcspn(p, ";");
      if (semi < len)
        len = semi;
    }
    while (len && (*p == ' ' || *p == '\t')) {
      p++;
      len--;
    }
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
      len--;
    if (len == wlen && strncasecmp(p, want, len) == 0)
      return true;
    if (!next)
      return false;
    p = next;
  }
}

bool qry_header_has_token(const char *value, const char *token) {
  return any_item(value, false, token);
}

bool qry_accepts_media(const char *accept, const char *media) {
  return any_item(accept, true, media);
}

int qry_price_normalize(const char *text, char *out, size_t cap) {
  if (!text || !*text)
    return SF_EINVAL;
  size_t len = strlen(text);
  const char *dot = strchr(text, '.');
  size_t int_len = dot ? (size_t)(dot - text) : len;
  if (int_len == 0)
    return SF_EINVAL;
  for (size_t i = 0; i < len; i++)
    if ((text[i] < '0' || text[i] > '9') && text + i != dot)
      return SF_EINVAL;
  size_t frac_len = dot ? len - int_len - 1 : 0;
  if (dot && frac_len == 0)
    return SF_EINVAL;
  /* Keep at least two fraction digits, padding with zeros. */
  while (frac_len > 2 && dot[frac_len] == '0')
    frac_len--;
  size_t need = int_len + 1 + (frac_len > 2 ? frac_len : 2) + 1;
  if (need > cap)
    return SF_ETOOBIG;
  memcpy(out, text, int_len);
  size_t o = int_len;
  out[o++] = '.';
  for (size_t i = 0; i < frac_len; i++)
    out[o++] = dot[1 + i];
  for (size_t i = frac_len; i < 2; i++)
    out[o++] = '0';
  out[o] = '\0';
  return 0;
}

int qry_like_pattern(const char *q, char *out, size_t cap) {
  if (!q)
    return SF_EINVAL;
  size_t len = strlen(q);
  if (len == 0 || len > QRY_Q_MAX)
    return SF_EINVAL;
  size_t o = 0;
  if (cap < 3)
    return SF_ETOOBIG;
  out[o++] = '%';
  for (size_t i = 0; i < len; i++) {
    bool esc = q[i] == '\\' || q[i] == '%' || q[i] == '_';
    if (o + (esc ? 2 : 1) + 2 > cap)
      return SF_ETOOBIG;
    if (esc)
      out[o++] = '\\';
    out[o++] = q[i];
  }
  out[o++] = '%';
  out[o] = '\0';
  return 0;
}

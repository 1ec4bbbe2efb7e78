/* auth: password hashing, tokens, roles, the permission rule and the login
 * limiter; pure functions over libsodium and uthash. See sf/auth.h. */
#include "sf/auth.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>

#include "sf/err.h"

static const char *const role_names[] = {"viewer", "clerk", "manager",
                                         "admin"};

int sf_role_parse(const char *text, sf_role_t *out) {
  if (!text)
    return SF_EINVAL;
  for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
    if (strcmp(text, role_names[i]) == 0) {
      *out = (sf_role_t)i;
      return 0;
    }
  return SF_EINVAL;
}

const char *sf_role_name(sf_role_t role) {
  if ((unsigned)role < sizeof(role_names) / sizeof(role_names[0]))
    return role_names[role];
  return "unknown";
}

const char *sf_auth_action_name(sf_auth_action_t a) {
  static const char *const names[SF_ACT_COUNT] = {
      "read_catalog", "read_store", "catalog_write", "stock_write",
      "stock_count_adjust", "order_write", "transfer", "user_admin"};
  if ((unsigned)a < SF_ACT_COUNT)
    return names[a];
  return "unknown";
}

bool sf_auth_has_store(const sf_principal_t *p, const char *store_id) {
  if (!p)
    return false;
  if (p->role == SF_ROLE_ADMIN)
    return true;
  if (!store_id || !sf_uuid_valid(store_id))
    return false;
  for (size_t i = 0; i < p->n_stores; i++)
    if (strncasecmp(p->store_ids[i], store_id, SF_UUID_STR_LEN) == 0)
      return true;
  return false;
}

bool sf_auth_sees_all_stores(const sf_principal_t *p) {
  return p && p->role == SF_ROLE_ADMIN;
}

/* The role table: which roles may do an action (on their own stores for the
 * store-scoped ones). Admins pass every check before the table. */
bool sf_auth_allows(const sf_principal_t *p, sf_auth_action_t action,
                    const char *store_id) {
  if (!p || (unsigned)p->role > SF_ROLE_ADMIN)
    return false;
  if (p->role == SF_ROLE_ADMIN)
    return (unsigned)action < SF_ACT_COUNT;
  switch (action) {
  case SF_ACT_READ_CATALOG:
    return true;
  case SF_ACT_CATALOG_WRITE:
  case SF_ACT_USER_ADMIN:
    return false;
  case SF_ACT_READ_STORE:
    return sf_auth_has_store(p, store_id);
  case SF_ACT_STOCK_WRITE:
  case SF_ACT_ORDER_WRITE:
    return (p->role == SF_ROLE_MANAGER || p->role == SF_ROLE_CLERK) &&
           sf_auth_has_store(p, store_id);
  case SF_ACT_STOCK_COUNT_ADJUST:
  case SF_ACT_TRANSFER:
    return p->role == SF_ROLE_MANAGER && sf_auth_has_store(p, store_id);
  }
  return false;
}

/* ---- passwords ---- */

int sf_auth_password_hash(const char *password, char out[SF_AUTH_PWHASH_MAX]) {
  _Static_assert(crypto_pwhash_STRBYTES <= SF_AUTH_PWHASH_MAX,
                 "SF_AUTH_PWHASH_MAX too small");
  if (!password)
    return SF_EINVAL;
  size_t len = strlen(password);
  if (len == 0 || len > SF_AUTH_PASSWORD_MAX)
    return SF_EINVAL;
  /* crypto_pwhash_str uses argon2id (the library default since 1.0.15). */
  if (crypto_pwhash_str_alg(out, password, len,
                            crypto_pwhash_OPSLIMIT_INTERACTIVE,
                            crypto_pwhash_MEMLIMIT_INTERACTIVE,
                            crypto_pwhash_ALG_ARGON2ID13) != 0)
    return SF_ENOMEM;
  return 0;
}

bool sf_auth_password_verify(const char *hash, const char *password) {
  if (!hash || !password)
    return false;
  size_t len = strlen(password);
  if (len > SF_AUTH_PASSWORD_MAX)
    return false;
  /* A hash string longer than the buffer libsodium reads is malformed. */
  if (strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
    return false;
  return crypto_pwhash_str_verify(hash, password, len) == 0;
}

const char *sf_auth_password_check(const char *password) {
  size_t len = password ? strlen(password) : 0;
  if (len < SF_AUTH_PASSWORD_MIN)
    return "password: must be at least 8 characters";
  if (len > SF_AUTH_PASSWORD_MAX)
    return "password: must be at most 1024 bytes";
  return NULL;
}

int sf_auth_username_normalize(const char *in,
                               char out[SF_AUTH_USERNAME_MAX + 1]) {
  if (!in)
    return SF_EINVAL;
  size_t i = 0;
  for (; in[i]; i++) {
    if (i >= SF_AUTH_USERNAME_MAX)
      return SF_EINVAL;
    unsigned char c = (unsigned char)in[i];
    if (c >= 'A' && c <= 'Z')
      c = (unsigned char)(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '@' || c == '-'))
      return SF_EINVAL;
    out[i] = (char)c;
  }
  if (i == 0)
    return SF_EINVAL;
  out[i] = '\0';
  return 0;
}

bool sf_auth_email_valid(const char *email) {
  if (!email)
    return false;
  size_t len = strlen(email);
  if (len < 3 || len > SF_AUTH_EMAIL_MAX)
    return false;
  const char *at = strchr(email, '@');
  if (!at || at == email || at[1] == '\0' || strchr(at + 1, '@'))
    return false;
  for (const unsigned char *p = (const unsigned char *)email; *p; p++)
    if (*p <= 0x20 || *p == 0x7f)
      return false;
  return true;
}

/* ---- tokens ---- */

void sf_auth_token_new(char out[SF_AUTH_TOKEN_LEN + 1]) {
  unsigned char raw[SF_AUTH_TOKEN_BYTES];
  randombytes_buf(raw, sizeof(raw));
  sodium_bin2base64(out, SF_AUTH_TOKEN_LEN + 1, raw, sizeof(raw),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof(raw));
}

static bool b64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

bool sf_auth_token_valid(const char *text) {
  if (!text)
    return false;
  for (size_t i = 0; i < SF_AUTH_TOKEN_LEN; i++)
    if (!b64url_char(text[i]))
      return false;
  if (text[SF_AUTH_TOKEN_LEN] != '\0')
    return false;
  /* 32 bytes = 256 bits in 43 characters of 6 bits: the last character
   * carries 4 bits, its 2 low bits must be zero (canonical encoding). */
  unsigned char raw[SF_AUTH_TOKEN_BYTES];
  size_t len = 0;
  int rc = sodium_base642bin(raw, sizeof(raw), text, SF_AUTH_TOKEN_LEN, NULL,
                             &len, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(raw, sizeof(raw));
  return rc == 0 && len == SF_AUTH_TOKEN_BYTES;
}

int sf_auth_token_hash(const char *token, uint8_t out[SF_AUTH_HASH_BYTES]) {
  if (!sf_auth_token_valid(token))
    return SF_EINVAL;
  crypto_hash_sha256(out, (const unsigned char *)token, SF_AUTH_TOKEN_LEN);
  return 0;
}

bool sf_auth_hash_equal(const uint8_t a[SF_AUTH_HASH_BYTES],
                        const uint8_t b[SF_AUTH_HASH_BYTES]) {
  return sodium_memcmp(a, b, SF_AUTH_HASH_BYTES) == 0;
}

void sf_auth_hash_bytea(const uint8_t h[SF_AUTH_HASH_BYTES], char out[67]) {
  out[0] = '\\';
  out[1] = 'x';
  sodium_bin2hex(out + 2, 65, h, SF_AUTH_HASH_BYTES);
}

const char *sf_auth_bearer(const char *header) {
  if (!header || strncasecmp(header, "Bearer ", 7) != 0)
    return NULL;
  const char *t = header + 7;
  while (*t == ' ')
    t++;
  return sf_auth_token_valid(t) ? t : NULL;
}

/* ---- account administration ---- */

void sf_auth_password_new(char out[SF_AUTH_TOKEN_LEN + 1]) {
  /* 256 random bits, like a token: well past any guessing, and within the
   * sign-up rules (43 bytes). */
  sf_auth_token_new(out);
}

bool sf_auth_is_self(const sf_principal_t *p, const char *user_id) {
  return p && user_id && sf_uuid_valid(user_id) &&
         strncasecmp(p->user_id, user_id, SF_UUID_STR_LEN) == 0;
}

bool sf_auth_may_see_account(const sf_principal_t *p, const char *user_id) {
  return p && (p->role == SF_ROLE_ADMIN || sf_auth_is_self(p, user_id));
}

int sf_auth_list_limit(const char *text, int *out) {
  if (!text) {
    *out = SF_AUTH_LIST_DEFAULT;
    return 0;
  }
  int v = 0;
  if (!*text || strlen(text) > 3)
    return SF_EINVAL;
  for (const char *c = text; *c; c++) {
    if (*c < '0' || *c > '9')
      return SF_EINVAL;
    v = v * 10 + (*c - '0');
  }
  if (v < 1 || v > SF_AUTH_LIST_MAX)
    return SF_EINVAL;
  *out = v;
  return 0;
}

int sf_auth_cursor_encode(sf_auth_list_t kind, const char *id,
                          char out[SF_AUTH_CURSOR_LEN + 1]) {
  uint8_t raw[17];
  sf_uuid_t u;
  if (!id || sf_uuid_parse(id, &u) != 0)
    return SF_EINVAL;
  raw[0] = (uint8_t)kind;
  memcpy(raw + 1, u.b, 16);
  _Static_assert(sodium_base64_ENCODED_LEN(
                     17, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ==
                     SF_AUTH_CURSOR_LEN + 1,
                 "SF_AUTH_CURSOR_LEN");
  sodium_bin2base64(out, SF_AUTH_CURSOR_LEN + 1, raw, sizeof(raw),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return 0;
}

int sf_auth_cursor_decode(sf_auth_list_t kind, const char *text,
                          char out[SF_UUID_STR_LEN + 1]) {
  uint8_t raw[17];
  size_t n = 0;
  const char *end = NULL;
  if (!text || strlen(text) != SF_AUTH_CURSOR_LEN ||
      sodium_base642bin(raw, sizeof(raw), text, SF_AUTH_CURSOR_LEN, NULL, &n,
                        &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      n != sizeof(raw) || *end != '\0' || raw[0] != (uint8_t)kind)
    return SF_EINVAL;
  sf_uuid_t u;
  memcpy(u.b, raw + 1, 16);
  sf_uuid_format(&u, out);
  return 0;
}

/* ---- login limiter ---- */

#define KEY_MAX 255

typedef struct lim_entry {
  char key[KEY_MAX + 1];
  int n;    /* attempts recorded, <= max_attempts */
  int head; /* index of the oldest attempt in at[] */
  UT_hash_handle hh;
  uint64_t at[]; /* ring of attempt times, max_attempts long */
} lim_entry_t;

struct sf_auth_limiter {
  sf_auth_limiter_opts_t o;
  lim_entry_t *by_key; /* uthash; iteration order = least recently hit first */
  size_t n;
};

int sf_auth_limiter_new(sf_auth_limiter_t **out,
                        const sf_auth_limiter_opts_t *opts) {
  sf_auth_limiter_t *l = calloc(1, sizeof(*l));
  if (!l)
    return SF_ENOMEM;
  if (opts)
    l->o = *opts;
  if (l->o.max_attempts <= 0)
    l->o.max_attempts = 5;
  if (l->o.window_ms == 0)
    l->o.window_ms = 60000;
  if (l->o.max_keys == 0)
    l->o.max_keys = 10000;
  *out = l;
  return 0;
}

static void lim_remove(sf_auth_limiter_t *l, lim_entry_t *e) {
  HASH_DEL(l->by_key, e);
  free(e);
  l->n--;
}

void sf_auth_limiter_destroy(sf_auth_limiter_t *l) {
  if (!l)
    return;
  lim_entry_t *e, *tmp;
  HASH_ITER(hh, l->by_key, e, tmp) { lim_remove(l, e); }
  free(l);
}

static void key_copy(const char *key, char out[KEY_MAX + 1]) {
  size_t len = strnlen(key, KEY_MAX);
  memcpy(out, key, len);
  out[len] = '\0';
}

static lim_entry_t *lim_find(const sf_auth_limiter_t *l, const char *key) {
  char k[KEY_MAX + 1];
  key_copy(key, k);
  lim_entry_t *e = NULL;
  HASH_FIND_STR(l->by_key, k, e);
  return e;
}

/* Drops the attempts of e older than the window. */
static void lim_expire(const sf_auth_limiter_t *l, lim_entry_t *e,
                       uint64_t now_ms) {
  int cap = l->o.max_attempts;
  while (e->n > 0 && now_ms >= e->at[e->head] &&
         now_ms - e->at[e->head] >= l->o.window_ms) {
    e->head = (e->head + 1) % cap;
    e->n--;
  }
}

uint64_t sf_auth_limiter_hit(sf_auth_limiter_t *l, const char *key,
                             uint64_t now_ms) {
  if (!l || !key)
    return 0;
  int cap = l->o.max_attempts;
  lim_entry_t *e = lim_find(l, key);
  if (e) {
    lim_expire(l, e, now_ms);
    HASH_DEL(l->by_key, e); /* re-added: most recently hit last */
    if (e->n >= cap) {
      HASH_ADD_STR(l->by_key, key, e); /* a key under attack stays */
      uint64_t until = e->at[e->head] + l->o.window_ms;
      return until > now_ms ? until - now_ms : 1;
    }
  } else {
    if (l->n >= l->o.max_keys) {
      /* Full: forget the least recently hit key (the head of the table).
       * An attacker spraying usernames can push a key out early, but the
       * per-address key still limits that attacker. */
      lim_remove(l, l->by_key);
    }
    e = calloc(1, sizeof(*e) + (size_t)cap * sizeof(uint64_t));
    if (!e)
      return 0;
    key_copy(key, e->key);
    l->n++;
  }
  e->at[(e->head + e->n) % cap] = now_ms;
  e->n++;
  HASH_ADD_STR(l->by_key, key, e);
  return 0;
}

void sf_auth_limiter_undo(sf_auth_limiter_t *l, const char *key) {
  if (!l || !key)
    return;
  lim_entry_t *e = lim_find(l, key);
  if (!e || e->n == 0)
    return;
  e->n--;
  if (e->n == 0)
    lim_remove(l, e);
}

void sf_auth_limiter_clear(sf_auth_limiter_t *l, const char *key) {
  if (!l || !key)
    return;
  lim_entry_t *e = lim_find(l, key);
  if (e)
    lim_remove(l, e);
}

size_t sf_auth_limiter_size(const sf_auth_limiter_t *l) {
  return l ? l->n : 0;
}

/* auth: the pure parts of accounts and authorization.
 *
 * Passwords are hashed with argon2id through libsodium's crypto_pwhash_str
 * (interactive limits: about 64 MiB and a few tens of milliseconds, so the
 * callers run hashing and verification on the libuv thread pool, never on
 * the loop). Session tokens are 32 bytes from randombytes_buf written as
 * unpadded base64url (43 characters); only SHA-256 of the token text is
 * stored. Token hashes are compared with sodium_memcmp (constant time).
 *
 * sf_auth_allows() is the one truth of who may do what (API.md, "Roles"):
 *   admin    everything
 *   manager  stock writes including counts and adjustments, transfers,
 *            orders and reads, each only for the stores in store_ids
 *   clerk    stock receipts, sales and returns, and orders, of its stores;
 *            no counts, no adjustments, no transfers; reads of its stores
 *   viewer   reads of its stores
 * The catalog (products, stores) is written by admins only; reading the
 * catalog is open to every authenticated user. Store lists are filtered by
 * the caller with sf_auth_sees_all_stores / sf_auth_has_store.
 *
 * The login limiter counts attempts per key (a username, a client address)
 * in a sliding window with bounded memory.
 *
 * Everything here is thread-safe except a limiter, which belongs to one
 * thread. libsodium must be initialised (sodium_init) before use. */
#ifndef SF_AUTH_H
#define SF_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/uuid.h"

#define SF_AUTH_TOKEN_BYTES 32
#define SF_AUTH_TOKEN_LEN 43   /* base64url of 32 bytes, no padding, no NUL */
#define SF_AUTH_HASH_BYTES 32  /* SHA-256 of the token text */
#define SF_AUTH_PWHASH_MAX 128 /* crypto_pwhash_STRBYTES, with its NUL */
#define SF_AUTH_USERNAME_MAX 64
#define SF_AUTH_EMAIL_MAX 254
#define SF_AUTH_PASSWORD_MIN 8
#define SF_AUTH_PASSWORD_MAX 1024
#define SF_AUTH_MAX_STORES 1000 /* store_ids of one user */

typedef enum sf_role {
  SF_ROLE_VIEWER = 0,
  SF_ROLE_CLERK,
  SF_ROLE_MANAGER,
  SF_ROLE_ADMIN,
} sf_role_t;

typedef enum sf_auth_action {
  SF_ACT_READ_CATALOG = 0,   /* products and the store list: any user */
  SF_ACT_READ_STORE,         /* a store's stock, transactions, orders, changes */
  SF_ACT_CATALOG_WRITE,      /* products and stores: admin */
  SF_ACT_STOCK_WRITE,        /* receipt, sale, return */
  SF_ACT_STOCK_COUNT_ADJUST, /* count, adjustment */
  SF_ACT_ORDER_WRITE,        /* place, fulfil, cancel */
  SF_ACT_TRANSFER,           /* checked on both stores of the transfer */
  SF_ACT_USER_ADMIN,         /* user administration (list, create, role,
                              disable, reset): admin */
} sf_auth_action_t;
#define SF_ACT_COUNT 8

/* Who is acting. store_ids points to n_stores lowercase UUID strings (each
 * SF_UUID_STR_LEN + 1 bytes); whoever builds the principal owns them. */
typedef struct sf_principal {
  char user_id[SF_UUID_STR_LEN + 1];
  char username[SF_AUTH_USERNAME_MAX + 1];
  sf_role_t role;
  size_t n_stores;
  const char (*store_ids)[SF_UUID_STR_LEN + 1];
} sf_principal_t;

/* "admin", "manager", "clerk", "viewer" (exact, lowercase). Returns 0 or
 * SF_EINVAL. */
int sf_role_parse(const char *text, sf_role_t *out);
const char *sf_role_name(sf_role_t role);
const char *sf_auth_action_name(sf_auth_action_t a);

/* True when p may perform action on store_id. store_id is ignored for the
 * store-independent actions (READ_CATALOG, CATALOG_WRITE, USER_ADMIN) and
 * may be NULL then; for the others a NULL or malformed store_id is refused
 * unless p is an admin. Store ids compare case-insensitively. NULL p is
 * refused. */
bool sf_auth_allows(const sf_principal_t *p, sf_auth_action_t action,
                    const char *store_id);

/* True for admins: lists are not filtered. */
bool sf_auth_sees_all_stores(const sf_principal_t *p);
/* True when store_id is in p's store_ids (admins: always). */
bool sf_auth_has_store(const sf_principal_t *p, const char *store_id);

/* Hashes password (NUL-terminated) into out (SF_AUTH_PWHASH_MAX bytes) with
 * argon2id at libsodium's interactive limits. Slow: call off the loop.
 * Returns 0, SF_EINVAL (length outside 1..SF_AUTH_PASSWORD_MAX) or
 * SF_ENOMEM (libsodium could not get the memory). */
int sf_auth_password_hash(const char *password, char out[SF_AUTH_PWHASH_MAX]);

/* True when password matches hash (a crypto_pwhash_str string). False for
 * a malformed hash. Slow: call off the loop. */
bool sf_auth_password_verify(const char *hash, const char *password);

/* Checks the sign-up rules: password of SF_AUTH_PASSWORD_MIN..MAX bytes.
 * Returns NULL when fine, else a static message for a 422. */
const char *sf_auth_password_check(const char *password);

/* Normalises a username into out (lowercase ASCII): 1..64 characters of
 * [A-Za-z0-9._@-]. Returns 0 or SF_EINVAL. */
int sf_auth_username_normalize(const char *in,
                               char out[SF_AUTH_USERNAME_MAX + 1]);

/* Loose e-mail check: 3..254 bytes, one '@' not at either end, no spaces or
 * control bytes. */
bool sf_auth_email_valid(const char *email);

/* A new token (randombytes_buf, 32 bytes) as unpadded base64url text in
 * out, NUL-terminated. */
void sf_auth_token_new(char out[SF_AUTH_TOKEN_LEN + 1]);

/* True when text has the shape of a token (43 base64url characters). */
bool sf_auth_token_valid(const char *text);

/* SHA-256 of the token text. Returns 0 or SF_EINVAL for a malformed token. */
int sf_auth_token_hash(const char *token, uint8_t out[SF_AUTH_HASH_BYTES]);

/* Constant-time equality of two token hashes (sodium_memcmp). */
bool sf_auth_hash_equal(const uint8_t a[SF_AUTH_HASH_BYTES],
                        const uint8_t b[SF_AUTH_HASH_BYTES]);

/* Writes the hash as PostgreSQL bytea hex input ("\x" + 64 hex digits) into
 * out (at least 67 bytes). */
void sf_auth_hash_bytea(const uint8_t h[SF_AUTH_HASH_BYTES], char out[67]);

/* Parses "Bearer <token>" (scheme case-insensitive, one or more spaces).
 * Returns a pointer into header to the token, or NULL when header is NULL,
 * another scheme, or the token is malformed. */
const char *sf_auth_bearer(const char *header);

/* ---- account administration ---- */

/* A password for an admin's reset or a user created without one: 256
 * random bits as 43 base64url characters (it meets the sign-up rules). */
void sf_auth_password_new(char out[SF_AUTH_TOKEN_LEN + 1]);

/* True when user_id (a UUID, any case) is p's own id. */
bool sf_auth_is_self(const sf_principal_t *p, const char *user_id);

/* True when p may read or manage the account user_id and its sessions:
 * an admin, or the user itself. NULL p: false. */
bool sf_auth_may_see_account(const sf_principal_t *p, const char *user_id);

/* Lists of the account endpoints (GET /v1/users, sessions): ?limit= is 1 to
 * SF_AUTH_LIST_MAX (NULL: SF_AUTH_LIST_DEFAULT); 0 or SF_EINVAL. */
#define SF_AUTH_LIST_DEFAULT 50
#define SF_AUTH_LIST_MAX 500
int sf_auth_list_limit(const char *text, int *out);

/* Keyset cursors of those lists: unpadded base64url of a kind byte and the
 * 16 bytes of the last row's id, so that a cursor of one list is refused by
 * another. */
typedef enum sf_auth_list {
  SF_AUTH_LIST_USERS = 'u',
  SF_AUTH_LIST_SESSIONS = 's',
} sf_auth_list_t;
#define SF_AUTH_CURSOR_LEN 23
/* Writes the cursor after id. Returns 0 or SF_EINVAL (id not a UUID). */
int sf_auth_cursor_encode(sf_auth_list_t kind, const char *id,
                          char out[SF_AUTH_CURSOR_LEN + 1]);
/* Reads a cursor of list kind into the lowercase id it names. Returns 0 or
 * SF_EINVAL (malformed, or a cursor of another list). */
int sf_auth_cursor_decode(sf_auth_list_t kind, const char *text,
                          char out[SF_UUID_STR_LEN + 1]);

/* ---- login limiter ---- */

typedef struct sf_auth_limiter sf_auth_limiter_t;

typedef struct sf_auth_limiter_opts {
  int max_attempts;   /* attempts counted in the window; default 5 */
  uint64_t window_ms; /* default 60000 */
  size_t max_keys;    /* tracked keys; default 10000; beyond, the least
                        recently hit key is forgotten */
} sf_auth_limiter_opts_t;

/* Creates a limiter (opts copied; NULL: defaults). Returns 0, SF_ENOMEM. */
int sf_auth_limiter_new(sf_auth_limiter_t **out,
                        const sf_auth_limiter_opts_t *opts);
void sf_auth_limiter_destroy(sf_auth_limiter_t *l);

/* Counts one attempt for key at now_ms (a monotonic clock). Returns 0 when
 * the attempt may proceed (and it is counted), or the milliseconds until
 * the key may try again (>= 1; the attempt is not counted). Attempts are
 * counted when they start, so parallel guesses cannot overtake the limit.
 * Keys longer than 255 bytes are cut. Out of memory lets the attempt
 * through uncounted (the other key still limits). */
uint64_t sf_auth_limiter_hit(sf_auth_limiter_t *l, const char *key,
                             uint64_t now_ms);

/* Takes back the most recent attempt of key (a login that succeeded). */
void sf_auth_limiter_undo(sf_auth_limiter_t *l, const char *key);

/* Forgets every attempt of key. */
void sf_auth_limiter_clear(sf_auth_limiter_t *l, const char *key);

/* Keys tracked now (for tests and metrics). */
size_t sf_auth_limiter_size(const sf_auth_limiter_t *l);

#endif

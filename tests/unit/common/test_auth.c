/* test_auth: the pure parts of accounts: the full role x action x store
 * permission matrix, role names, argon2id hashing and verification (right,
 * wrong, malformed hashes, limits), tokens (shape, uniqueness, hashing,
 * canonical encoding), bearer header parsing, username and e-mail rules,
 * and the login limiter (window, retry-after, undo, clear, bounded keys). */
#include "sf/auth.h"
#include "sf/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#define S1 "0190a0b0-0000-7000-8000-000000000001"
#define S2 "0190a0b0-0000-7000-8000-000000000002"
#define S3 "0190a0b0-0000-7000-8000-000000000003" /* nobody's */

static const char stores[2][SF_UUID_STR_LEN + 1] = {S1, S2};

static sf_principal_t principal(sf_role_t role, size_t n) {
  sf_principal_t p;
  memset(&p, 0, sizeof(p));
  snprintf(p.user_id, sizeof(p.user_id), "0190a0b0-0000-7000-8000-0000000000aa");
  snprintf(p.username, sizeof(p.username), "u");
  p.role = role;
  p.n_stores = n;
  p.store_ids = n ? stores : NULL;
  return p;
}

/* Expected answers: [role][action] for one of the principal's stores (own)
 * and for a store that is not (other). */
typedef struct expect {
  bool own, other;
} expect_t;

static const expect_t matrix[4][SF_ACT_COUNT] = {
    /* viewer */
    [SF_ROLE_VIEWER] = {[SF_ACT_READ_CATALOG] = {true, true},
                        [SF_ACT_READ_STORE] = {true, false},
                        [SF_ACT_CATALOG_WRITE] = {false, false},
                        [SF_ACT_STOCK_WRITE] = {false, false},
                        [SF_ACT_STOCK_COUNT_ADJUST] = {false, false},
                        [SF_ACT_ORDER_WRITE] = {false, false},
                        [SF_ACT_TRANSFER] = {false, false},
                        [SF_ACT_USER_ADMIN] = {false, false}},
    [SF_ROLE_CLERK] = {[SF_ACT_READ_CATALOG] = {true, true},
                       [SF_ACT_READ_STORE] = {true, false},
                       [SF_ACT_CATALOG_WRITE] = {false, false},
                       [SF_ACT_STOCK_WRITE] = {true, false},
                       [SF_ACT_STOCK_COUNT_ADJUST] = {false, false},
                       [SF_ACT_ORDER_WRITE] = {true, false},
                       [SF_ACT_TRANSFER] = {false, false},
                       [SF_ACT_USER_ADMIN] = {false, false}},
    [SF_ROLE_MANAGER] = {[SF_ACT_READ_CATALOG] = {true, true},
                         [SF_ACT_READ_STORE] = {true, false},
                         [SF_ACT_CATALOG_WRITE] = {false, false},
                         [SF_ACT_STOCK_WRITE] = {true, false},
                         [SF_ACT_STOCK_COUNT_ADJUST] = {true, false},
                         [SF_ACT_ORDER_WRITE] = {true, false},
                         [SF_ACT_TRANSFER] = {true, false},
                         [SF_ACT_USER_ADMIN] = {false, false}},
    [SF_ROLE_ADMIN] = {[SF_ACT_READ_CATALOG] = {true, true},
                       [SF_ACT_READ_STORE] = {true, true},
                       [SF_ACT_CATALOG_WRITE] = {true, true},
                       [SF_ACT_STOCK_WRITE] = {true, true},
                       [SF_ACT_STOCK_COUNT_ADJUST] = {true, true},
                       [SF_ACT_ORDER_WRITE] = {true, true},
                       [SF_ACT_TRANSFER] = {true, true},
                       [SF_ACT_USER_ADMIN] = {true, true}},
};

static void test_permission_matrix(void **state) {
  (void)state;
  for (int r = SF_ROLE_VIEWER; r <= SF_ROLE_ADMIN; r++) {
    sf_principal_t p = principal((sf_role_t)r, 2);
    for (int act = 0; act < SF_ACT_COUNT; act++) {
      const expect_t *e = &matrix[r][act];
      bool own1 = sf_auth_allows(&p, (sf_auth_action_t)act, S1);
      bool own2 = sf_auth_allows(&p, (sf_auth_action_t)act, S2);
      bool other = sf_auth_allows(&p, (sf_auth_action_t)act, S3);
      if (own1 != e->own || own2 != e->own || other != e->other)
        fail_msg("role %s action %s: own %d/%d other %d, want own %d other %d",
                 sf_role_name((sf_role_t)r),
                 sf_auth_action_name((sf_auth_action_t)act), own1, own2, other,
                 e->own, e->other);
    }
  }
}

static void test_permission_edges(void **state) {
  (void)state;
  sf_principal_t m = principal(SF_ROLE_MANAGER, 2);
  /* store ids compare case-insensitively */
  assert_true(sf_auth_allows(&m, SF_ACT_STOCK_WRITE,
                             "0190A0B0-0000-7000-8000-000000000001"));
  /* NULL, malformed, prefix-only and suffixed store ids are refused */
  assert_false(sf_auth_allows(&m, SF_ACT_STOCK_WRITE, NULL));
  assert_false(sf_auth_allows(&m, SF_ACT_READ_STORE, "not-a-uuid"));
  assert_false(sf_auth_allows(&m, SF_ACT_READ_STORE, "0190a0b0-0000-7000"));
  assert_false(sf_auth_allows(&m, SF_ACT_READ_STORE, S1 "x"));
  /* no stores: nothing store-scoped */
  sf_principal_t none = principal(SF_ROLE_MANAGER, 0);
  assert_false(sf_auth_allows(&none, SF_ACT_READ_STORE, S1));
  assert_true(sf_auth_allows(&none, SF_ACT_READ_CATALOG, NULL));
  /* admin: any store, even none */
  sf_principal_t admin = principal(SF_ROLE_ADMIN, 0);
  assert_true(sf_auth_allows(&admin, SF_ACT_STOCK_COUNT_ADJUST, S3));
  assert_true(sf_auth_allows(&admin, SF_ACT_USER_ADMIN, NULL));
  assert_true(sf_auth_sees_all_stores(&admin));
  assert_false(sf_auth_sees_all_stores(&m));
  assert_true(sf_auth_has_store(&admin, S3));
  assert_true(sf_auth_has_store(&m, S2));
  assert_false(sf_auth_has_store(&m, S3));
  /* no principal, unknown role, unknown action */
  assert_false(sf_auth_allows(NULL, SF_ACT_READ_CATALOG, NULL));
  sf_principal_t bad = principal((sf_role_t)7, 2);
  assert_false(sf_auth_allows(&bad, SF_ACT_READ_CATALOG, NULL));
  assert_false(sf_auth_allows(&admin, (sf_auth_action_t)SF_ACT_COUNT, NULL));
  assert_false(sf_auth_allows(&m, (sf_auth_action_t)-1, S1));
}

static void test_roles(void **state) {
  (void)state;
  const char *names[] = {"viewer", "clerk", "manager", "admin"};
  for (int i = 0; i < 4; i++) {
    sf_role_t r;
    assert_int_equal(sf_role_parse(names[i], &r), 0);
    assert_int_equal(r, i);
    assert_string_equal(sf_role_name(r), names[i]);
  }
  sf_role_t r = SF_ROLE_VIEWER;
  assert_int_equal(sf_role_parse("Admin", &r), SF_EINVAL);
  assert_int_equal(sf_role_parse("admin ", &r), SF_EINVAL);
  assert_int_equal(sf_role_parse("", &r), SF_EINVAL);
  assert_int_equal(sf_role_parse(NULL, &r), SF_EINVAL);
  assert_int_equal(r, SF_ROLE_VIEWER);
  assert_string_equal(sf_role_name((sf_role_t)9), "unknown");
  assert_string_equal(sf_auth_action_name(SF_ACT_TRANSFER), "transfer");
}

static void test_password(void **state) {
  (void)state;
  char h[SF_AUTH_PWHASH_MAX], h2[SF_AUTH_PWHASH_MAX];
  assert_int_equal(sf_auth_password_hash("correct horse", h), 0);
  assert_int_equal(strncmp(h, "$argon2id$v=19$", 15), 0);
  assert_non_null(strstr(h, "m=65536,t=2,p=1")); /* interactive limits */
  assert_true(sf_auth_password_verify(h, "correct horse"));
  assert_false(sf_auth_password_verify(h, "correct horsf"));
  assert_false(sf_auth_password_verify(h, "correct hors"));
  assert_false(sf_auth_password_verify(h, ""));
  /* salted: the same password hashes differently */
  assert_int_equal(sf_auth_password_hash("correct horse", h2), 0);
  assert_string_not_equal(h, h2);
  assert_true(sf_auth_password_verify(h2, "correct horse"));
  /* malformed hashes never verify */
  assert_false(sf_auth_password_verify("", "x"));
  assert_false(sf_auth_password_verify("$argon2id$garbage", "x"));
  assert_false(sf_auth_password_verify(NULL, "x"));
  assert_false(sf_auth_password_verify(h, NULL));
  char longhash[300];
  memset(longhash, 'a', sizeof(longhash) - 1);
  longhash[sizeof(longhash) - 1] = '\0';
  assert_false(sf_auth_password_verify(longhash, "x"));
  /* limits */
  assert_int_equal(sf_auth_password_hash("", h), SF_EINVAL);
  assert_int_equal(sf_auth_password_hash(NULL, h), SF_EINVAL);
  char big[SF_AUTH_PASSWORD_MAX + 2];
  memset(big, 'p', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(sf_auth_password_hash(big, h), SF_EINVAL);
  assert_false(sf_auth_password_verify(h2, big));
  assert_non_null(sf_auth_password_check(big));
  assert_non_null(sf_auth_password_check("1234567"));
  assert_non_null(sf_auth_password_check(NULL));
  assert_null(sf_auth_password_check("12345678"));
}

static void test_tokens(void **state) {
  (void)state;
  char t1[SF_AUTH_TOKEN_LEN + 1], t2[SF_AUTH_TOKEN_LEN + 1];
  sf_auth_token_new(t1);
  sf_auth_token_new(t2);
  assert_int_equal(strlen(t1), SF_AUTH_TOKEN_LEN);
  assert_string_not_equal(t1, t2);
  assert_true(sf_auth_token_valid(t1));
  for (const char *p = t1; *p; p++)
    assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                           "0123456789-_",
                           *p));
  uint8_t h1[SF_AUTH_HASH_BYTES], h1b[SF_AUTH_HASH_BYTES],
      h2[SF_AUTH_HASH_BYTES];
  assert_int_equal(sf_auth_token_hash(t1, h1), 0);
  assert_int_equal(sf_auth_token_hash(t1, h1b), 0);
  assert_int_equal(sf_auth_token_hash(t2, h2), 0);
  assert_true(sf_auth_hash_equal(h1, h1b));
  assert_false(sf_auth_hash_equal(h1, h2));
  /* the hash is SHA-256 of the token text */
  uint8_t want[32];
  crypto_hash_sha256(want, (const unsigned char *)t1, SF_AUTH_TOKEN_LEN);
  assert_memory_equal(h1, want, 32);
  char hex[67];
  sf_auth_hash_bytea(h1, hex);
  assert_int_equal(strlen(hex), 66);
  assert_int_equal(strncmp(hex, "\\x", 2), 0);
  /* malformed tokens */
  char bad[SF_AUTH_TOKEN_LEN + 2];
  memcpy(bad, t1, sizeof(t1));
  bad[5] = '+'; /* standard base64, not url-safe */
  assert_false(sf_auth_token_valid(bad));
  assert_int_equal(sf_auth_token_hash(bad, h2), SF_EINVAL);
  memcpy(bad, t1, sizeof(t1));
  bad[SF_AUTH_TOKEN_LEN - 1] = '\0'; /* too short */
  assert_false(sf_auth_token_valid(bad));
  memcpy(bad, t1, SF_AUTH_TOKEN_LEN);
  bad[SF_AUTH_TOKEN_LEN] = 'A';
  bad[SF_AUTH_TOKEN_LEN + 1] = '\0'; /* too long */
  assert_false(sf_auth_token_valid(bad));
  /* non-canonical last character (low bits set) */
  memcpy(bad, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", 44);
  assert_false(sf_auth_token_valid(bad));
  memcpy(bad, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE", 44);
  assert_true(sf_auth_token_valid(bad));
  assert_false(sf_auth_token_valid(NULL));
  assert_false(sf_auth_token_valid(""));
}

static void test_bearer(void **state) {
  (void)state;
  char t[SF_AUTH_TOKEN_LEN + 1], hdr[80];
  sf_auth_token_new(t);
  snprintf(hdr, sizeof(hdr), "Bearer %s", t);
  assert_string_equal(sf_auth_bearer(hdr), t);
  snprintf(hdr, sizeof(hdr), "bearer   %s", t);
  assert_string_equal(sf_auth_bearer(hdr), t);
  snprintf(hdr, sizeof(hdr), "Basic %s", t);
  assert_null(sf_auth_bearer(hdr));
  snprintf(hdr, sizeof(hdr), "Bearer %s ", t);
  assert_null(sf_auth_bearer(hdr));
  snprintf(hdr, sizeof(hdr), "Bearer%s", t);
  assert_null(sf_auth_bearer(hdr));
  assert_null(sf_auth_bearer("Bearer "));
  assert_null(sf_auth_bearer(""));
  assert_null(sf_auth_bearer(NULL));
}

static void test_username_email(void **state) {
  (void)state;
  char u[SF_AUTH_USERNAME_MAX + 1];
  assert_int_equal(sf_auth_username_normalize("Alice.B-2_x@shop", u), 0);
  assert_string_equal(u, "alice.b-2_x@shop");
  assert_int_equal(sf_auth_username_normalize("", u), SF_EINVAL);
  assert_int_equal(sf_auth_username_normalize(NULL, u), SF_EINVAL);
  assert_int_equal(sf_auth_username_normalize("a b", u), SF_EINVAL);
  assert_int_equal(sf_auth_username_normalize("caf\xc3\xa9", u), SF_EINVAL);
  assert_int_equal(sf_auth_username_normalize("x\n", u), SF_EINVAL);
  char longname[SF_AUTH_USERNAME_MAX + 2];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(sf_auth_username_normalize(longname, u), SF_EINVAL);
  longname[SF_AUTH_USERNAME_MAX] = '\0';
  assert_int_equal(sf_auth_username_normalize(longname, u), 0);
  assert_true(sf_auth_email_valid("a@b.c"));
  assert_false(sf_auth_email_valid("ab.c"));
  assert_false(sf_auth_email_valid("@b.c"));
  assert_false(sf_auth_email_valid("a@"));
  assert_false(sf_auth_email_valid("a@b@c"));
  assert_false(sf_auth_email_valid("a b@c"));
  assert_false(sf_auth_email_valid(NULL));
}

static void test_limiter_window(void **state) {
  (void)state;
  sf_auth_limiter_t *l;
  sf_auth_limiter_opts_t o = {.max_attempts = 3, .window_ms = 1000};
  assert_int_equal(sf_auth_limiter_new(&l, &o), 0);
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 100), 0);
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 200), 0);
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 300), 0);
  /* fourth within the window: refused until the oldest leaves it */
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 400), 700);
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 1099), 1);
  /* other keys are not slowed */
  assert_int_equal(sf_auth_limiter_hit(l, "u:alice", 400), 0);
  /* the oldest expires at 1100: one more allowed, then refused again */
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 1100), 0);
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 1150), 50);
  /* after a full window everything is forgotten */
  assert_int_equal(sf_auth_limiter_hit(l, "u:bob", 5000), 0);
  assert_int_equal(sf_auth_limiter_size(l), 2);
  sf_auth_limiter_destroy(l);
}

static void test_limiter_undo_clear(void **state) {
  (void)state;
  sf_auth_limiter_t *l;
  sf_auth_limiter_opts_t o = {.max_attempts = 2, .window_ms = 60000};
  assert_int_equal(sf_auth_limiter_new(&l, &o), 0);
  assert_int_equal(sf_auth_limiter_hit(l, "k", 1), 0);
  assert_int_equal(sf_auth_limiter_hit(l, "k", 2), 0);
  assert_true(sf_auth_limiter_hit(l, "k", 3) > 0);
  sf_auth_limiter_undo(l, "k"); /* a success takes its attempt back */
  assert_int_equal(sf_auth_limiter_hit(l, "k", 4), 0);
  assert_true(sf_auth_limiter_hit(l, "k", 5) > 0);
  sf_auth_limiter_clear(l, "k");
  assert_int_equal(sf_auth_limiter_size(l), 0);
  assert_int_equal(sf_auth_limiter_hit(l, "k", 6), 0);
  sf_auth_limiter_undo(l, "k");
  assert_int_equal(sf_auth_limiter_size(l), 0); /* last attempt gone */
  sf_auth_limiter_undo(l, "absent");
  sf_auth_limiter_clear(l, "absent");
  /* long keys are cut, not overflowed */
  char big[1000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(sf_auth_limiter_hit(l, big, 7), 0);
  assert_int_equal(sf_auth_limiter_hit(l, big, 8), 0);
  assert_true(sf_auth_limiter_hit(l, big, 9) > 0);
  /* defaults */
  sf_auth_limiter_t *d;
  assert_int_equal(sf_auth_limiter_new(&d, NULL), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(sf_auth_limiter_hit(d, "k", 10), 0);
  assert_int_equal(sf_auth_limiter_hit(d, "k", 10), 60000);
  sf_auth_limiter_destroy(d);
  sf_auth_limiter_destroy(l);
  sf_auth_limiter_destroy(NULL);
  assert_int_equal(sf_auth_limiter_hit(NULL, "k", 1), 0);
}

static void test_limiter_bounded(void **state) {
  (void)state;
  sf_auth_limiter_t *l;
  sf_auth_limiter_opts_t o = {.max_attempts = 1, .window_ms = 60000, .max_keys = 100};
  assert_int_equal(sf_auth_limiter_new(&l, &o), 0);
  char key[32];
  assert_int_equal(sf_auth_limiter_hit(l, "victim", 0), 0);
  for (int i = 0; i < 99; i++) {
    snprintf(key, sizeof(key), "spray-%d", i);
    assert_int_equal(sf_auth_limiter_hit(l, key, 1), 0);
  }
  /* the victim is refused; hitting it again makes it most recent */
  assert_true(sf_auth_limiter_hit(l, "victim", 2) > 0);
  assert_int_equal(sf_auth_limiter_size(l), 100);
  for (int i = 99; i < 150; i++) { /* evicts the oldest sprays, not it */
    snprintf(key, sizeof(key), "spray-%d", i);
    assert_int_equal(sf_auth_limiter_hit(l, key, 3), 0);
  }
  assert_true(sf_auth_limiter_hit(l, "victim", 4) > 0);
  assert_int_equal(sf_auth_limiter_hit(l, "spray-0", 4), 0); /* forgotten */
  for (int i = 150; i < 10000; i++) {
    snprintf(key, sizeof(key), "spray-%d", i);
    sf_auth_limiter_hit(l, key, 3);
    assert_true(sf_auth_limiter_size(l) <= 100);
  }
  assert_int_equal(sf_auth_limiter_size(l), 100);
  sf_auth_limiter_destroy(l);
}

/* ---- account administration ---- */

static void test_account_access(void **state) {
  (void)state;
  static const char me[] = "0190a0b0-0000-7000-8000-0000000000aa";
  static const char other[] = "0190a0b0-0000-7000-8000-0000000000bb";
  for (int role = SF_ROLE_VIEWER; role <= SF_ROLE_ADMIN; role++) {
    sf_principal_t p = {.role = (sf_role_t)role};
    snprintf(p.user_id, sizeof(p.user_id), "%s", me);
    assert_true(sf_auth_is_self(&p, me));
    assert_true(sf_auth_is_self(&p, "0190A0B0-0000-7000-8000-0000000000AA"));
    assert_false(sf_auth_is_self(&p, other));
    assert_false(sf_auth_is_self(&p, "not-a-uuid"));
    assert_false(sf_auth_is_self(&p, NULL));
    assert_true(sf_auth_may_see_account(&p, me));
    /* another user's account and sessions: admins only */
    assert_int_equal(sf_auth_may_see_account(&p, other),
                     role == SF_ROLE_ADMIN);
    assert_int_equal(sf_auth_may_see_account(&p, "me"),
                     role == SF_ROLE_ADMIN);
  }
  assert_false(sf_auth_may_see_account(NULL, me));
  assert_false(sf_auth_is_self(NULL, me));
}

static void test_list_limit(void **state) {
  (void)state;
  int v = -1;
  assert_int_equal(sf_auth_list_limit(NULL, &v), 0);
  assert_int_equal(v, SF_AUTH_LIST_DEFAULT);
  assert_int_equal(sf_auth_list_limit("1", &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(sf_auth_list_limit("500", &v), 0);
  assert_int_equal(v, 500);
  assert_int_equal(sf_auth_list_limit("007", &v), 0);
  assert_int_equal(v, 7);
  static const char *const bad[] = {"", "0", "501", "-1", "+5", "1.5",
                                    "abc", "5 ", " 5", "1000", "99999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    v = 42;
    assert_int_equal(sf_auth_list_limit(bad[i], &v), SF_EINVAL);
    assert_int_equal(v, 42); /* untouched on failure */
  }
}

static void test_cursor(void **state) {
  (void)state;
  static const char id[] = "0190a0b0-1234-7abc-8def-0123456789ab";
  char c[SF_AUTH_CURSOR_LEN + 1], out[SF_UUID_STR_LEN + 1];
  assert_int_equal(sf_auth_cursor_encode(SF_AUTH_LIST_USERS, id, c), 0);
  assert_int_equal(strlen(c), SF_AUTH_CURSOR_LEN);
  assert_true(strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789-_") == SF_AUTH_CURSOR_LEN);
  assert_int_equal(sf_auth_cursor_decode(SF_AUTH_LIST_USERS, c, out), 0);
  assert_string_equal(out, id);
  /* upper-case ids come back lowercase */
  assert_int_equal(sf_auth_cursor_encode(SF_AUTH_LIST_SESSIONS,
                                         "0190A0B0-1234-7ABC-8DEF-0123456789AB",
                                         c),
                   0);
  assert_int_equal(sf_auth_cursor_decode(SF_AUTH_LIST_SESSIONS, c, out), 0);
  assert_string_equal(out, id);
  /* a session cursor is not a user cursor */
  assert_int_equal(sf_auth_cursor_decode(SF_AUTH_LIST_USERS, c, out),
                   SF_EINVAL);
  /* malformed: wrong length, bad alphabet, padding, a changed last char */
  char bad[SF_AUTH_CURSOR_LEN + 2];
  static const char *const junk[] = {"", "abc", "!!!!!!!!!!!!!!!!!!!!!!!",
                                     "AAAAAAAAAAAAAAAAAAAAAAAAA"};
  for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
    assert_int_equal(sf_auth_cursor_decode(SF_AUTH_LIST_USERS, junk[i], out),
                     SF_EINVAL);
  snprintf(bad, sizeof(bad), "%s=", c);
  assert_int_equal(sf_auth_cursor_decode(SF_AUTH_LIST_SESSIONS, bad, out),
                   SF_EINVAL);
  assert_int_equal(sf_auth_cursor_decode(SF_AUTH_LIST_SESSIONS, NULL, out),
                   SF_EINVAL);
  assert_int_equal(sf_auth_cursor_encode(SF_AUTH_LIST_USERS, "nope", c),
                   SF_EINVAL);
  assert_int_equal(sf_auth_cursor_encode(SF_AUTH_LIST_USERS, NULL, c),
                   SF_EINVAL);
}

static void test_generated_password(void **state) {
  (void)state;
  char a[SF_AUTH_TOKEN_LEN + 1], b[SF_AUTH_TOKEN_LEN + 1];
  sf_auth_password_new(a);
  sf_auth_password_new(b);
  assert_int_equal(strlen(a), SF_AUTH_TOKEN_LEN);
  assert_string_not_equal(a, b);
  /* it meets the sign-up rules */
  assert_null(sf_auth_password_check(a));
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_permission_matrix),
      cmocka_unit_test(test_permission_edges),
      cmocka_unit_test(test_roles),
      cmocka_unit_test(test_password),
      cmocka_unit_test(test_tokens),
      cmocka_unit_test(test_bearer),
      cmocka_unit_test(test_username_email),
      cmocka_unit_test(test_limiter_window),
      cmocka_unit_test(test_limiter_undo_clear),
      cmocka_unit_test(test_limiter_bounded),
      cmocka_unit_test(test_account_access),
      cmocka_unit_test(test_list_limit),
      cmocka_unit_test(test_cursor),
      cmocka_unit_test(test_generated_password),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

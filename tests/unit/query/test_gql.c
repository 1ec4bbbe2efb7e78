/* Unit tests for services/query/qry_gql.c, the GraphQL document parser:
 * good documents (operations named and anonymous, variables with
 * defaults, aliases, every literal kind, fragments, inline fragments,
 * comments and commas), values as JSON with $variables, and malformed
 * input with its line and column: unterminated strings, bad escapes and
 * tokens, invalid UTF-8, directives, duplicate names, depth bombs and
 * documents over the size and node limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qry_gql.h"
#include "sf/err.h"

static qry_gql_doc_t *parse_ok(const char *text) {
  qry_gql_doc_t *doc = NULL;
  qry_gql_error_t err;
  int rc = qry_gql_parse(text, strlen(text), &doc, &err);
  if (rc != 0)
    fail_msg("%s: %s at %d:%d", text, err.message, err.line, err.col);
  assert_non_null(doc);
  return doc;
}

/* The parse fails at line:col with a message containing want. */
static void parse_bad(const char *text, size_t len, int line, int col,
                      const char *want) {
  qry_gql_doc_t *doc = NULL;
  qry_gql_error_t err;
  int rc = qry_gql_parse(text, len, &doc, &err);
  if (rc != SF_EPARSE)
    fail_msg("accepted (rc %d): %.80s", rc, text);
  assert_null(doc);
  if (want && !strstr(err.message, want))
    fail_msg("%.80s: message \"%s\" lacks \"%s\"", text, err.message, want);
  if (line && (err.line != line || err.col != col))
    fail_msg("%.80s: error at %d:%d, want %d:%d (%s)", text, err.line,
             err.col, line, col, err.message);
}

static void parse_bad_s(const char *text, int line, int col,
                        const char *want) {
  parse_bad(text, strlen(text), line, col, want);
}

/* The JSON of argument name of the first root field of op. */
static char *arg_json(const qry_gql_doc_t *doc, const char *name,
                      const char *vars_text) {
  const qry_gql_op_t *op = qry_gql_ops(doc);
  json_t *vars = vars_text ? json_loads(vars_text, 0, NULL) : NULL;
  for (const qry_gql_arg_t *a = op->sels->args; a; a = a->next) {
    if (strcmp(a->name, name) != 0)
      continue;
    json_t *v = NULL;
    qry_gql_error_t err;
    int rc = qry_gql_value_json(a->value, op, vars, &v, &err);
    json_decref(vars);
    if (rc)
      return NULL;
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    return s;
  }
  json_decref(vars);
  fail_msg("no argument %s", name);
  return NULL;
}

static void assert_arg(const qry_gql_doc_t *doc, const char *name,
                       const char *vars, const char *want) {
  char *got = arg_json(doc, name, vars);
  if (!got || strcmp(got, want) != 0)
    fail_msg("argument %s: got %s, want %s", name, got ? got : "(error)",
             want);
  free(got);
}

static void test_operations(void **state) {
  (void)state;
  qry_gql_doc_t *doc = parse_ok("{ stores { count } }");
  const qry_gql_op_t *op = qry_gql_ops(doc);
  assert_int_equal(op->kind, QRY_GQL_QUERY);
  assert_null(op->name);
  assert_string_equal(op->sels->name, "stores");
  assert_string_equal(op->sels->sels->name, "count");
  qry_gql_error_t err;
  assert_ptr_equal(qry_gql_pick(doc, NULL, &err), op);
  assert_null(qry_gql_pick(doc, "Other", &err));
  assert_non_null(strstr(err.message, "Unknown operation"));
  qry_gql_doc_free(doc);

  doc = parse_ok("# leading comment\n"
                 "query A($first: Int = 2, $w: StoreWhereInput!) {\n"
                 "  list: stores(first: $first, where: $w) { count }\n"
                 "}\n"
                 "mutation B { logOut(input: {}) { clientMutationId } }\n"
                 "subscription C { x }");
  op = qry_gql_ops(doc);
  assert_int_equal(op->kind, QRY_GQL_QUERY);
  assert_string_equal(op->name, "A");
  assert_string_equal(op->vars->name, "first");
  assert_string_equal(op->vars->type, "Int");
  assert_false(op->vars->non_null);
  assert_string_equal(op->vars->next->type, "StoreWhereInput!");
  assert_true(op->vars->next->non_null);
  assert_string_equal(op->sels->alias, "list");
  assert_string_equal(op->sels->name, "stores");
  assert_int_equal(op->sels->line, 3);
  assert_int_equal(op->sels->col, 3);
  assert_int_equal(op->next->kind, QRY_GQL_MUTATION);
  assert_int_equal(op->next->next->kind, QRY_GQL_SUBSCRIPTION);
  assert_null(qry_gql_pick(doc, NULL, &err));
  assert_non_null(strstr(err.message, "Must provide operation name"));
  assert_ptr_equal(qry_gql_pick(doc, "B", &err), op->next);
  qry_gql_doc_free(doc);

  /* commas are white space, a BOM is ignored, CRLF counts one line */
  doc = parse_ok("\xef\xbb\xbf{a,b,,c}\r\n{d}\n");
  qry_gql_doc_free(doc);
  doc = parse_ok("query ($v: [[Int!]]!) { a(x: $v) }");
  assert_string_equal(qry_gql_ops(doc)->vars->type, "[[Int!]]!");
  qry_gql_doc_free(doc);
}

static void test_literals(void **state) {
  (void)state;
  qry_gql_doc_t *doc = parse_ok(
      "{ f(i: -12, z: 0, fl: 1.5e3, f2: -0.25, s: \"a\\\"b\\\\c\\/\\n\\t\","
      " u: \"\\u00e9\\uD83D\\uDE00 \xc3\xa9\", t: true, fa: false, n: null,"
      " e: name_ASC, l: [1, \"x\", [true]], o: {a: {b: [null]}, c: 1},"
      " empty: [], eo: {}) }");
  assert_arg(doc, "i", NULL, "-12");
  assert_arg(doc, "z", NULL, "0");
  assert_arg(doc, "fl", NULL, "1500.0");
  assert_arg(doc, "f2", NULL, "-0.25");
  assert_arg(doc, "s", NULL, "\"a\\\"b\\\\c/\\n\\t\"");
  assert_arg(doc, "u", NULL, "\"\xc3\xa9\xf0\x9f\x98\x80 \xc3\xa9\"");
  assert_arg(doc, "t", NULL, "true");
  assert_arg(doc, "fa", NULL, "false");
  assert_arg(doc, "n", NULL, "null");
  assert_arg(doc, "e", NULL, "\"name_ASC\"");
  assert_arg(doc, "l", NULL, "[1,\"x\",[true]]");
  assert_arg(doc, "o", NULL, "{\"a\":{\"b\":[null]},\"c\":1}");
  assert_arg(doc, "empty", NULL, "[]");
  assert_arg(doc, "eo", NULL, "{}");
  qry_gql_doc_free(doc);
  /* Int is 32 bits, as GraphQL's */
  doc = parse_ok("{ f(a: 2147483647, b: 2147483648, c: -2147483648) }");
  assert_arg(doc, "a", NULL, "2147483647");
  assert_null(arg_json(doc, "b", NULL));
  assert_arg(doc, "c", NULL, "-2147483648");
  qry_gql_doc_free(doc);
}

static void test_variables(void **state) {
  (void)state;
  qry_gql_doc_t *doc =
      parse_ok("query Q($a: Int = 5, $b: String!, $c: [Int], $d: Int) {"
               " f(a: $a, b: $b, c: $c, l: [$a, $d], o: {k: $b}, u: $nope) }");
  assert_arg(doc, "a", NULL, "5");
  assert_arg(doc, "a", "{\"a\": 7}", "7");
  assert_arg(doc, "a", "{\"a\": null}", "null");
  assert_arg(doc, "b", "{\"b\": \"x\"}", "\"x\"");
  assert_null(arg_json(doc, "b", NULL));            /* required */
  assert_null(arg_json(doc, "b", "{\"b\": null}")); /* non-null */
  assert_arg(doc, "c", NULL, "null");
  assert_arg(doc, "l", "{\"d\": 1}", "[5,1]");
  assert_arg(doc, "o", "{\"b\": \"y\"}", "{\"k\":\"y\"}");
  assert_null(arg_json(doc, "u", NULL)); /* not declared */
  qry_gql_doc_free(doc);
}

static void test_fragments(void **state) {
  (void)state;
  qry_gql_doc_t *doc =
      parse_ok("query { stores { edges { node { ...S ... on Store { name }"
               " ... { objectId } } } } }\n"
               "fragment S on Store { objectId location }");
  const qry_gql_sel_t *node =
      qry_gql_ops(doc)->sels->sels->sels; /* stores.edges.node */
  assert_string_equal(node->name, "node");
  const qry_gql_sel_t *s = node->sels;
  assert_int_equal(s->kind, QRY_GQL_SPREAD);
  assert_string_equal(s->name, "S");
  assert_int_equal(s->next->kind, QRY_GQL_INLINE);
  assert_string_equal(s->next->type_cond, "Store");
  assert_int_equal(s->next->next->kind, QRY_GQL_INLINE);
  assert_null(s->next->next->type_cond);
  const qry_gql_frag_t *f = qry_gql_frag(doc, "S");
  assert_non_null(f);
  assert_string_equal(f->type_cond, "Store");
  assert_string_equal(f->sels->next->name, "location");
  assert_null(qry_gql_frag(doc, "T"));
  qry_gql_doc_free(doc);
}

static void test_syntax_errors(void **state) {
  (void)state;
  parse_bad_s("", 1, 1, "no operation");
  parse_bad_s("   # only a comment", 1, 20, "no operation");
  parse_bad_s("{", 1, 2, "Expected Name, found <EOF>");
  parse_bad_s("{ }", 1, 3, "Expected Name, found \"}\"");
  parse_bad_s("{ a(x: \"abc) }", 1, 15, "Unterminated string");
  parse_bad_s("{ a(x: \"ab\ncd\") }", 1, 11, "Unterminated string");
  parse_bad_s("{ a(x: \"\\q\") }", 1, 9, "Invalid character escape");
  parse_bad_s("{ a(x: \"\\u12G4\") }", 1, 9, "Invalid character escape");
  parse_bad_s("{ a(x: \"\\uD800\") }", 1, 9, "lone surrogate");
  parse_bad_s("{ a(x: \"\\uDC00\") }", 1, 9, "lone surrogate");
  parse_bad_s("{ a(x: \"\\u0000\") }", 1, 9, "\\u0000");
  parse_bad_s("{ a(x: \"\x01\") }", 1, 9, "Invalid character within String");
  parse_bad_s("{ a(x: \"\xc3\x28\") }", 1, 9, "Invalid UTF-8");
  parse_bad_s("{ a(x: \"\xed\xa0\x80\") }", 1, 9, "Invalid UTF-8");
  parse_bad_s("{ a(x: \"\"\"block\"\"\") }", 1, 8, "block strings");
  parse_bad_s("{ a(x: 01) }", 1, 9, "unexpected digit after 0");
  parse_bad_s("{ a(x: 1.) }", 1, 10, "expected digit");
  parse_bad_s("{ a(x: 1e) }", 1, 10, "expected digit");
  parse_bad_s("{ a(x: 12abc) }", 1, 10, "expected digit");
  parse_bad_s("{ a(x: -) }", 1, 9, "expected digit");
  parse_bad_s("{ a % }", 1, 5, "Unexpected character: \"%\"");
  parse_bad_s("{ a .. }", 1, 5, "Unexpected character: \".\"");
  parse_bad_s("{ a\x01 }", 1, 4, "U+0001");
  parse_bad_s("{ a \xff }", 1, 5, "U+00FF");
  parse_bad_s("{ a(x: ) }", 1, 8, "Unexpected \")\"");
  parse_bad_s("{ a() }", 1, 5, "Expected Name, found \")\"");
  parse_bad_s("{ a(x 1) }", 1, 7, "Expected \":\", found Int \"1\"");
  parse_bad_s("{ a(x: [1, 2) }", 1, 13, "Unexpected \")\"");
  parse_bad_s("{ a(x: {b 1}) }", 1, 11, "Expected \":\"");
  parse_bad_s("{ a(x: $) }", 1, 9, "Expected Name");
  parse_bad_s("{ a @skip(if: true) }", 1, 5, "directives are not supported");
  parse_bad_s("query Q @d { a }", 1, 9, "directives are not supported");
  parse_bad_s("type Store { a: Int }", 1, 1,
              "only executable definitions");
  parse_bad_s("{ a } }", 1, 7, "Unexpected \"}\"");
  parse_bad_s("query Q($v: Int = $w) { a }", 1, 19, "not allowed in a default");
  parse_bad_s("query Q($v Int) { a }", 1, 12, "Expected \":\"");
  parse_bad_s("query Q($v: ) { a }", 1, 13, "Expected Name");
  parse_bad_s("fragment on on Store { a } { a }", 1, 10, "a fragment name");
  parse_bad_s("fragment F Store { a } { a }", 1, 12, "Expected \"on\"");
  parse_bad_s("fragment F on Store { a }", 1, 1, "no operation");
  parse_bad_s("{ a }\n\n   { b(x: \"\n", 3, 12, "Unterminated string");
}

static void test_duplicates(void **state) {
  (void)state;
  parse_bad_s("{ a(x: 1, x: 2) }", 1, 11, "only one argument named \"x\"");
  parse_bad_s("{ a(x: {k: 1, k: 2}) }", 1, 15, "only one input field");
  parse_bad_s("query Q($a: Int, $a: Int) { a }", 1, 18,
              "only one variable named \"$a\"");
  parse_bad_s("query Q { a } query Q { b }", 1, 15,
              "only one operation named \"Q\"");
  parse_bad_s("{ a } fragment F on A { b } fragment F on A { c }", 1, 29,
              "only one fragment named \"F\"");
}

/* Nesting, size and node bombs are refused, not recursed into. */
static void test_limits(void **state) {
  (void)state;
  char buf[4096];
  /* selection sets: QRY_GQL_MAX_DEPTH levels pass, one more does not */
  size_t n = 0;
  for (int i = 0; i < QRY_GQL_MAX_DEPTH; i++)
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{a");
  for (int i = 0; i < QRY_GQL_MAX_DEPTH; i++)
    buf[n++] = '}';
  buf[n] = '\0';
  qry_gql_doc_free(parse_ok(buf));
  n = 0;
  for (int i = 0; i < QRY_GQL_MAX_DEPTH + 1; i++)
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{a");
  for (int i = 0; i < QRY_GQL_MAX_DEPTH + 1; i++)
    buf[n++] = '}';
  buf[n] = '\0';
  parse_bad_s(buf, 1, 1 + 2 * QRY_GQL_MAX_DEPTH, "nests deeper");
  /* lists, objects and list types: a bomb of 1,000 brackets */
  char *bomb = malloc(5000);
  assert_non_null(bomb);
  n = (size_t)snprintf(bomb, 5000, "{ a(x: ");
  for (int i = 0; i < 1000; i++)
    bomb[n++] = '[';
  bomb[n] = '\0';
  parse_bad_s(bomb, 0, 0, "nests deeper");
  n = (size_t)snprintf(bomb, 5000, "{ a(x: ");
  for (int i = 0; i < 1000; i++)
    n += (size_t)snprintf(bomb + n, 5000 - n, "{a:");
  parse_bad(bomb, n, 0, 0, "nests deeper");
  n = (size_t)snprintf(bomb, 5000, "query Q($v: ");
  for (int i = 0; i < 1000; i++)
    bomb[n++] = '[';
  bomb[n] = '\0';
  parse_bad_s(bomb, 0, 0, "nests deeper");
  free(bomb);
  /* size */
  size_t big = QRY_GQL_MAX_DOC + 1;
  char *doc = malloc(big);
  assert_non_null(doc);
  memset(doc, ' ', big);
  doc[0] = '{';
  doc[1] = 'a';
  doc[big - 1] = '}';
  parse_bad(doc, big, 0, 0, "longer than");
  /* nodes: many fields within the size limit */
  n = 0;
  doc[n++] = '{';
  while (n < QRY_GQL_MAX_DOC - 4)
    n += (size_t)snprintf(doc + n, big - n, " a");
  doc[n++] = '}';
  parse_bad(doc, n, 0, 0, "nodes");
  /* a long string within limits is fine */
  n = (size_t)snprintf(doc, big, "{ a(x: \"");
  while (n < 60000)
    doc[n++] = 'x';
  n += (size_t)snprintf(doc + n, big - n, "\") }");
  qry_gql_doc_t *d = NULL;
  qry_gql_error_t err;
  assert_int_equal(qry_gql_parse(doc, n, &d, &err), 0);
  qry_gql_doc_free(d);
  free(doc);
}

/* Every prefix of a good document is refused or accepted without
 * reading past its end (the sanitizer build checks the reads). */
static void test_prefixes(void **state) {
  (void)state;
  const char *good =
      "query Q($w: StoreWhereInput = {name: {equalTo: \"a\\u00e9\"}}) {"
      " s: stores(where: $w, first: 2, order: [name_ASC]) { edges { cursor"
      " node { ...F ... on Store { id } } } count } }"
      " fragment F on Store { objectId x: name }";
  size_t len = strlen(good);
  for (size_t i = 0; i <= len; i++) {
    char *copy = malloc(i ? i : 1);
    assert_non_null(copy);
    memcpy(copy, good, i);
    qry_gql_doc_t *doc = NULL;
    qry_gql_error_t err;
    int rc = qry_gql_parse(copy, i, &doc, &err);
    assert_true(rc == 0 || rc == SF_EPARSE);
    assert_true(rc != 0 || i == len || i >= len - 1 || doc);
    qry_gql_doc_free(doc);
    free(copy);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_operations),
      cmocka_unit_test(test_literals),
      cmocka_unit_test(test_variables),
      cmocka_unit_test(test_fragments),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_prefixes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

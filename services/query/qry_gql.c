/* qry_gql: the GraphQL document parser (qry_gql.h). A hand-written lexer
 * and recursive-descent parser over the executable subset of the GraphQL
 * grammar (October 2021 edition). Memory comes from one arena per
 * document, so a failed parse frees everything at once; recursion is
 * bounded by QRY_GQL_MAX_DEPTH and work by QRY_GQL_MAX_DOC and
 * QRY_GQL_MAX_NODES. */
#include "qry_gql.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

/* ---- the arena ---- */

typedef struct block {
  struct block *next;
  size_t used, cap;
  _Alignas(max_align_t) unsigned char data[];
} block_t;

#define BLOCK_SIZE 8192

struct qry_gql_doc {
  block_t *blocks;
  qry_gql_op_t *ops;
  qry_gql_frag_t *frags;
};

static void *arena_alloc(qry_gql_doc_t *d, size_t n) {
  n = (n + 15) & ~(size_t)15;
  block_t *b = d->blocks;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;
    b = malloc(sizeof(*b) + cap);
    if (!b)
      return NULL;
    b->cap = cap;
    b->used = 0;
    b->next = d->blocks;
    d->blocks = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  memset(p, 0, n);
  return p;
}

void qry_gql_doc_free(qry_gql_doc_t *doc) {
  if (!doc)
    return;
  block_t *b = doc->blocks;
  while (b) {
    block_t *next = b->next;
    free(b);
    b = next;
  }
  free(doc);
}

/* ---- the lexer ---- */

typedef enum tok {
  T_EOF,
  T_PUNCT, /* one of ! $ ( ) : = @ [ ] { | } & or ... (text "...") */
  T_NAME,
  T_INT,
  T_FLOAT,
  T_STRING, /* str / str_len: decoded, in the arena */
} tok_t;

typedef struct parser {
  const char *s;
  size_t len, pos;
  int line;
  size_t line_start;
  qry_gql_doc_t *doc;
  qry_gql_error_t *err;
  int depth, nodes;
  int rc; /* the first failure: SF_EPARSE or SF_ENOMEM */
  /* the current token */
  tok_t tok;
  const char *t;
  size_t tlen;
  int tline, tcol;
  char *str;
  size_t str_len;
} parser_t;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int
fail_at(parser_t *p, int line, int col, const char *fmt, ...) {
  if (p->rc)
    return p->rc;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
  va_end(ap);
  p->err->line = line;
  p->err->col = col;
  p->rc = SF_EPARSE;
  return p->rc;
}

static int oom(parser_t *p) {
  if (!p->rc) {
    snprintf(p->err->message, sizeof(p->err->message), "out of memory");
    p->err->line = p->err->col = 0;
    p->rc = SF_ENOMEM;
  }
  return p->rc;
}

static int col_of(const parser_t *p, size_t pos) {
  return (int)(pos - p->line_start) + 1;
}

/* The length of the UTF-8 sequence at s[0..n), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t need;
  uint32_t cp, min;
  if (c < 0x80)
    return 1;
  if ((c & 0xe0) == 0xc0) {
    need = 2, cp = c & 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    need = 3, cp = c & 0x0f, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    need = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n < need)
    return 0;
  for (size_t i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return need;
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

static bool is_name_start(int c) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static int hex4(const char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int c = (unsigned char)s[i], d;
    if (is_digit(c))
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return -1;
    v = v * 16 + (uint32_t)d;
  }
  *out = v;
  return 0;
}

static int lex_string(parser_t *p) {
  size_t start = p->pos; /* at the opening quote */
  if (p->len - start >= 3 && memcmp(p->s + start, "\"\"\"", 3) == 0)
    return fail_at(p, p->tline, p->tcol,
                   "Syntax Error: block strings are not supported.");
  char *o = arena_alloc(p->doc, p->len - start + 1);
  if (!o)
    return oom(p);
  size_t n = 0, i = start + 1;
  for (;;) {
    if (i >= p->len)
      return fail_at(p, p->line, col_of(p, i),
                     "Syntax Error: Unterminated string.");
    unsigned char c = (unsigned char)p->s[i];
    if (c == '"')
      break;
    if (c == '\n' || c == '\r')
      return fail_at(p, p->line, col_of(p, i),
                     "Syntax Error: Unterminated string.");
    if (c < 0x20 && c != '\t')
      return fail_at(p, p->line, col_of(p, i),
                     "Syntax Error: Invalid character within String: "
                     "U+%04X.",
                     c);
    if (c != '\\') {
      size_t l = utf8_len((const unsigned char *)p->s + i, p->len - i);
      if (!l)
        return fail_at(p, p->line, col_of(p, i),
                       "Syntax Error: Invalid UTF-8 within String.");
      memcpy(o + n, p->s + i, l);
      n += l;
      i += l;
      continue;
    }
    if (i + 1 >= p->len)
      return fail_at(p, p->line, col_of(p, i),
                     "Syntax Error: Unterminated string.");
    char e = p->s[i + 1];
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      static const char map[] = "\"\\/\b\f\n\r\t";
      o[n++] = map[simple - "\"\\/bfnrt"];
      i += 2;
      continue;
    }
    uint32_t cp, lo;
    if (e != 'u' || p->len - i < 6 || hex4(p->s + i + 2, &cp) != 0)
      return fail_at(p, p->line, col_of(p, i),
                     "Syntax Error: Invalid character escape sequence.");
    i += 6;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (p->len - i < 6 || p->s[i] != '\\' || p->s[i + 1] != 'u' ||
          hex4(p->s + i + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
        return fail_at(p, p->line, col_of(p, i - 6),
                       "Syntax Error: Invalid Unicode escape sequence: "
                       "a lone surrogate.");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      i += 6;
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
      return fail_at(p, p->line, col_of(p, i - 6),
                     "Syntax Error: Invalid Unicode escape sequence: "
                     "a lone surrogate.");
    } else if (cp == 0) {
      return fail_at(p, p->line, col_of(p, i - 6),
                     "Syntax Error: \\u0000 is not accepted in a String.");
    }
    n += put_utf8(o + n, cp);
  }
  o[n] = '\0';
  p->tok = T_STRING;
  p->str = o;
  p->str_len = n;
  p->pos = i + 1;
  p->tlen = p->pos - start;
  return 0;
}

static int lex_number(parser_t *p) {
  size_t i = p->pos;
  bool is_float = false;
  if (p->s[i] == '-')
    i++;
  if (i >= p->len || !is_digit(p->s[i]))
    return fail_at(p, p->tline, col_of(p, i),
                   "Syntax Error: Invalid number, expected digit.");
  if (p->s[i] == '0' && i + 1 < p->len && is_digit(p->s[i + 1]))
    return fail_at(p, p->tline, col_of(p, i + 1),
                   "Syntax Error: Invalid number, unexpected digit after "
                   "0.");
  while (i < p->len && is_digit(p->s[i]))
    i++;
  if (i < p->len && p->s[i] == '.') {
    is_float = true;
    i++;
    if (i >= p->len || !is_digit(p->s[i]))
      return fail_at(p, p->tline, col_of(p, i),
                     "Syntax Error: Invalid number, expected digit.");
    while (i < p->len && is_digit(p->s[i]))
      i++;
  }
  if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
    is_float = true;
    i++;
    if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
      i++;
    if (i >= p->len || !is_digit(p->s[i]))
      return fail_at(p, p->tline, col_of(p, i),
                     "Syntax Error: Invalid number, expected digit.");
    while (i < p->len && is_digit(p->s[i]))
      i++;
  }
  if (i < p->len && (p->s[i] == '.' || is_name_start(p->s[i])))
    return fail_at(p, p->tline, col_of(p, i),
                   "Syntax Error: Invalid number, expected digit.");
  p->tok = is_float ? T_FLOAT : T_INT;
  p->tlen = i - p->pos;
  p->pos = i;
  return 0;
}

/* Reads the next token into p. */
static int next(parser_t *p) {
  if (p->rc)
    return p->rc;
  for (;;) {
    if (p->pos >= p->len)
      break;
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == ' ' || c == '\t' || c == ',') {
      p->pos++;
    } else if (c == '\n' || c == '\r') {
      p->pos++;
      if (c == '\r' && p->pos < p->len && p->s[p->pos] == '\n')
        p->pos++;
      p->line++;
      p->line_start = p->pos;
    } else if (c == 0xef && p->len - p->pos >= 3 &&
               memcmp(p->s + p->pos, "\xef\xbb\xbf", 3) == 0) {
      p->pos += 3; /* a byte order mark is ignored */
    } else if (c == '#') {
      while (p->pos < p->len && p->s[p->pos] != '\n' && p->s[p->pos] != '\r')
        p->pos++;
    } else {
      break;
    }
  }
  p->t = p->s + p->pos;
  p->tline = p->line;
  p->tcol = col_of(p, p->pos);
  p->tlen = 0;
  if (p->pos >= p->len) {
    p->tok = T_EOF;
    return 0;
  }
  unsigned char c = (unsigned char)p->s[p->pos];
  if (strchr("!$()=:@[]{}|&", c) && c) {
    p->tok = T_PUNCT;
    p->tlen = 1;
    p->pos++;
    return 0;
  }
  if (c == '.') {
    if (p->len - p->pos >= 3 && memcmp(p->t, "...", 3) == 0) {
      p->tok = T_PUNCT;
      p->tlen = 3;
      p->pos += 3;
      return 0;
    }
    return fail_at(p, p->tline, p->tcol,
                   "Syntax Error: Unexpected character: \".\".");
  }
  if (is_name_start(c)) {
    size_t i = p->pos + 1;
    while (i < p->len && (is_name_start(p->s[i]) || is_digit(p->s[i])))
      i++;
    p->tok = T_NAME;
    p->tlen = i - p->pos;
    p->pos = i;
    return 0;
  }
  if (c == '-' || is_digit(c))
    return lex_number(p);
  if (c == '"')
    return lex_string(p);
  if (c >= 0x20 && c < 0x7f)
    return fail_at(p, p->tline, p->tcol,
                   "Syntax Error: Unexpected character: \"%c\".", c);
  return fail_at(p, p->tline, p->tcol,
                 "Syntax Error: Unexpected character: U+%04X.", c);
}

/* ---- the parser ---- */

static bool at_punct(const parser_t *p, const char *punct) {
  return p->tok == T_PUNCT && p->tlen == strlen(punct) &&
         memcmp(p->t, punct, p->tlen) == 0;
}

static bool at_name(const parser_t *p, const char *name) {
  return p->tok == T_NAME && p->tlen == strlen(name) &&
         memcmp(p->t, name, p->tlen) == 0;
}

/* A description of the current token for messages, as graphql-js says. */
static void describe(const parser_t *p, char *out, size_t cap) {
  switch (p->tok) {
  case T_EOF:
    snprintf(out, cap, "<EOF>");
    return;
  case T_PUNCT:
    snprintf(out, cap, "\"%.*s\"", (int)p->tlen, p->t);
    return;
  case T_NAME:
    snprintf(out, cap, "Name \"%.*s\"", (int)(p->tlen > 40 ? 40 : p->tlen),
             p->t);
    return;
  case T_INT:
    snprintf(out, cap, "Int \"%.*s\"", (int)(p->tlen > 40 ? 40 : p->tlen),
             p->t);
    return;
  case T_FLOAT:
    snprintf(out, cap, "Float \"%.*s\"", (int)(p->tlen > 40 ? 40 : p->tlen),
             p->t);
    return;
  case T_STRING:
    snprintf(out, cap, "String");
    return;
  }
}

static int unexpected(parser_t *p, const char *expected) {
  char found[64];
  describe(p, found, sizeof(found));
  if (expected)
    return fail_at(p, p->tline, p->tcol, "Syntax Error: Expected %s, found %s.",
                   expected, found);
  return fail_at(p, p->tline, p->tcol, "Syntax Error: Unexpected %s.", found);
}

static int expect_punct(parser_t *p, const char *punct) {
  if (!at_punct(p, punct)) {
    char want[8];
    snprintf(want, sizeof(want), "\"%s\"", punct);
    return unexpected(p, want);
  }
  return next(p);
}

/* The current name copied into the arena; advances. */
static int take_name(parser_t *p, const char **out) {
  if (p->tok != T_NAME)
    return unexpected(p, "Name");
  char *s = arena_alloc(p->doc, p->tlen + 1);
  if (!s)
    return oom(p);
  memcpy(s, p->t, p->tlen);
  s[p->tlen] = '\0';
  *out = s;
  return next(p);
}

static int count_node(parser_t *p) {
  if (++p->nodes > QRY_GQL_MAX_NODES)
    return fail_at(p, p->tline, p->tcol,
                   "Syntax Error: the document has more than %d nodes.",
                   QRY_GQL_MAX_NODES);
  return 0;
}

static int enter(parser_t *p) {
  if (++p->depth > QRY_GQL_MAX_DEPTH)
    return fail_at(p, p->tline, p->tcol,
                   "Syntax Error: the document nests deeper than %d "
                   "levels.",
                   QRY_GQL_MAX_DEPTH);
  return 0;
}

static int no_directives(parser_t *p) {
  if (at_punct(p, "@"))
    return fail_at(p, p->tline, p->tcol,
                   "Syntax Error: directives are not supported.");
  return 0;
}

static int parse_value(parser_t *p, bool is_const, qry_gql_value_t **out);

static int parse_items(parser_t *p, bool is_const, bool object,
                       qry_gql_value_t *v) {
  int rc;
  if ((rc = enter(p)) != 0 || (rc = next(p)) != 0)
    return rc;
  qry_gql_value_t **tail = &v->items;
  const char *close = object ? "}" : "]";
  while (!at_punct(p, close)) {
    if (p->tok == T_EOF)
      return unexpected(p, object ? "Name" : NULL);
    const char *name = NULL;
    int line = p->tline, col = p->tcol;
    if (object) {
      if ((rc = take_name(p, &name)) != 0 || (rc = expect_punct(p, ":")) != 0)
        return rc;
      for (qry_gql_value_t *o = v->items; o; o = o->next)
        if (strcmp(o->name, name) == 0)
          return fail_at(p, line, col,
                         "There can be only one input field named \"%s\".",
                         name);
    }
    qry_gql_value_t *item = NULL;
    if ((rc = parse_value(p, is_const, &item)) != 0)
      return rc;
    item->name = name;
    *tail = item;
    tail = &item->next;
  }
  p->depth--;
  return next(p);
}

static int parse_value(parser_t *p, bool is_const, qry_gql_value_t **out) {
  int rc;
  if ((rc = count_node(p)) != 0)
    return rc;
  qry_gql_value_t *v = arena_alloc(p->doc, sizeof(*v));
  if (!v)
    return oom(p);
  v->line = p->tline;
  v->col = p->tcol;
  *out = v;
  switch (p->tok) {
  case T_INT:
  case T_FLOAT: {
    char *t = arena_alloc(p->doc, p->tlen + 1);
    if (!t)
      return oom(p);
    memcpy(t, p->t, p->tlen);
    v->kind = p->tok == T_INT ? QRY_GQL_INT : QRY_GQL_FLOAT;
    v->text = t;
    v->len = p->tlen;
    return next(p);
  }
  case T_STRING:
    v->kind = QRY_GQL_STRING;
    v->text = p->str;
    v->len = p->str_len;
    return next(p);
  case T_NAME:
    if (at_name(p, "true") || at_name(p, "false")) {
      v->kind = QRY_GQL_BOOL;
      v->boolean = at_name(p, "true");
      return next(p);
    }
    if (at_name(p, "null")) {
      v->kind = QRY_GQL_NULL;
      return next(p);
    }
    v->kind = QRY_GQL_ENUM;
    v->len = p->tlen;
    return take_name(p, &v->text);
  case T_PUNCT:
    if (at_punct(p, "$")) {
      if (is_const)
        return fail_at(p, p->tline, p->tcol,
                       "Syntax Error: a variable is not allowed in a "
                       "default value.");
      if ((rc = next(p)) != 0)
        return rc;
      v->kind = QRY_GQL_VAR;
      return take_name(p, &v->text);
    }
    if (at_punct(p, "[")) {
      v->kind = QRY_GQL_LIST;
      return parse_items(p, is_const, false, v);
    }
    if (at_punct(p, "{")) {
      v->kind = QRY_GQL_OBJECT;
      return parse_items(p, is_const, true, v);
    }
    break;
  case T_EOF:
    break;
  }
  return unexpected(p, NULL);
}

static int parse_args(parser_t *p, qry_gql_arg_t **out) {
  int rc;
  if (!at_punct(p, "("))
    return 0;
  if ((rc = next(p)) != 0)
    return rc;
  qry_gql_arg_t **tail = out;
  do {
    if ((rc = count_node(p)) != 0)
      return rc;
    qry_gql_arg_t *a = arena_alloc(p->doc, sizeof(*a));
    if (!a)
      return oom(p);
    a->line = p->tline;
    a->col = p->tcol;
    if ((rc = take_name(p, &a->name)) != 0 ||
        (rc = expect_punct(p, ":")) != 0 ||
        (rc = parse_value(p, false, &a->value)) != 0)
      return rc;
    for (qry_gql_arg_t *o = *out; o; o = o->next)
      if (strcmp(o->name, a->name) == 0)
        return fail_at(p, a->line, a->col,
                       "There can be only one argument named \"%s\".",
                       a->name);
    *tail = a;
    tail = &a->next;
  } while (!at_punct(p, ")"));
  return next(p);
}

static int parse_selset(parser_t *p, qry_gql_sel_t **out);

static int parse_selection(parser_t *p, qry_gql_sel_t **out) {
  int rc;
  if ((rc = count_node(p)) != 0)
    return rc;
  qry_gql_sel_t *s = arena_alloc(p->doc, sizeof(*s));
  if (!s)
    return oom(p);
  s->line = p->tline;
  s->col = p->tcol;
  *out = s;
  if (at_punct(p, "...")) {
    if ((rc = next(p)) != 0)
      return rc;
    if (p->tok == T_NAME && !at_name(p, "on")) {
      s->kind = QRY_GQL_SPREAD;
      if ((rc = take_name(p, &s->name)) != 0)
        return rc;
      return no_directives(p);
    }
    s->kind = QRY_GQL_INLINE;
    if (at_name(p, "on") &&
        ((rc = next(p)) != 0 || (rc = take_name(p, &s->type_cond)) != 0))
      return rc;
    if ((rc = no_directives(p)) != 0)
      return rc;
    return parse_selset(p, &s->sels);
  }
  s->kind = QRY_GQL_FIELD;
  if ((rc = take_name(p, &s->name)) != 0)
    return rc;
  s->alias = s->name;
  if (at_punct(p, ":")) {
    if ((rc = next(p)) != 0 || (rc = take_name(p, &s->name)) != 0)
      return rc;
  }
  if ((rc = parse_args(p, &s->args)) != 0 || (rc = no_directives(p)) != 0)
    return rc;
  if (at_punct(p, "{"))
    return parse_selset(p, &s->sels);
  return 0;
}

static int parse_selset(parser_t *p, qry_gql_sel_t **out) {
  int rc;
  if (!at_punct(p, "{"))
    return unexpected(p, "\"{\"");
  if ((rc = enter(p)) != 0 || (rc = next(p)) != 0)
    return rc;
  qry_gql_sel_t **tail = out;
  do {
    if ((rc = parse_selection(p, tail)) != 0)
      return rc;
    tail = &(*tail)->next;
  } while (!at_punct(p, "}"));
  p->depth--;
  return next(p);
}

/* A type reference, kept as its text. */
static int parse_type(parser_t *p, bool *non_null) {
  int rc;
  if (at_punct(p, "[")) {
    bool inner;
    if ((rc = enter(p)) != 0 || (rc = next(p)) != 0 ||
        (rc = parse_type(p, &inner)) != 0 || (rc = expect_punct(p, "]")) != 0)
      return rc;
    p->depth--;
  } else if (p->tok != T_NAME) {
    return unexpected(p, "Name");
  } else if ((rc = next(p)) != 0) {
    return rc;
  }
  *non_null = at_punct(p, "!");
  return *non_null ? next(p) : 0;
}

static int parse_vardefs(parser_t *p, qry_gql_vardef_t **out) {
  int rc;
  if (!at_punct(p, "("))
    return 0;
  if ((rc = next(p)) != 0)
    return rc;
  qry_gql_vardef_t **tail = out;
  do {
    if ((rc = count_node(p)) != 0)
      return rc;
    qry_gql_vardef_t *v = arena_alloc(p->doc, sizeof(*v));
    if (!v)
      return oom(p);
    v->line = p->tline;
    v->col = p->tcol;
    if ((rc = expect_punct(p, "$")) != 0 || (rc = take_name(p, &v->name)) != 0 ||
        (rc = expect_punct(p, ":")) != 0)
      return rc;
    size_t start = (size_t)(p->t - p->s);
    if ((rc = parse_type(p, &v->non_null)) != 0)
      return rc;
    size_t end = (size_t)(p->t - p->s);
    while (end > start && strchr(" \t\r\n,", p->s[end - 1]))
      end--;
    char *type = arena_alloc(p->doc, end - start + 1);
    if (!type)
      return oom(p);
    memcpy(type, p->s + start, end - start);
    v->type = type;
    if (at_punct(p, "=") &&
        ((rc = next(p)) != 0 || (rc = parse_value(p, true, &v->def)) != 0))
      return rc;
    for (qry_gql_vardef_t *o = *out; o; o = o->next)
      if (strcmp(o->name, v->name) == 0)
        return fail_at(p, v->line, v->col,
                       "There can be only one variable named \"$%s\".",
                       v->name);
    *tail = v;
    tail = &v->next;
  } while (!at_punct(p, ")"));
  return next(p);
}

static int parse_definition(parser_t *p, qry_gql_op_t ***ops,
                            qry_gql_frag_t ***frags) {
  int rc;
  int line = p->tline, col = p->tcol;
  if (at_name(p, "fragment")) {
    qry_gql_frag_t *f = arena_alloc(p->doc, sizeof(*f));
    if (!f)
      return oom(p);
    f->line = line;
    f->col = col;
    if ((rc = next(p)) != 0)
      return rc;
    if (at_name(p, "on"))
      return unexpected(p, "a fragment name");
    if ((rc = take_name(p, &f->name)) != 0)
      return rc;
    if (!at_name(p, "on"))
      return unexpected(p, "\"on\"");
    if ((rc = next(p)) != 0 || (rc = take_name(p, &f->type_cond)) != 0 ||
        (rc = no_directives(p)) != 0 || (rc = parse_selset(p, &f->sels)) != 0)
      return rc;
    for (qry_gql_frag_t *o = p->doc->frags; o; o = o->next)
      if (strcmp(o->name, f->name) == 0)
        return fail_at(p, line, col,
                       "There can be only one fragment named \"%s\".",
                       f->name);
    **frags = f;
    *frags = &f->next;
    return 0;
  }
  qry_gql_op_t *op = arena_alloc(p->doc, sizeof(*op));
  if (!op)
    return oom(p);
  op->line = line;
  op->col = col;
  if (at_punct(p, "{")) {
    op->kind = QRY_GQL_QUERY;
  } else {
    if (at_name(p, "query"))
      op->kind = QRY_GQL_QUERY;
    else if (at_name(p, "mutation"))
      op->kind = QRY_GQL_MUTATION;
    else if (at_name(p, "subscription"))
      op->kind = QRY_GQL_SUBSCRIPTION;
    else if (p->tok == T_NAME)
      return fail_at(p, p->tline, p->tcol,
                     "Syntax Error: Unexpected Name \"%.*s\": only "
                     "executable definitions are accepted.",
                     (int)(p->tlen > 40 ? 40 : p->tlen), p->t);
    else
      return unexpected(p, NULL);
    if ((rc = next(p)) != 0)
      return rc;
    if (p->tok == T_NAME && (rc = take_name(p, &op->name)) != 0)
      return rc;
    if ((rc = parse_vardefs(p, &op->vars)) != 0 ||
        (rc = no_directives(p)) != 0)
      return rc;
  }
  if ((rc = parse_selset(p, &op->sels)) != 0)
    return rc;
  for (qry_gql_op_t *o = p->doc->ops; o; o = o->next)
    if (o->name && op->name && strcmp(o->name, op->name) == 0)
      return fail_at(p, line, col,
                     "There can be only one operation named \"%s\".",
                     op->name);
  **ops = op;
  *ops = &op->next;
  return 0;
}

int qry_gql_parse(const char *text, size_t len, qry_gql_doc_t **out,
                  qry_gql_error_t *err) {
  *out = NULL;
  memset(err, 0, sizeof(*err));
  parser_t p = {.s = text, .len = len, .line = 1, .err = err};
  if (len > QRY_GQL_MAX_DOC) {
    snprintf(err->message, sizeof(err->message),
             "Syntax Error: the document is longer than %d bytes.",
             QRY_GQL_MAX_DOC);
    return SF_EPARSE;
  }
  if (!(p.doc = calloc(1, sizeof(*p.doc))))
    return SF_ENOMEM;
  qry_gql_op_t **ops = &p.doc->ops;
  qry_gql_frag_t **frags = &p.doc->frags;
  int rc = next(&p);
  if (!rc && p.tok == T_EOF)
    rc = fail_at(&p, p.tline, p.tcol,
                 "Syntax Error: Unexpected <EOF>: the document has no "
                 "operation.");
  while (!rc && p.tok != T_EOF)
    rc = parse_definition(&p, &ops, &frags);
  if (!rc && !p.doc->ops)
    rc = fail_at(&p, 1, 1, "the document has no operation.");
  if (rc) {
    qry_gql_doc_free(p.doc);
    return p.rc ? p.rc : rc;
  }
  *out = p.doc;
  return 0;
}

const qry_gql_op_t *qry_gql_ops(const qry_gql_doc_t *doc) { return doc->ops; }

const qry_gql_frag_t *qry_gql_frag(const qry_gql_doc_t *doc,
                                   const char *name) {
  for (const qry_gql_frag_t *f = doc->frags; f; f = f->next)
    if (strcmp(f->name, name) == 0)
      return f;
  return NULL;
}

const qry_gql_op_t *qry_gql_pick(const qry_gql_doc_t *doc, const char *name,
                                 qry_gql_error_t *err) {
  memset(err, 0, sizeof(*err));
  if (name) {
    for (const qry_gql_op_t *o = doc->ops; o; o = o->next)
      if (o->name && strcmp(o->name, name) == 0)
        return o;
    snprintf(err->message, sizeof(err->message),
             "Unknown operation named \"%.64s\".", name);
    return NULL;
  }
  if (doc->ops && doc->ops->next) {
    snprintf(err->message, sizeof(err->message),
             "Must provide operation name if query contains multiple "
             "operations.");
    return NULL;
  }
  return doc->ops;
}

/* ---- values as JSON ---- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
value_fail(qry_gql_error_t *err, const qry_gql_value_t *v, const char *fmt,
           ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->message, sizeof(err->message), fmt, ap);
  va_end(ap);
  err->line = v->line;
  err->col = v->col;
  return SF_EPARSE;
}

int qry_gql_value_json(const qry_gql_value_t *v, const qry_gql_op_t *op,
                       const json_t *vars, json_t **out,
                       qry_gql_error_t *err) {
  *out = NULL;
  json_t *j = NULL;
  switch (v->kind) {
  case QRY_GQL_NULL:
    j = json_null();
    break;
  case QRY_GQL_BOOL:
    j = json_boolean(v->boolean);
    break;
  case QRY_GQL_INT: {
    errno = 0;
    char *end = NULL;
    long long n = strtoll(v->text, &end, 10);
    if (errno || *end || n > INT32_MAX || n < INT32_MIN)
      return value_fail(err, v,
                        "Int cannot represent non 32-bit signed integer "
                        "value: %.40s",
                        v->text);
    j = json_integer(n);
    break;
  }
  case QRY_GQL_FLOAT: {
    errno = 0;
    char *end = NULL;
    double d = strtod(v->text, &end);
    if (errno || *end)
      return value_fail(err, v, "Float cannot represent value: %.40s",
                        v->text);
    j = json_real(d);
    break;
  }
  case QRY_GQL_STRING:
    j = json_stringn(v->text, v->len);
    break;
  case QRY_GQL_ENUM:
    j = json_string(v->text);
    break;
  case QRY_GQL_VAR: {
    const qry_gql_vardef_t *d = op ? op->vars : NULL;
    while (d && strcmp(d->name, v->text) != 0)
      d = d->next;
    if (!d)
      return value_fail(err, v, "Variable \"$%.64s\" is not defined.",
                        v->text);
    const json_t *given = json_object_get(vars, v->text);
    if (given) {
      if (json_is_null(given) && d->non_null)
        return value_fail(err, v,
                          "Variable \"$%.64s\" of non-null type must not be "
                          "null.",
                          v->text);
      *out = json_incref((json_t *)given);
      return 0;
    }
    if (d->def)
      return qry_gql_value_json(d->def, op, NULL, out, err);
    if (d->non_null)
      return value_fail(err, v,
                        "Variable \"$%.64s\" of required type was not "
                        "provided.",
                        v->text);
    j = json_null();
    break;
  }
  case QRY_GQL_LIST:
  case QRY_GQL_OBJECT: {
    bool obj = v->kind == QRY_GQL_OBJECT;
    j = obj ? json_object() : json_array();
    if (!j)
      return SF_ENOMEM;
    for (const qry_gql_value_t *i = v->items; i; i = i->next) {
      json_t *e = NULL;
      int rc = qry_gql_value_json(i, op, vars, &e, err);
      if (rc) {
        json_decref(j);
        return rc;
      }
      if (obj ? json_object_set_new(j, i->name, e) : json_array_append_new(j, e)) {
        json_decref(j);
        return SF_ENOMEM;
      }
    }
    break;
  }
  }
  if (!j)
    return SF_ENOMEM;
  *out = j;
  return 0;
}

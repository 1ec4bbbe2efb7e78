/* qry_gql: a small, strict GraphQL document parser for /graphql
 * (docs/parse-compat.md, "GraphQL"). No GraphQL library for C is packaged,
 * so this one is ours; it is built to face untrusted input:
 *  - the document is at most QRY_GQL_MAX_DOC bytes and QRY_GQL_MAX_NODES
 *    nodes (selections, arguments, values), nesting (selection sets, lists,
 *    objects, list types together) at most QRY_GQL_MAX_DEPTH levels:
 *    recursion is bounded, and so is memory (one arena per document);
 *  - the text must be UTF-8; strings have their escapes (\" \\ \/ \b \f \n
 *    \r \t \uXXXX with surrogate pairs) decoded, control characters and
 *    \u0000 refused; block strings ("""...""") are refused;
 *  - every error carries the line and column (1-based, in bytes) where it
 *    was found, as GraphQL servers report them.
 * It parses executable documents: operations (query / mutation /
 * subscription, named or anonymous, the shorthand "{ ... }"), variable
 * definitions with defaults, selection sets, aliases, arguments, every
 * literal kind (Int, Float, String, Boolean, null, enum, list, object,
 * $variable), fragment definitions, fragment spreads and inline fragments.
 * Directives and type system definitions are refused.
 *
 * The tree is read-only after the parse; its strings are NUL-terminated
 * and live in the document's arena. Pure and thread-safe; no I/O. */
#ifndef QRY_GQL_H
#define QRY_GQL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define QRY_GQL_MAX_DOC (64 * 1024) /* bytes of a query text */
#define QRY_GQL_MAX_DEPTH 24        /* nesting of sets, lists, objects */
#define QRY_GQL_MAX_NODES 4096      /* selections, arguments and values */

typedef enum qry_gql_kind {
  QRY_GQL_NULL,
  QRY_GQL_INT,    /* text: the digits as written */
  QRY_GQL_FLOAT,  /* text: as written */
  QRY_GQL_STRING, /* text: decoded */
  QRY_GQL_BOOL,   /* boolean */
  QRY_GQL_ENUM,   /* text: the name */
  QRY_GQL_LIST,   /* items */
  QRY_GQL_OBJECT, /* items, each with a name */
  QRY_GQL_VAR,    /* text: the variable's name without $ */
} qry_gql_kind_t;

typedef struct qry_gql_value qry_gql_value_t;
struct qry_gql_value {
  qry_gql_kind_t kind;
  const char *text;
  size_t len; /* of text */
  bool boolean;
  const char *name;       /* object fields: the field name */
  qry_gql_value_t *items; /* lists, objects: first item */
  qry_gql_value_t *next;  /* next item of the enclosing list / object */
  int line, col;
};

typedef struct qry_gql_arg qry_gql_arg_t;
struct qry_gql_arg {
  const char *name;
  qry_gql_value_t *value;
  qry_gql_arg_t *next;
  int line, col;
};

typedef enum qry_gql_sel_kind {
  QRY_GQL_FIELD,
  QRY_GQL_SPREAD, /* ...Name: name is the fragment's */
  QRY_GQL_INLINE, /* ... on Type { }: type_cond may be NULL */
} qry_gql_sel_kind_t;

typedef struct qry_gql_sel qry_gql_sel_t;
struct qry_gql_sel {
  qry_gql_sel_kind_t kind;
  const char *alias; /* fields: the response key (alias or name) */
  const char *name;
  const char *type_cond;
  qry_gql_arg_t *args;
  qry_gql_sel_t *sels; /* NULL: no selection set */
  qry_gql_sel_t *next;
  int line, col;
};

typedef struct qry_gql_vardef qry_gql_vardef_t;
struct qry_gql_vardef {
  const char *name;
  const char *type;     /* as written, e.g. "[StoreOrder!]!" */
  bool non_null;        /* the outer type ends with ! */
  qry_gql_value_t *def; /* default, or NULL */
  qry_gql_vardef_t *next;
  int line, col;
};

typedef enum qry_gql_op_kind {
  QRY_GQL_QUERY,
  QRY_GQL_MUTATION,
  QRY_GQL_SUBSCRIPTION,
} qry_gql_op_kind_t;

typedef struct qry_gql_op qry_gql_op_t;
struct qry_gql_op {
  qry_gql_op_kind_t kind;
  const char *name; /* NULL: anonymous */
  qry_gql_vardef_t *vars;
  qry_gql_sel_t *sels;
  qry_gql_op_t *next;
  int line, col;
};

typedef struct qry_gql_frag qry_gql_frag_t;
struct qry_gql_frag {
  const char *name;
  const char *type_cond;
  qry_gql_sel_t *sels;
  qry_gql_frag_t *next;
  int line, col;
};

typedef struct qry_gql_doc qry_gql_doc_t;

/* A parse or execution error: the message and where it applies (line and
 * col 0: nowhere in particular). */
typedef struct qry_gql_error {
  char message[200];
  int line, col;
} qry_gql_error_t;

/* Parses text (len bytes, need not be NUL-terminated; borrowed). Returns 0
 * with *out set (free it with qry_gql_doc_free), SF_EPARSE with err filled
 * (a syntax error, or a limit passed; nothing to free), or SF_ENOMEM. A
 * document without any operation, two operations or fragments of the same
 * name, repeated argument / input field / variable names are errors too. */
int qry_gql_parse(const char *text, size_t len, qry_gql_doc_t **out,
                  qry_gql_error_t *err);

void qry_gql_doc_free(qry_gql_doc_t *doc);

/* The document's operations (the first of the list) and the fragment
 * named name (NULL: none); borrowed from doc. */
const qry_gql_op_t *qry_gql_ops(const qry_gql_doc_t *doc);
const qry_gql_frag_t *qry_gql_frag(const qry_gql_doc_t *doc,
                                   const char *name);

/* The operation to run: the one named name, or the only one when name is
 * NULL. NULL with err filled when there is none or the choice is
 * ambiguous. */
const qry_gql_op_t *qry_gql_pick(const qry_gql_doc_t *doc, const char *name,
                                 qry_gql_error_t *err);

/* v as JSON, $variables taken from vars (an object, may be NULL; a
 * variable must be declared by op; absent: its default, else null, or an
 * error when its type is non-null); enums become strings, Int a JSON
 * integer (SF_EPARSE beyond 32 bits, as GraphQL's Int), Float a real.
 * Returns 0 with *out a new reference, SF_EPARSE with err filled, or
 * SF_ENOMEM. */
int qry_gql_value_json(const qry_gql_value_t *v, const qry_gql_op_t *op,
                       const json_t *vars, json_t **out, qry_gql_error_t *err);

#endif

/* fake_result: PostgreSQL results built in memory for the query service's
 * unit tests (libpq's PQmakeEmptyPGresult / PQsetResultAttrs /
 * PQsetvalue), so that row -> JSON code is tested without a server. A
 * test helper shared by test_rows.c and test_parse_query.c; include it
 * after <cmocka.h>. */
#ifndef FAKE_RESULT_H
#define FAKE_RESULT_H

#include <libpq-fe.h>
#include <string.h>

#define FAKE_MAX_COLS 24

/* A TUPLES_OK result with the given text columns and rows; a NULL cell is
 * SQL NULL. The caller PQclear()s it. */
static inline PGresult *fake_result(int ncols, const char *const *cols,
                                    int nrows,
                                    const char *const (*rows)[FAKE_MAX_COLS]) {
  PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
  assert_non_null(res);
  PGresAttDesc attrs[FAKE_MAX_COLS];
  memset(attrs, 0, sizeof(attrs));
  for (int c = 0; c < ncols; c++) {
    attrs[c].name = (char *)cols[c];
    attrs[c].format = 0;
    attrs[c].typid = 25; /* text */
    attrs[c].typlen = -1;
    attrs[c].atttypmod = -1;
  }
  assert_int_equal(PQsetResultAttrs(res, ncols, attrs), 1);
  for (int r = 0; r < nrows; r++)
    for (int c = 0; c < ncols; c++) {
      const char *v = rows[r][c];
      assert_int_equal(
          PQsetvalue(res, r, c, (char *)v, v ? (int)strlen(v) : -1), 1);
    }
  return res;
}

#endif

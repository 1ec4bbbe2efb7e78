/* ctl_table: a plain-text table for a terminal: a header row, columns as
 * wide as their widest cell (counted in UTF-8 characters), two spaces
 * between them, numbers right-aligned, a cell longer than its column's
 * limit cut with "...".
 *
 * Cells are copied. Not thread-safe. */
#ifndef CTL_TABLE_H
#define CTL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CTL_TABLE_MAX_COLS 16

typedef struct ctl_table ctl_table_t;

typedef struct ctl_column {
  const char *title; /* borrowed: must outlive the table */
  bool right;        /* align right (numbers) */
  size_t max;        /* most characters shown; 0: no limit */
} ctl_column_t;

/* Creates a table of n (1..CTL_TABLE_MAX_COLS) columns; cols is copied.
 * Returns 0, SF_EINVAL or SF_ENOMEM. */
int ctl_table_new(ctl_table_t **out, const ctl_column_t *cols, size_t n);
void ctl_table_destroy(ctl_table_t *t);

/* Adds a row of n cells (NULL is shown as "-"). Returns 0 or SF_ENOMEM. */
int ctl_table_add(ctl_table_t *t, const char *const *cells);

size_t ctl_table_rows(const ctl_table_t *t);

/* Writes the header and the rows; trailing blanks are never written. */
void ctl_table_print(const ctl_table_t *t, FILE *out);

/* Characters of a UTF-8 string (bytes that do not start a character are
 * not counted). */
size_t ctl_utf8_width(const char *s);

#endif

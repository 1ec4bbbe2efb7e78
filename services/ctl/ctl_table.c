/* ctl_table: column widths and padding (see ctl_table.h). */
#include "ctl_table.h"

#include <stdlib.h>
#include <string.h>

#include "sf/err.h"

struct ctl_table {
  ctl_column_t cols[CTL_TABLE_MAX_COLS];
  size_t n_cols;
  char **cells; /* rows x n_cols */
  size_t n_rows, cap_rows;
};

int ctl_table_new(ctl_table_t **out, const ctl_column_t *cols, size_t n) {
  if (n < 1 || n > CTL_TABLE_MAX_COLS)
    return SF_EINVAL;
  ctl_table_t *t = calloc(1, sizeof *t);
  if (!t)
    return SF_ENOMEM;
  memcpy(t->cols, cols, n * sizeof *cols);
  t->n_cols = n;
  *out = t;
  return 0;
}

void ctl_table_destroy(ctl_table_t *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
    free(t->cells[i]);
  free(t->cells);
  free(t);
}

size_t ctl_table_rows(const ctl_table_t *t) { return t->n_rows; }

size_t ctl_utf8_width(const char *s) {
  size_t w = 0;
  for (; *s; s++)
    w += ((unsigned char)*s & 0xC0) != 0x80;
  return w;
}

/* Bytes of the first max characters of s. */
static size_t utf8_prefix(const char *s, size_t max) {
  size_t chars = 0, i = 0;
  for (; s[i]; i++) {
    if (((unsigned char)s[i] & 0xC0) != 0x80) {
      if (chars == max)
        break;
      chars++;
    }
  }
  return i;
}

int ctl_table_add(ctl_table_t *t, const char *const *cells) {
  if (t->n_rows == t->cap_rows) {
    size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
    char **nc = realloc(t->cells, cap * t->n_cols * sizeof *nc);
    if (!nc)
      return SF_ENOMEM;
    t->cells = nc;
    t->cap_rows = cap;
  }
  char **row = t->cells + t->n_rows * t->n_cols;
  for (size_t c = 0; c < t->n_cols; c++) {
    const char *v = cells[c] ? cells[c] : "-";
    size_t max = t->cols[c].max;
    if (max > 3 && ctl_utf8_width(v) > max) {
      size_t keep = utf8_prefix(v, max - 3);
      row[c] = malloc(keep + 4);
      if (row[c]) {
        memcpy(row[c], v, keep);
        memcpy(row[c] + keep, "...", 4);
      }
    } else {
      row[c] = strdup(v);
    }
    if (!row[c]) {
      for (size_t k = 0; k < c; k++)
        free(row[k]);
      return SF_ENOMEM;
    }
  }
  t->n_rows++;
  return 0;
}

static void print_row(const ctl_table_t *t, const char *const *cells,
                      const size_t *width, FILE *out) {
  size_t total = 0;
  for (size_t c = 0; c < t->n_cols; c++)
    total += width[c] + strlen(cells[c]) + 2; /* generous: bytes >= chars */
  char *line = malloc(total + 1);
  if (!line) {
    fputs("(out of memory)\n", out);
    return;
  }
  size_t k = 0;
  for (size_t c = 0; c < t->n_cols; c++) {
    size_t w = ctl_utf8_width(cells[c]), n = strlen(cells[c]);
    size_t pad = width[c] > w ? width[c] - w : 0;
    if (c) {
      memcpy(line + k, "  ", 2);
      k += 2;
    }
    if (t->cols[c].right) {
      memset(line + k, ' ', pad);
      k += pad;
    }
    memcpy(line + k, cells[c], n);
    k += n;
    if (!t->cols[c].right) {
      memset(line + k, ' ', pad);
      k += pad;
    }
  }
  while (k && line[k - 1] == ' ') /* no trailing blanks */
    k--;
  line[k] = '\0';
  fputs(line, out);
  fputc('\n', out);
  free(line);
}

void ctl_table_print(const ctl_table_t *t, FILE *out) {
  size_t width[CTL_TABLE_MAX_COLS];
  const char *titles[CTL_TABLE_MAX_COLS];
  for (size_t c = 0; c < t->n_cols; c++) {
    titles[c] = t->cols[c].title;
    width[c] = ctl_utf8_width(titles[c]);
  }
  for (size_t r = 0; r < t->n_rows; r++)
    for (size_t c = 0; c < t->n_cols; c++) {
      size_t w = ctl_utf8_width(t->cells[r * t->n_cols + c]);
      if (w > width[c])
        width[c] = w;
    }
  print_row(t, titles, width, out);
  for (size_t r = 0; r < t->n_rows; r++)
    print_row(t, (const char *const *)(t->cells + r * t->n_cols), width, out);
}

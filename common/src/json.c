/* json: request-body helpers over jansson, RFC 3339 times and decimal text.
 *
 * Error texts are one line that starts with the field name, e.g.
 * "quantity: must be an integer between 1 and 2147483647", so the HTTP layer
 * can hand them to clients as they are. Times are converted with our own
 * civil-date arithmetic (days from a proleptic Gregorian date and back)
 * because timegm() is neither C11 nor POSIX. */
#include "sf/json.h"
#include "sf/err.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t cap, const char *fmt, ...) {
  if (!err || cap == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
}

int sf_json_parse_object(const char *body, size_t len, json_t **out, char *err,
                         size_t err_cap) {
  *out = NULL;
  json_error_t jerr;
  json_t *root = json_loadb(body ? body : "", body ? len : 0,
                            JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    set_err(err, err_cap, "body: invalid JSON at line %d, column %d: %s",
            jerr.line, jerr.column, jerr.text);
    return SF_EPARSE;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    set_err(err, err_cap, "body: must be a JSON object");
    return SF_EPARSE;
  }
  *out = root;
  return 0;
}

/* Looks key up; returns NULL when obj is not an object or key is missing or
 * null. */
static json_t *lookup(const json_t *obj, const char *key) {
  json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  return json_is_null(v) ? NULL : v;
}

int sf_json_get_string(const json_t *obj, const char *key, bool required,
                       size_t max_len, const char **out, char *err,
                       size_t err_cap) {
  json_t *v = lookup(obj, key);
  if (!v) {
    if (required) {
      set_err(err, err_cap, "%s: is required", key);
      return SF_ENOTFOUND;
    }
    *out = NULL;
    return 0;
  }
  if (!json_is_string(v)) {
    set_err(err, err_cap, "%s: must be a string", key);
    return SF_EINVAL;
  }
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if (required && n == 0) {
    set_err(err, err_cap, "%s: must not be empty", key);
    return SF_EINVAL;
  }
  if (n > max_len) {
    set_err(err, err_cap, "%s: must be at most %zu bytes", key, max_len);
    return SF_EINVAL;
  }
  for (size_t i = 0; i < n; i++) { /* NUL too: a built value may hold one */
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
      set_err(err, err_cap, "%s: must not contain control characters", key);
      return SF_EINVAL;
    }
  }
  *out = s;
  return 0;
}

int sf_json_get_int(const json_t *obj, const char *key, bool required,
                    int64_t min, int64_t max, int64_t *out, bool *present,
                    char *err, size_t err_cap) {
  if (present)
    *present = false;
  json_t *v = lookup(obj, key);
  if (!v) {
    if (required) {
      set_err(err, err_cap, "%s: is required", key);
      return SF_ENOTFOUND;
    }
    return 0;
  }
  json_int_t x = json_is_integer(v) ? json_integer_value(v) : 0;
  if (!json_is_integer(v) || x < min || x > max) {
    set_err(err, err_cap,
            "%s: must be an integer between %" PRId64 " and %" PRId64, key,
            min, max);
    return SF_EINVAL;
  }
  *out = (int64_t)x;
  if (present)
    *present = true;
  return 0;
}

int sf_json_only_keys(const json_t *obj, const char *const *allowed, char *err,
                      size_t err_cap) {
  const char *key;
  json_t *v;
  if (!json_is_object(obj)) {
    set_err(err, err_cap, "body: must be a JSON object");
    return SF_EINVAL;
  }
  json_object_foreach((json_t *)obj, key, v) {
    bool ok = false;
    for (size_t i = 0; allowed && allowed[i] && !ok; i++)
      ok = strcmp(key, allowed[i]) == 0;
    if (!ok) {
      set_err(err, err_cap, "%s: unknown field", key);
      return SF_EINVAL;
    }
  }
  return 0;
}

char *sf_json_dumps(const json_t *v) {
  return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* ---- times ------------------------------------------------------------ */

#define US_PER_S INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_S)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

void sf_json_format_time(int64_t unix_us, char *out, size_t cap) {
  if (!out || cap == 0)
    return;
  int64_t days = unix_us / US_PER_DAY, rem = unix_us % US_PER_DAY;
  if (rem < 0) { /* floor division for times before 1970 */
    rem += US_PER_DAY;
    days--;
  }
  int64_t y;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  int64_t secs = rem / US_PER_S;
  if (y < 0 || y > 9999 || cap < 28) {
    snprintf(out, cap, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%06dZ", y, m, d,
             (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
             (int)(rem % US_PER_S));
    return;
  }
  /* the common case without printf: a page of rows formats one per row */
  const int parts[][2] = {{(int)y, 4}, {m, 2}, {d, 2}, {(int)(secs / 3600), 2}, {(int)(secs / 60 % 60), 2}, {(int)(secs % 60), 2}, {(int)(rem % US_PER_S), 6}};
  static const char seps[] = "--T::.Z";
  char *o = out;
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
    int v = parts[i][0];
    for (int k = parts[i][1] - 1; k >= 0; k--) {
      o[k] = (char)('0' + v % 10);
      v /= 10;
    }
    o += parts[i][1];
    *o++ = seps[i];
  }
  *o = '\0';
}

/* Reads exactly n digits at *p into *out and advances. */
static bool digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    char c = (*p)[i];
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + (c - '0');
  }
  *p += n;
  *out = v;
  return true;
}

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int sf_json_parse_time(const char *text, int64_t *unix_us) {
  static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (!text)
    return SF_EINVAL;
  const char *p = text;
  int y, mo, d, h, mi, s, oh = 0, om = 0;
  if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) ||
      *p++ != '-' || !digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
    return SF_EINVAL;
  p++;
  if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) ||
      *p++ != ':' || !digits(&p, 2, &s))
    return SF_EINVAL;
  int64_t frac_us = 0;
  if (*p == '.') {
    p++;
    int n = 0;
    int64_t scale = 100000;
    while (*p >= '0' && *p <= '9') {
      if (++n > 9)
        return SF_EINVAL;
      frac_us += (*p - '0') * scale; /* digits past the 6th truncate */
      scale /= 10;
      p++;
    }
    if (n == 0)
      return SF_EINVAL;
  }
  int sign = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    sign = *p++ == '+' ? 1 : -1;
    if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 ||
        om > 59)
      return SF_EINVAL;
  } else {
    return SF_EINVAL;
  }
  if (*p != '\0')
    return SF_EINVAL;
  /* Leap seconds (:60) cannot be represented in Unix time: rejected. */
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59 ||
      d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
    return SF_EINVAL;
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s -
                 sign * (oh * 3600 + om * 60);
  *unix_us = secs * US_PER_S + frac_us;
  return 0;
}

int sf_json_check_decimal(const char *text) {
  if (!text)
    return SF_EINVAL;
  const char *p = text;
  size_t ints = 0, fracs = 0;
  while (*p >= '0' && *p <= '9') {
    ints++;
    p++;
  }
  if (ints == 0 || ints > 15)
    return SF_EINVAL;
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') {
      fracs++;
      p++;
    }
    if (fracs == 0 || fracs > 4)
      return SF_EINVAL;
  }
  return *p == '\0' ? 0 : SF_EINVAL;
}

/* libFuzzer target for the Avro event decoder (common/src/event.c).
 *
 * Every input gets the real single-object header (marker and fingerprint)
 * prepended, so the fuzzer spends its time in the datum walk and the value
 * mapping rather than on the first ten bytes; inputs whose first byte is 0xC3
 * are also fed as they are, to cover the header checks, and so are inputs
 * whose first byte is 0x00 (the Confluent wire format: the codec knows
 * schema id 1 as its own schema). Crashes, leaks and
 * sanitizer reports are the findings, plus the round-trip check below.
 *
 * Build and run (not part of the CMake build; needs clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *     -Icommon/include tests/fuzz/fuzz_event.c common/src/event.c \
 *     common/src/uuid.c common/src/json.c common/src/err.c \
 *     build-event/generated/sf_schemas.c \
 *     $(pkg-config --cflags --libs avro-c jansson libsodium) -o fuzz_event
 *   ./fuzz_event -max_len=4096 corpus/ */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sf/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A decoded event must re-encode, and the re-encoding must be a fixed
 * point: decoding and encoding it again gives the same bytes. (The input
 * itself may differ, e.g. in overlong varints or negative block counts.) */
static void check(sf_event_codec_t *c, const uint8_t *buf, size_t len) {
  sf_event_t e, e2;
  uint8_t *b1 = NULL, *b2 = NULL;
  size_t n1 = 0, n2 = 0;
  if (sf_event_decode(c, buf, len, &e) == 0) {
    if (sf_event_encode(c, &e, &b1, &n1) != 0 ||
        sf_event_decode(c, b1, n1, &e2) != 0 ||
        sf_event_encode(c, &e2, &b2, &n2) != 0 || n1 != n2 ||
        memcmp(b1, b2, n1) != 0)
      abort();
    /* minimal input (what our encoder writes) must come back unchanged
     * (single-object input only: the re-encoding is single-object) */
    if (buf[0] == 0xC3 && n1 == len && memcmp(b1, buf, len) != 0)
      abort();
    sf_event_clear(&e2);
  }
  free(b1);
  free(b2);
  sf_event_clear(&e);
}

/* One codec per process, as in the services; libFuzzer calls the target in a
 * loop and has no teardown hook. It is destroyed at exit: LeakSanitizer does
 * not see through avro-c's generic values, so a codec still alive at exit
 * shows up as leaks although it is reachable. */
static sf_event_codec_t *fuzz_codec;

static void destroy_codec(void) {
  sf_event_codec_destroy(fuzz_codec);
  fuzz_codec = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!fuzz_codec) {
    if (sf_event_codec_new(&fuzz_codec) != 0 ||
        sf_event_codec_add_schema_id(
            fuzz_codec, 1, sf_event_codec_schema_json(fuzz_codec)) != 0)
      abort();
    atexit(destroy_codec);
  }
  sf_event_codec_t *codec = fuzz_codec;
  uint64_t fp = sf_event_codec_fingerprint(codec);
  uint8_t *buf = malloc(size + 10);
  if (!buf)
    return 0;
  buf[0] = 0xC3;
  buf[1] = 0x01;
  for (int i = 0; i < 8; i++)
    buf[2 + i] = (uint8_t)(fp >> (8 * i));
  memcpy(buf + 10, data, size);
  check(codec, buf, size + 10);
  free(buf);
  if (size > 0 && (data[0] == 0xC3 || data[0] == 0x00))
    check(codec, data, size);
  return 0;
}

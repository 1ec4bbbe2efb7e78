/* event: the event envelope and its Avro codec (schemas/envelope.avsc).
 *
 * Every state change of stockflow is one event: an envelope (event id, type,
 * time, store, product, stream version, actor, command id, idempotency key,
 * correlation id) around one payload record of a union. Events are written
 * with Avro single-object encoding: 0xC3 0x01, the 8-byte little-endian
 * CRC-64-AVRO fingerprint of the schema's parsing canonical form, then the
 * Avro binary datum, so any consumer can pick the schema from schemas/.
 * Events may also be written in the Confluent wire format: 0x00, the
 * 4-byte big-endian id of the schema in a schema registry, then the datum.
 * The codec does no I/O: it learns which schema an id names from its caller
 * (sf_event_codec_add_schema_id; sf/registry.h fetches it), and decoding
 * takes either format, picked by the first byte.
 *
 * Decoding never trusts a length: every string length, array count and union
 * index is checked against the bytes that remain before anything is
 * allocated (avro-c 1.11 allocates whatever a crafted length asks for,
 * AVRO-4293). A codec is created once and may be used by one thread at a
 * time; separate codecs are independent. */
#ifndef SF_EVENT_H
#define SF_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/uuid.h"

#define SF_ID_LEN (SF_UUID_STR_LEN + 1)

typedef enum sf_event_type {
  SF_EV_PRODUCT_CREATED = 0,
  SF_EV_PRODUCT_UPDATED,
  SF_EV_PRODUCT_DISCONTINUED,
  SF_EV_STORE_OPENED,
  SF_EV_STORE_UPDATED,
  SF_EV_STORE_CLOSED,
  SF_EV_STOCK_MOVED,         /* receipt, sale, return, adjustment, count */
  SF_EV_TRANSFER_OUT,        /* source leg of a transfer (stock leaves) */
  SF_EV_TRANSFER_IN,         /* destination leg (stock arrives) */
  SF_EV_ORDER_PLACED,        /* reserves every line */
  SF_EV_ORDER_FULFILLED,     /* reserved units leave on hand */
  SF_EV_ORDER_CANCELLED,     /* reservation released (by command or expiry) */
  SF_EV_STOCK_BELOW_REORDER, /* available fell below the reorder level */
  SF_EV_STOCK_RESTORED,      /* available back at or above it */
  SF_EV_PRODUCT_POLICY_SET,  /* a product's stock policy (catalog topic) */
  SF_EV__COUNT
} sf_event_type_t;

typedef enum sf_movement {
  SF_MOVE_RECEIPT = 0,
  SF_MOVE_SALE,
  SF_MOVE_RETURN,
  SF_MOVE_ADJUSTMENT,
  SF_MOVE_COUNT,
  SF_MOVE__COUNT
} sf_movement_t;

/* "ProductCreated", ... (the Avro record names); NULL if out of range. */
const char *sf_event_type_name(sf_event_type_t t);
/* "receipt", "sale", "return", "adjustment", "count"; NULL if out of range. */
const char *sf_movement_name(sf_movement_t m);
/* Returns 0 and sets *out, or SF_EINVAL for an unknown name. */
int sf_movement_parse(const char *name, sf_movement_t *out);

typedef struct sf_order_line {
  char product_id[SF_ID_LEN];
  int64_t quantity;
  int64_t on_hand;  /* of the store x product after the event */
  int64_t reserved; /* of the store x product after the event */
  int64_t version;  /* stream version of the store x product after it */
} sf_order_line_t;

/* A decoded or to-be-encoded event. Id fields are fixed arrays ("" when
 * absent). Pointer fields are NULL when absent; after sf_event_decode they
 * point into memory owned by the event (freed by sf_event_clear); when
 * encoding they are borrowed from the caller. */
typedef struct sf_event {
  /* envelope */
  char event_id[SF_ID_LEN];
  sf_event_type_t type;
  int64_t occurred_at_us;      /* Unix microseconds (timestamp-micros) */
  char store_id[SF_ID_LEN];    /* "" for product events */
  char product_id[SF_ID_LEN];  /* "" for store and order events */
  int64_t stream_version;      /* version of store x product after this event;
                               of the product/store/order for the others */
  char actor[SF_ID_LEN];       /* acting user id, "" when none */
  char command_id[SF_ID_LEN];  /* the command that caused it (dedupe key) */
  const char *idempotency_key; /* NULL when none */
  const char *correlation_id;  /* NULL when none */
  const char *request_hash;    /* hex SHA-256 of the request, NULL when none */

  /* payload: which members are meaningful depends on type */
  struct {
    const char *sku, *name, *category, *price; /* price: decimal string */
    int64_t reorder_level;
    bool has_reorder_level;
  } product; /* PRODUCT_CREATED (sku, name, price required), PRODUCT_UPDATED
                (any subset), PRODUCT_DISCONTINUED (none) */
  struct {
    const char *name, *location, *manager_id;
  } store; /* STORE_OPENED (name, location required), STORE_UPDATED, CLOSED */
  struct {
    sf_movement_t movement;
    int64_t quantity; /* as given by the command (count: units counted) */
    int64_t delta;    /* signed change of on_hand */
    int64_t on_hand;  /* after the event */
    int64_t reserved; /* after the event */
    const char *reason, *reference;
    char transfer_id[SF_ID_LEN];          /* TRANSFER_*: the transfer; "" otherwise */
    char counterpart_store_id[SF_ID_LEN]; /* TRANSFER_*: the other store */
  } stock;                                /* STOCK_MOVED, TRANSFER_OUT, TRANSFER_IN */
  struct {
    char order_id[SF_ID_LEN];
    const sf_order_line_t *lines; /* ORDER_PLACED: the lines */
    size_t n_lines;
    const char *reference;
    const char *cause; /* ORDER_CANCELLED: NULL (by command) or "expired" */
  } order;             /* ORDER_*; fulfil/cancel repeat the lines */
  struct {
    int64_t on_hand, reserved; /* after the stock event that crossed */
    int64_t reorder_level;     /* the level it was compared with */
  } crossing;                  /* STOCK_BELOW_REORDER, STOCK_RESTORED (envelope: store,
                 product, the crossing event's stream_version) */
  struct {
    bool has_max_sale;
    int64_t max_sale_quantity; /* > 0 when has_max_sale */
    bool has_max_negative_adjustment;
    int64_t max_negative_adjustment; /* >= 0 when has_... */
    bool count_requires_reason;
  } policy; /* PRODUCT_POLICY_SET: the whole policy (replaces the last) */

  void *mem_; /* private: decode arena */
} sf_event_t;

/* Zeroes e (all optional fields absent). */
void sf_event_init(sf_event_t *e);
/* Frees decode memory and re-inits e. */
void sf_event_clear(sf_event_t *e);

typedef struct sf_event_codec sf_event_codec_t;

/* Creates a codec for the schemas compiled into the binary: it encodes with
 * schemas/envelope.avsc (the current version, also the reader schema) and
 * decodes events written with the current version or with any earlier
 * published one (schemas/envelope_v<N>.avsc), resolving them to the current
 * version. Returns 0, SF_ENOMEM or SF_ESCHEMA. */
int sf_event_codec_new(sf_event_codec_t **out);

/* The same for arbitrary schemas, for tests and tools (the services use
 * sf_event_codec_new): reader_schema_json is the schema events are encoded
 * with and decoded into; it must list the payload records and the Movement
 * symbols in the order of sf_event_type_t and sf_movement_t (it may have more
 * fields than sf_event_t maps: encode writes their defaults). The n JSON texts
 * of extra_writer_schemas (NULL when n is 0) are further writer schemas that
 * decode accepts, found by fingerprint. Every writer must resolve to the
 * reader by Avro's rules, checked here: records match by name, a reader field
 * missing from the writer needs a default, types may only be promoted
 * (int -> long -> float -> double, string <-> bytes). Union branches and enum
 * symbols that only the writer has are not an error here: an event that uses
 * one fails to decode with SF_ESCHEMA. A writer with the reader's fingerprint
 * is ignored. All texts are borrowed for the call only. Returns 0, SF_EINVAL
 * (NULL text), SF_ENOMEM or SF_ESCHEMA (a text is not a schema, the reader
 * breaks the order above, a writer does not resolve). */
int sf_event_codec_new_with(sf_event_codec_t **out,
                            const char *reader_schema_json,
                            const char *const *extra_writer_schemas, size_t n);

void sf_event_codec_destroy(sf_event_codec_t *c);

/* The 8-byte CRC-64-AVRO fingerprint of the schema the codec encodes with
 * (its reader schema). */
uint64_t sf_event_codec_fingerprint(const sf_event_codec_t *c);

/* Encodes e (single-object encoding) into a malloc'd buffer owned by the
 * caller. Returns 0, SF_EINVAL (a required field is missing, an id is not a
 * UUID, a text is not UTF-8, ...), SF_ETOOBIG (over SF_EVENT_MAX_BYTES),
 * SF_ENOMEM. Optional pointer fields: NULL is written as null, "" as an
 * empty string. */
int sf_event_encode(sf_event_codec_t *c, const sf_event_t *e, uint8_t **out,
                    size_t *out_len);

/* Decodes buf (borrowed) into e (initialised by the call; release with
 * sf_event_clear even on failure). Either wire format: the writer schema is
 * picked by the fingerprint (single-object) or by the schema id (Confluent;
 * an id the codec has not learnt is SF_ESCHEMA, so callers that hold a
 * registry learn it first, see sf_registry_learn) among the codec's known
 * ones; an event of an older or newer
 * writer is resolved to the reader schema (fields only the writer has are
 * dropped, fields only the reader has take their defaults). Returns 0,
 * SF_EPARSE (bad marker or datum), SF_ESCHEMA (unknown fingerprint, or an
 * event type or movement that only the writer's schema has), SF_ETRUNCATED
 * (a length or count exceeds the bytes that remain), SF_ETOOBIG (over
 * SF_EVENT_MAX_BYTES). */
int sf_event_decode(sf_event_codec_t *c, const uint8_t *buf, size_t len,
                    sf_event_t *e);

/* The two wire formats (docs/events.md). */
typedef enum sf_event_format {
  SF_EVENT_FORMAT_SINGLE_OBJECT = 0, /* 0xC3 0x01, 8-byte fingerprint */
  SF_EVENT_FORMAT_CONFLUENT          /* 0x00, 4-byte schema id */
} sf_event_format_t;

/* "single-object" or "confluent" into *out: 0, or SF_EINVAL. */
int sf_event_format_parse(const char *name, sf_event_format_t *out);
/* "single-object", "confluent"; NULL if out of range. */
const char *sf_event_format_name(sf_event_format_t f);

/* True when buf (len bytes, borrowed) is in the Confluent wire format with
 * a whole header: sets *id to its schema id. False for anything else
 * (single-object, garbage, a truncated header), which sf_event_decode then
 * judges. Pure. */
bool sf_event_confluent_id(const uint8_t *buf, size_t len, uint32_t *id);

/* The JSON text of the schema the codec encodes with (its reader schema),
 * owned by the codec: what a registry is given to register. */
const char *sf_event_codec_schema_json(const sf_event_codec_t *c);

/* Teaches c that schema id `id` of a registry names the schema JSON text
 * schema_json (borrowed for the call): the reader schema, one of the known
 * writers, or a new writer schema that must resolve to the reader (the
 * rules of sf_event_codec_new_with). Learning an id again with the same
 * schema is a no-op; with another schema it is SF_ECONFLICT (a registry
 * never reuses an id). Returns 0, SF_EINVAL, SF_ENOMEM, SF_ECONFLICT or
 * SF_ESCHEMA (not a schema, or one that does not resolve: not an envelope). */
int sf_event_codec_add_schema_id(sf_event_codec_t *c, uint32_t id,
                                 const char *schema_json);

/* True when c has learnt schema id `id`. */
bool sf_event_codec_knows_id(const sf_event_codec_t *c, uint32_t id);

/* Encodes e like sf_event_encode, but in the Confluent wire format with
 * schema id `id`, which c must have learnt as its reader schema (else
 * SF_EINVAL: the id would name another schema). Same returns otherwise. */
int sf_event_encode_confluent(sf_event_codec_t *c, const sf_event_t *e,
                              uint32_t id, uint8_t **out, size_t *out_len);

#define SF_EVENT_MAX_BYTES (1024 * 1024)
#define SF_EVENT_MAX_LINES 1000

#endif

-- Read models maintained by stockflow-projector from the event log.
-- Nothing else writes these tables (DESIGN.md decision 1): they can be
-- dropped and rebuilt by replaying inventory.catalog and inventory.stock.

-- Consumed offsets, stored in the same transaction as the data they produced
-- (exactly-once projection). next_offset is the next offset to read.
CREATE TABLE projector_offsets (
  consumer_group text    NOT NULL,
  topic          text    NOT NULL,
  partition      integer NOT NULL,
  next_offset    bigint  NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE products (
  id            uuid PRIMARY KEY,
  sku           text NOT NULL UNIQUE,
  name          text NOT NULL,
  category      text,
  price         numeric(19,4) NOT NULL,
  reorder_level bigint NOT NULL DEFAULT 0,
  discontinued  boolean NOT NULL DEFAULT false,
  version       bigint NOT NULL,        -- stream_version of the last event applied
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL
);
CREATE INDEX products_category_idx ON products (category, id);

CREATE TABLE stores (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  location    text NOT NULL,
  manager_id  uuid,
  closed      boolean NOT NULL DEFAULT false,
  version     bigint NOT NULL,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL
);

-- One row per store x product that ever had a stock event.
-- version is the stream_version of the last applied event: the projector
-- applies an event only when its stream_version is greater (replays and
-- broker-side duplicates change nothing).
CREATE TABLE inventory (
  store_id    uuid   NOT NULL,
  product_id  uuid   NOT NULL,
  on_hand     bigint NOT NULL,
  reserved    bigint NOT NULL DEFAULT 0,
  version     bigint NOT NULL,
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (store_id, product_id)
);
CREATE INDEX inventory_product_idx ON inventory (product_id);

-- The history: one row per accepted stock event (id = event id, a UUIDv7,
-- so id order is time order). on_hand_after/reserved_after make "stock as
-- of time T" one index lookup per product instead of a replay.
CREATE TABLE transactions (
  id              uuid PRIMARY KEY,
  command_id      uuid   NOT NULL,
  store_id        uuid   NOT NULL,
  product_id      uuid   NOT NULL,
  type            text   NOT NULL,   -- receipt, sale, return, adjustment, count, transfer_out, transfer_in, order_placed, ...
  quantity        bigint NOT NULL,
  delta           bigint NOT NULL,   -- signed change of on_hand
  reserved_delta  bigint NOT NULL DEFAULT 0,
  on_hand_after   bigint NOT NULL,
  reserved_after  bigint NOT NULL,
  version         bigint NOT NULL,
  reason          text,
  reference       text,
  actor           uuid,
  created_at      timestamptz NOT NULL,
  kafka_partition integer NOT NULL,
  kafka_offset    bigint  NOT NULL,
  UNIQUE (command_id, store_id, product_id),
  UNIQUE (store_id, product_id, version)
);
CREATE INDEX transactions_store_idx ON transactions (store_id, id DESC);
CREATE INDEX transactions_store_product_time_idx
  ON transactions (store_id, product_id, created_at DESC, version DESC);

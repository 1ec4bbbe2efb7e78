-- Business rules (docs/events.md: StockBelowReorder, StockRestored,
-- ProductPolicySet, OrderCancelled.cause), maintained by stockflow-projector
-- from the log like every read model here.
--
-- stock_crossings: one row per low-stock crossing event (id = event id;
-- kind below_reorder | restored; version = the stock row's version after the
-- movement that crossed, which the crossing does not move). Each row also
-- gives one changes row (cause below_reorder / restored) in the same
-- transaction, so change-stream subscribers get the crossing.
CREATE TABLE stock_crossings (
  id            uuid PRIMARY KEY,
  command_id    uuid   NOT NULL,
  store_id      uuid   NOT NULL,
  product_id    uuid   NOT NULL,
  kind          text   NOT NULL CHECK (kind IN ('below_reorder', 'restored')),
  on_hand       bigint NOT NULL,
  reserved      bigint NOT NULL,
  reorder_level bigint NOT NULL,
  version       bigint NOT NULL,
  created_at    timestamptz NOT NULL
);
CREATE INDEX stock_crossings_store_idx ON stock_crossings (store_id, product_id, version);

-- The policy of a product (ProductPolicySet replaces it whole; null: no
-- limit). policy_version is the product stream version of the last policy
-- event applied (the guard of the policy update; version moves with it).
ALTER TABLE products
  ADD COLUMN max_sale_quantity       bigint,
  ADD COLUMN max_negative_adjustment bigint,
  ADD COLUMN count_requires_reason   boolean NOT NULL DEFAULT false,
  ADD COLUMN policy_version          bigint  NOT NULL DEFAULT 0;

-- Why a cancelled order was cancelled: null (a cancel command) or expired.
ALTER TABLE orders ADD COLUMN cancel_cause text;

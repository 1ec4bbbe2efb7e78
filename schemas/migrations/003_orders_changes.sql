-- Orders and the change log, maintained by stockflow-projector
-- (docs/architecture.md; decisions in the phase 2 contract).
--
-- orders/order_lines: one row per order and per line, from ORDER_PLACED,
-- ORDER_FULFILLED and ORDER_CANCELLED (status updates only when the event's
-- version is above orders.version). Every order line also gives one
-- transactions row (type order_placed / order_fulfilled / order_cancelled).
--
-- changes: one row per change of an inventory row, written in the same
-- transaction as the change; ids are handed out under
-- pg_advisory_xact_lock(4242) so that readers see them in commit order.
-- Rows older than STOCKFLOW_CHANGES_RETENTION_S are pruned by the projector,
-- which records the highest pruned id in changes_meta.pruned_through.

CREATE TABLE orders (
  id uuid PRIMARY KEY, store_id uuid NOT NULL, status text NOT NULL,  -- placed | fulfilled | cancelled
  reference text, version bigint NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE INDEX orders_store_idx ON orders (store_id, id DESC);
CREATE TABLE order_lines (
  order_id uuid NOT NULL REFERENCES orders(id), product_id uuid NOT NULL, quantity bigint NOT NULL,
  PRIMARY KEY (order_id, product_id));
-- one row per read-model change of an inventory row, written in the same transaction as the change
CREATE TABLE changes (
  id bigserial PRIMARY KEY, store_id uuid NOT NULL, product_id uuid NOT NULL,
  on_hand bigint NOT NULL, reserved bigint NOT NULL, version bigint NOT NULL,
  cause text NOT NULL,            -- receipt, sale, return, adjustment, count, transfer_out, transfer_in, order_placed, order_fulfilled, order_cancelled
  transaction_id uuid NOT NULL,   -- the transactions row (event id; for order lines, the line's history row id)
  occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX changes_store_idx ON changes (store_id, id);
CREATE INDEX changes_recorded_idx ON changes (recorded_at);
-- pruning state: changes with id <= pruned_through are gone (retention)
CREATE TABLE changes_meta (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), pruned_through bigint NOT NULL DEFAULT 0);
INSERT INTO changes_meta VALUES (true, 0);

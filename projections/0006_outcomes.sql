-- The outbox of the outcome stream: the decisions a batch made (an order paid, a recharge
-- credited, a refund succeeded, a failure recorded), inserted by the projector in the same
-- transaction as the rows and the checkpoint, so an outcome exists exactly when its
-- decision was committed. The publisher sends rows to JetStream in (seq, id) order after
-- commit and deletes them once acknowledged. Not a projection: a replay or a rebuild into
-- another schema writes none, so nothing it folds is ever published.
CREATE TABLE IF NOT EXISTS outbox (
    -- Derived from the source (e.g. `order.paid:<out_trade_no>`): the Nats-Msg-Id.
    -- Compared byte by byte, as the fold sorts them, whatever the database's collation.
    id          text        COLLATE "C" PRIMARY KEY,
    -- The stream sequence of the event that made the decision.
    seq         bigint      NOT NULL CHECK (seq > 0),
    -- The outcome type, e.g. `order.paid`: the subject's tail.
    kind        text        NOT NULL,
    -- The message, as published.
    payload     jsonb       NOT NULL,
    -- When the source event was accepted.
    occurred_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_in_order ON outbox (seq, id);

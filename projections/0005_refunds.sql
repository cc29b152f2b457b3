-- Refunds and wallet payments, folded from refund.* and order.balance_pay_requested.

-- Orders gain how they were paid, what was refunded and what is set aside for refunds
-- in flight, and the refund states.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS paid_with text
    CONSTRAINT orders_paid_with_known CHECK (paid_with IN ('wechat', 'wallet'));
ALTER TABLE orders ADD COLUMN IF NOT EXISTS refunded bigint NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS refunding bigint NOT NULL DEFAULT 0;
UPDATE orders SET paid_with = 'wechat' WHERE state = 'paid' AND paid_with IS NULL;
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_state_known;
ALTER TABLE orders ADD CONSTRAINT orders_state_known CHECK (state IN
    ('created', 'prepay_issued', 'paid', 'closed', 'pay_error', 'partially_refunded', 'refunded'));
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_paid_has_transaction;
ALTER TABLE orders ADD CONSTRAINT orders_paid_has_source CHECK (
    state NOT IN ('paid', 'partially_refunded', 'refunded')
    OR paid_with = 'wallet' OR transaction_id IS NOT NULL);
-- Never more back than was paid, counting what is in flight.
ALTER TABLE orders ADD CONSTRAINT orders_refunds_within_amount CHECK (
    refunded >= 0 AND refunding >= 0 AND refunded + refunding <= amount);

-- One row per refund, requested or merely reported by WeChat.
CREATE TABLE IF NOT EXISTS refunds (
    out_refund_no   text        PRIMARY KEY,
    out_trade_no    text        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount >= 0),
    reason          text        NOT NULL,
    state           text        NOT NULL CONSTRAINT refunds_state_known CHECK (state IN
                                ('requested', 'processing', 'abnormal', 'succeeded', 'closed',
                                 'rejected', 'refused')),
    requested       boolean     NOT NULL,
    reserved_from   text,
    refund_id       text,
    wechat_status   text,
    code            text,
    message         text,
    requested_at    timestamptz NOT NULL,
    settled_at      timestamptz,
    last_seq        bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_by_order ON refunds (out_trade_no, requested_at);
-- The reconciliation sweep reads only refunds not final yet.
CREATE INDEX IF NOT EXISTS refunds_open ON refunds (requested_at, out_refund_no)
    WHERE state IN ('requested', 'processing', 'abnormal');
-- The reconciliation sweep reads orders waiting for WeChat's word.
CREATE INDEX IF NOT EXISTS orders_awaiting_payment ON orders (placed_at, out_trade_no)
    WHERE state = 'prepay_issued';

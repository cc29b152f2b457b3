-- Orders, payments and the double-entry ledger, folded from order.* and payment.* events.
-- Money is bigint fen. Postings: credit positive, debit negative; each group sums to zero.

-- One row per order or recharge. A later migration adds the refund states by replacing
-- orders_state_known.
CREATE TABLE IF NOT EXISTS orders (
    out_trade_no    text        PRIMARY KEY,
    user_id         uuid        NOT NULL,
    openid          text        NOT NULL,
    kind            text        NOT NULL CONSTRAINT orders_kind_known
                                CHECK (kind IN ('order', 'recharge')),
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        text        NOT NULL,
    description     text        NOT NULL,
    appid           text        NOT NULL,
    mchid           text        NOT NULL,
    state           text        NOT NULL CONSTRAINT orders_state_known
                                CHECK (state IN ('created', 'prepay_issued', 'paid', 'closed', 'pay_error')),
    prepay_id       text,
    transaction_id  text,
    placed_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    paid_at         timestamptz,
    closed_at       timestamptz,
    last_seq        bigint      NOT NULL,
    CONSTRAINT orders_paid_has_transaction CHECK (state <> 'paid' OR transaction_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, placed_at DESC, out_trade_no);
-- The expiry sweep reads only unpaid orders.
CREATE INDEX IF NOT EXISTS orders_unpaid_by_expiry ON orders (expires_at, out_trade_no)
    WHERE state IN ('created', 'prepay_issued', 'pay_error');

-- Every WeChat transaction proven paid, booked once however often it is reported. No
-- foreign key to orders: money for an unknown order is booked too (into suspense).
CREATE TABLE IF NOT EXISTS payments (
    transaction_id  text        PRIMARY KEY,
    out_trade_no    text        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount > 0),
    seq             bigint      NOT NULL,
    booked_as       text        NOT NULL
                                CHECK (booked_as IN ('sale', 'recharge', 'suspense', 'not_credited')),
    source          text        NOT NULL CHECK (source IN ('notify', 'query')),
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_order ON payments (out_trade_no);

-- Postings, insert-only.
CREATE TABLE IF NOT EXISTS ledger_entries (
    seq             bigint      NOT NULL,
    group_id        text        NOT NULL,
    line            integer     NOT NULL CHECK (line >= 0),
    account         text        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount <> 0),
    kind            text        NOT NULL,
    out_trade_no    text        NOT NULL,
    transaction_id  text,
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (group_id, line)
);
CREATE INDEX IF NOT EXISTS ledger_entries_by_account ON ledger_entries (account, seq DESC, line DESC);
CREATE INDEX IF NOT EXISTS ledger_entries_by_seq ON ledger_entries (seq);

-- Each account's balance: the sum of its postings. A wallet (what we owe a user) is
-- never negative.
CREATE TABLE IF NOT EXISTS balances (
    account         text        PRIMARY KEY,
    balance         bigint      NOT NULL,
    last_seq        bigint      NOT NULL,
    CONSTRAINT balances_wallet_not_negative CHECK (account NOT LIKE 'wallet:%' OR balance >= 0)
);

-- What the fold could not do as asked (unknown order, mismatches, double payment, ...).
-- The event stays on the stream; the row explains it to a human.
CREATE TABLE IF NOT EXISTS failure_log (
    seq             bigint      NOT NULL,
    reason          text        NOT NULL,
    out_trade_no    text,
    transaction_id  text,
    amount          bigint,
    detail          jsonb       NOT NULL,
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (seq, reason)
);
CREATE INDEX IF NOT EXISTS failure_log_by_order ON failure_log (out_trade_no);

-- The fold's verdict on each event a request appends and then waits on (a wallet payment,
-- a refund request, a phone binding: `fold::keeps_verdict`), written by the projector in
-- the batch's own transaction, so a verdict exists exactly when its decision was
-- committed. A caller in any process reads it by the sequence its append returned. A
-- projection like the others: a rebuild folds the same verdicts.
CREATE TABLE IF NOT EXISTS verdicts (
    -- The event's stream sequence.
    seq     bigint PRIMARY KEY CHECK (seq > 0),
    -- The event's type, e.g. `order.balance_pay_requested`.
    event   text   NOT NULL,
    -- `applied`, `already_applied` or `refused`.
    verdict text   NOT NULL CHECK (verdict IN ('applied', 'already_applied', 'refused')),
    -- The refusal's stable code (`insufficient_balance`, ...) when refused.
    code    text   CHECK ((code IS NOT NULL) = (verdict = 'refused')),
    -- The decisions of an applied event (a JSON array), or the refusal with its fields
    -- (`{"code": "insufficient_balance", "balance": 200, "needed": 300}`); null otherwise.
    detail  jsonb
);

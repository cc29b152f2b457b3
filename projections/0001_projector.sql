-- Where each projection's projector stands in the stream. Written in the same
-- transaction as the rows a batch changes, so a crash never applies an event twice.
CREATE TABLE IF NOT EXISTS projector_checkpoints (
    projection  text        PRIMARY KEY,
    last_seq    bigint      NOT NULL CHECK (last_seq >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

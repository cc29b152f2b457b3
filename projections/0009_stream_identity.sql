-- The identity of the stream a projection was built from: the stream's creation time
-- and its first event's id. The projector refuses to go on when the stream it reads is
-- another (deleted and recreated) or ends before its checkpoint (lost writes): events
-- at sequences it already passed would otherwise be skipped without a word.
CREATE TABLE IF NOT EXISTS stream_identity (
    projection      text        PRIMARY KEY,
    stream_created  timestamptz NOT NULL,
    -- Null while the stream was empty; filled in once it has an event.
    first_event     text,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

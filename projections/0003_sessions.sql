-- Not a projection: WeChat session keys are secrets and never enter the stream, so the
-- login handler keeps the latest one per user here, sealed with AES-256-GCM
-- (auth.session_key_encryption_key, associated data = user_id). A rebuild leaves it alone.
CREATE TABLE IF NOT EXISTS wx_sessions (
    user_id             uuid        PRIMARY KEY,
    sealed_session_key  bytea       NOT NULL,
    updated_at          timestamptz NOT NULL
);

-- Erasable personal data (crypto-shredding). New events carry the phone, the profile and
-- the unionid sealed under a per-user data key; the users projection keeps them sealed
-- (the API opens them at read time), so a rebuild equals the live table and an erased user's
-- data is unreadable everywhere at once.
--   phone_sealed    '<key_id>:<base64>' of user.phone_bound v2 (phone_key is then
--                   'bidx:<hex>', its blind index); v1 phones stay in phone_country_code /
--                   phone_number with phone_key '+<cc><number>'.
--   profile_sealed  '<key_id>:<base64>' of user.profile_updated v2 (nickname/avatar_url
--                   then NULL).
--   unionid_sealed  '<key_id>:<base64>' of user.registered / user.logged_in v2 (unionid
--                   then NULL).
--   erased_at       when user.erased applied: every personal column is NULL from then on.
ALTER TABLE users
    ADD COLUMN IF NOT EXISTS phone_sealed   text,
    ADD COLUMN IF NOT EXISTS profile_sealed text,
    ADD COLUMN IF NOT EXISTS erased_at      timestamptz,
    ADD COLUMN IF NOT EXISTS unionid_sealed text,
    DROP CONSTRAINT IF EXISTS users_phone_parts,
    ADD CONSTRAINT users_phone_parts
        CHECK ((phone_key IS NULL) = (phone_number IS NULL AND phone_sealed IS NULL)),
    ADD CONSTRAINT users_erased_holds_nothing_personal
        CHECK (erased_at IS NULL OR (phone_key IS NULL AND unionid IS NULL
               AND unionid_sealed IS NULL
               AND nickname IS NULL AND avatar_url IS NULL AND profile_sealed IS NULL));

-- Not a projection: each user's data key, sealed with AES-256-GCM under
-- privacy.data_key_encryption_key (associated data 'user_key:<user_id>:<key_id>').
-- Erasure sets sealed_key to NULL and keeps the row as a tombstone, so no new key is
-- made for an erased user. The stream never holds a key; a rebuild leaves this alone.
CREATE TABLE IF NOT EXISTS user_keys (
    user_id     uuid        PRIMARY KEY,
    key_id      uuid        NOT NULL,
    sealed_key  bytea,
    created_at  timestamptz NOT NULL,
    erased_at   timestamptz,
    CONSTRAINT user_keys_erased_has_no_key CHECK ((sealed_key IS NULL) = (erased_at IS NOT NULL))
);

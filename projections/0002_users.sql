-- The users projection: one row per mini program user, folded from user.* events.
CREATE TABLE IF NOT EXISTS users (
    user_id             uuid        PRIMARY KEY,
    openid              text        NOT NULL UNIQUE,
    unionid             text,
    phone_country_code  text,
    phone_number        text,
    -- '+<country code><number>'; one user per phone. Deferred so that a batch may move a
    -- number from one user to another in any row order.
    phone_key           text,
    phone_bound_at      timestamptz,
    nickname            text,
    avatar_url          text,
    registered_at       timestamptz NOT NULL,
    last_login_at       timestamptz NOT NULL,
    login_count         bigint      NOT NULL CHECK (login_count >= 1),
    last_seq            bigint      NOT NULL,
    CONSTRAINT users_phone_key_unique UNIQUE (phone_key) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT users_phone_parts CHECK ((phone_key IS NULL) = (phone_number IS NULL))
);

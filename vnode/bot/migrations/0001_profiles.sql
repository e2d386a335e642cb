-- The bot's own tables, in its own schema; vnode's ledger tables are never touched.

-- One row per Telegram user who has talked to the bot. A username belongs to at most one
-- profile: when a user is seen with a username, every other profile loses it (usernames
-- change hands on Telegram), so @name resolves only to its latest known owner.
CREATE TABLE bitmask.profiles (
    user_id     bigint PRIMARY KEY CHECK (user_id > 0),
    username    text,
    first_name  text NOT NULL DEFAULT '',
    last_name   text,
    language    text,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX profiles_username ON bitmask.profiles (lower(username))
    WHERE username IS NOT NULL;

-- Every vnode event the bot has told a user about: the claim that makes each event notify
-- once, across redeliveries and restarts.
CREATE TABLE bitmask.notified (
    event_id    uuid PRIMARY KEY,
    user_id     bigint NOT NULL,
    event_type  text NOT NULL,
    notified_at timestamptz NOT NULL DEFAULT now()
);

-- The confirmation message of each payment the bot made. Whoever learns the final state first,
-- the button's answer or the event, sets final_told; the other stays quiet, so the user hears
-- of each payment's end once.
CREATE TABLE bitmask.payment_messages (
    payment_hash text NOT NULL,
    user_id      bigint NOT NULL,
    chat_id      bigint NOT NULL,
    message_id   bigint NOT NULL,
    final_told   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_hash, user_id)
);

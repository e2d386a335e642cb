-- LndHub credentials per virtual node (issue 12): a login and password a wallet app (BlueWallet,
-- Zeus, Alby) signs in with, and the access and refresh tokens it is given. Passwords and tokens
-- are stored only as hashes (vnode/lndhub/credentials.py): a salted scrypt for the password, the
-- SHA-256 of a 160-bit random token. One account per (virtual node, scope); rotating it changes
-- the login and password and raises `generation`, which revokes every token issued before.
CREATE TABLE lndhub_accounts (
    id             bigserial PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES virtual_nodes (user_id),
    scope          text NOT NULL CHECK (scope IN ('spend', 'invoice')),
    login          text NOT NULL UNIQUE CHECK (login ~ '^[0-9a-f]{20}$'),
    password_hash  text NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
    generation     integer NOT NULL DEFAULT 1 CHECK (generation >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, scope)
);

CREATE TABLE lndhub_tokens (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    account_id  bigint NOT NULL REFERENCES lndhub_accounts (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('access', 'refresh')),
    generation  integer NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lndhub_tokens_account ON lndhub_tokens (account_id, expires_at);

-- /getuserinvoices pages a user's invoices newest first (BlueWallet polls it every 3 s).
CREATE INDEX ln_invoices_user ON ln_invoices (user_id, created_at DESC, payment_hash);

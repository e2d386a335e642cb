-- Lightning Addresses and LNURL-pay (issue 12, part 2; docs/LNURL.md).
--
-- A user's address is a name (LUD-16: a-z, 0-9, '-', '_', '.'; stored lower-case, so unique
-- case-insensitively). A user has at most one current name; a name given up is held for its
-- former owner until held_until (it still resolves to them, and only they may take it back),
-- so that nobody can claim it at once and receive the payments meant for its former owner.
CREATE TABLE ln_addresses (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (name ~ '^[a-z0-9._-]{1,64}$'),
    user_id      bigint NOT NULL REFERENCES virtual_nodes (user_id),
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,   -- NULL: the user's current address
    held_until   timestamptz,   -- set with released_at
    CONSTRAINT ln_addresses_release_held CHECK ((released_at IS NULL) = (held_until IS NULL))
);
CREATE UNIQUE INDEX ln_addresses_current_name ON ln_addresses (name) WHERE released_at IS NULL;
CREATE UNIQUE INDEX ln_addresses_current_user ON ln_addresses (user_id)
    WHERE released_at IS NULL;
CREATE INDEX ln_addresses_name ON ln_addresses (name, id DESC);

-- An invoice made through an address's LNURL-pay callback names the address (LUD-21 verify
-- answers only for those) and keeps the payer's LUD-12 comment, which becomes the memo of the
-- receipt's history entry.
ALTER TABLE ln_invoices ADD COLUMN address_id bigint REFERENCES ln_addresses (id);
ALTER TABLE ln_invoices ADD COLUMN comment text
    CONSTRAINT ln_invoices_comment_length CHECK (char_length(comment) BETWEEN 1 AND 1000);

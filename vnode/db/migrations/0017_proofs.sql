-- Proofs of liabilities (issue 16; docs/PROOFS.md). One row per published epoch of an asset,
-- kept forever: the statement exactly as signed (its canonical bytes are what the signature
-- covers) and the signature. What serves users' inclusion proofs is kept for
-- VNODE_PROOFS_RETENTION_S only: the tree's levels above the leaf chunks (`upper`), the seed
-- of the padding leaves, and every user's leaf (proof_leaves); pruning sets tree_pruned_at.
CREATE TABLE proof_epochs (
    asset_id         text NOT NULL,
    epoch            bigint NOT NULL CHECK (epoch > 0),
    statement        text NOT NULL,
    signature        text NOT NULL CHECK (signature ~ '^[0-9a-f]{128}$'),
    root             bytea NOT NULL CHECK (octet_length(root) = 32),
    -- u64: a sum of bigints may pass 2^63
    total            numeric(20, 0) NOT NULL CHECK (total >= 0 AND total < 18446744073709551616),
    leaves           bigint NOT NULL CHECK (leaves > 0),
    leaf_count       bigint NOT NULL CHECK (leaf_count >= 0 AND leaf_count <= leaves),
    ledger_position  bigint NOT NULL CHECK (ledger_position >= 0),
    created_at       timestamptz NOT NULL,
    upper            bytea,
    pad_seed         bytea CHECK (octet_length(pad_seed) = 32),
    tree_pruned_at   timestamptz,
    PRIMARY KEY (asset_id, epoch),
    CHECK ((tree_pruned_at IS NULL) = (upper IS NOT NULL AND pad_seed IS NOT NULL))
);

-- A user's leaf in an epoch: its place in the tree (ordered by sha256(salt)) and its salt.
-- No foreign keys: a million rows are written per epoch by one INSERT ... SELECT.
CREATE TABLE proof_leaves (
    asset_id   text NOT NULL,
    epoch      bigint NOT NULL,
    position   bigint NOT NULL CHECK (position >= 0),
    user_id    bigint NOT NULL CHECK (user_id > 0),
    balance    bigint NOT NULL CHECK (balance >= 0),
    salt       bytea NOT NULL CHECK (octet_length(salt) = 32),
    PRIMARY KEY (asset_id, epoch, position)
);
CREATE UNIQUE INDEX proof_leaves_user ON proof_leaves (asset_id, epoch, user_id);

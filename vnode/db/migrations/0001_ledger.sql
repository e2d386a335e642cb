-- vnode ledger schema. Forward-only: never edit an applied migration, add a new one.
--
-- Money rules enforced here rather than in Python (DESIGN.md section 2):
--   * no user balance below zero                       (CHECK on ln_user_balances)
--   * every coin is positive and is spent at most once  (CHECK + trigger on user_utxos)
--   * every movement is one balanced journal row        (virtual_transactions, amount > 0)
--   * credits of one outside payment happen once        (unique keys, added with the payment tables)

CREATE TABLE virtual_nodes (
    user_id     bigint PRIMARY KEY CHECK (user_id > 0),
    node_id     text NOT NULL UNIQUE CHECK (node_id = 'vn_' || user_id::text),
    pubkey      text NOT NULL UNIQUE CHECK (pubkey ~ '^0[23][0-9a-f]{64}$'),
    -- per-user event sequence: bumped under the node's row lock, so events of one user are ordered
    event_seq   bigint NOT NULL DEFAULT 0 CHECK (event_seq >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The outside world and the operator, as accounts, so that every movement balances.
-- Their balances may go negative (a source of funds); users' may not.
CREATE TABLE system_accounts (
    account_id  bigint PRIMARY KEY CHECK (account_id < 0),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z_]+$'),
    description text NOT NULL
);
INSERT INTO system_accounts (account_id, name, description) VALUES
    (-1, 'operator_funding',   'credits and debits made by the operator (admin API, CLI)'),
    (-2, 'lightning_inbound',  'payments received by the master node'),
    (-3, 'lightning_outbound', 'payments sent by the master node'),
    (-4, 'routing_fees',       'routing fees paid by the master node and charged to users'),
    (-5, 'operator_loss',      'money the operator lost (a success reported after a refund, fees above the limit)');

CREATE TABLE system_balances (
    account_id  bigint NOT NULL REFERENCES system_accounts (account_id),
    asset_id    text NOT NULL,
    balance     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, asset_id)
);

-- Journal: one row per movement of value, from one account to another, for one asset.
-- Accounts are user ids (> 0) or system account ids (< 0).
CREATE TABLE virtual_transactions (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('transfer', 'admin_credit', 'admin_debit')),
    asset_id      text NOT NULL,
    from_account  bigint NOT NULL CHECK (from_account <> 0),
    to_account    bigint NOT NULL CHECK (to_account <> 0),
    amount        bigint NOT NULL CHECK (amount > 0),
    memo          text CHECK (char_length(memo) <= 500),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (from_account <> to_account)
);
CREATE INDEX virtual_transactions_from ON virtual_transactions (from_account, asset_id);
CREATE INDEX virtual_transactions_to ON virtual_transactions (to_account, asset_id);

-- Virtual coins. A debit spends all of the owner's unspent coins of that asset and returns
-- change, which keeps each user's coin set small and selection deterministic.
CREATE TABLE user_utxos (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES virtual_nodes (user_id),
    asset_id    text NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    created_tx  bigint NOT NULL REFERENCES virtual_transactions (id),
    spent_tx    bigint REFERENCES virtual_transactions (id),
    -- the real on-chain outpoint ("txid:vout") when the coin comes from an on-chain receipt
    outpoint    text CHECK (outpoint ~ '^[0-9a-f]{64}:[0-9]+$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_utxos_unspent ON user_utxos (user_id, asset_id) WHERE spent_tx IS NULL;

-- A coin is spent at most once: once spent_tx is set it can never change.
CREATE FUNCTION user_utxos_spend_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'coin % is already spent by transaction %', OLD.id, OLD.spent_tx
        USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER user_utxos_spend_once BEFORE UPDATE ON user_utxos
    FOR EACH ROW WHEN (OLD.spent_tx IS NOT NULL) EXECUTE FUNCTION user_utxos_spend_once();
CREATE TRIGGER user_utxos_no_delete BEFORE DELETE ON user_utxos
    FOR EACH ROW EXECUTE FUNCTION user_utxos_spend_once();

-- Cached balance per (user, asset): the sum of the user's unspent coins, kept in the same
-- transaction as every coin change. pending is reserved for outgoing payments in flight.
CREATE TABLE ln_user_balances (
    user_id     bigint NOT NULL REFERENCES virtual_nodes (user_id),
    asset_id    text NOT NULL,
    balance     bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    pending     bigint NOT NULL DEFAULT 0 CHECK (pending >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, asset_id)
);

-- Per-user history, what the wallet shows.
CREATE TABLE ln_user_transactions (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES virtual_nodes (user_id),
    tx_id         bigint NOT NULL REFERENCES virtual_transactions (id),
    kind          text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('in', 'out')),
    asset_id      text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    counterparty  text NOT NULL,
    memo          text,
    status        text NOT NULL DEFAULT 'completed',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ln_user_transactions_user ON ln_user_transactions (user_id, id DESC);

CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    scope       text NOT NULL CHECK (scope IN ('admin', 'spend', 'receive', 'read')),
    key_hash    bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    key_prefix  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Idempotency-Key records: one per (caller, key). The first answer is kept and replayed.
CREATE TABLE idempotency_keys (
    owner         text NOT NULL,
    key           text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 200),
    endpoint      text NOT NULL,
    request_hash  bytea NOT NULL,
    status_code   integer NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);

-- Transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type    text NOT NULL,
    user_id       bigint NOT NULL,
    user_seq      bigint NOT NULL CHECK (user_seq > 0),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    UNIQUE (user_id, user_seq)
);
CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL;

-- Lightning payments: Flow 2 (pay out), Flow 3 (receive), RGB on-chain receipts, alerts.
--
-- Rules enforced here (DESIGN.md 2.4-2.6, LESSONS 3, 9-17):
--   * at most one live (pending or succeeded) debit per payment hash  (partial unique index)
--   * a succeeded external payment carries a preimage hashing to its hash (CHECK)
--   * a node receipt is credited once per payment hash                 (unique key)
--   * only an explicit final failure releases a reserve                 (vnode_payment_finish)

INSERT INTO system_accounts (account_id, name, description) VALUES
    (-6, 'payments_in_flight', 'reserves of outgoing payments not yet final (amount + fee reserve)'),
    (-7, 'rgb_onchain_inbound', 'RGB assets received on-chain by the master node');

ALTER TABLE virtual_transactions DROP CONSTRAINT virtual_transactions_kind_check;
ALTER TABLE virtual_transactions ADD CONSTRAINT virtual_transactions_kind_check CHECK (kind IN (
    'transfer', 'admin_credit', 'admin_debit', 'payment_reserve', 'payment_sent', 'payment_fee',
    'payment_refund', 'internal_payment', 'invoice_receipt', 'rgb_receipt', 'operator_loss'));

ALTER TABLE ln_user_transactions ADD COLUMN payment_hash text;
ALTER TABLE ln_user_transactions ADD CONSTRAINT ln_user_transactions_status_check
    CHECK (status IN ('completed', 'pending', 'succeeded', 'failed'));

-- Invoices vnode made for its users.
CREATE TABLE ln_invoices (
    payment_hash  text PRIMARY KEY CHECK (payment_hash ~ '^[0-9a-f]{64}$'),
    user_id       bigint NOT NULL REFERENCES virtual_nodes (user_id),
    invoice       text NOT NULL UNIQUE,
    asset_id      text NOT NULL DEFAULT 'BTC',
    amount_msat   bigint CHECK (amount_msat > 0),   -- NULL: amountless
    asset_amount  bigint CHECK (asset_amount > 0),
    description   text,
    expires_at    timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ln_invoices_open ON ln_invoices (expires_at) WHERE status = 'open';

-- Credits of received payments: once per hash from the node, once from an internal payer.
CREATE TABLE ln_receipts (
    id            bigserial PRIMARY KEY,
    payment_hash  text NOT NULL REFERENCES ln_invoices (payment_hash),
    source        text NOT NULL CHECK (source IN ('node', 'internal')),
    user_id       bigint NOT NULL,
    amount_msat   bigint NOT NULL CHECK (amount_msat >= 0),
    asset_amount  bigint CHECK (asset_amount > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payment_hash, source)
);

-- Outgoing payments (Flow 2), external through the node or settled inside the ledger.
CREATE TABLE ln_payments (
    id                  bigserial PRIMARY KEY,
    payment_hash        text NOT NULL CHECK (payment_hash ~ '^[0-9a-f]{64}$'),
    user_id             bigint NOT NULL REFERENCES virtual_nodes (user_id),
    invoice             text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('external', 'internal')),
    amount_msat         bigint NOT NULL CHECK (amount_msat >= 0),
    asset_id            text,
    asset_amount        bigint CHECK (asset_amount > 0),
    fee_reserve_msat    bigint NOT NULL CHECK (fee_reserve_msat >= 0),
    fee_msat            bigint CHECK (fee_msat >= 0),
    status              text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    preimage            text CHECK (preimage ~ '^[0-9a-f]{64}$'),
    failure_reason      text,
    invoice_expires_at  timestamptz NOT NULL,
    attempt_started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    late_success_at     timestamptz,  -- the node reported success after we refunded
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((asset_id IS NULL) = (asset_amount IS NULL)),
    CHECK (status <> 'succeeded' OR kind = 'internal'
           OR encode(sha256(decode(preimage, 'hex')), 'hex') = payment_hash)
);
-- One invoice, one debit: a second payer (or a second click) finds the first one here.
CREATE UNIQUE INDEX ln_payments_one_live ON ln_payments (payment_hash)
    WHERE status IN ('pending', 'succeeded');
CREATE INDEX ln_payments_pending ON ln_payments (id) WHERE status = 'pending';
CREATE INDEX ln_payments_user ON ln_payments (user_id, id DESC);

-- RGB on-chain invoices (POST /virtual_rgbinvoice) and their receipts.
CREATE TABLE rgb_invoices (
    recipient_id  text PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES virtual_nodes (user_id),
    asset_id      text NOT NULL,
    invoice       text NOT NULL,
    expires_at    timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'settled')),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rgb_receipts (
    recipient_id  text PRIMARY KEY REFERENCES rgb_invoices (recipient_id),
    transfer_idx  bigint NOT NULL,
    asset_amount  bigint NOT NULL CHECK (asset_amount > 0),
    outpoint      text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Things an operator must look at: never resolved silently.
CREATE TABLE alerts (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    payment_hash  text,
    details       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz
);

-- Replay protection for the signed inbound webhook.
CREATE TABLE webhook_replays (
    signature  bytea PRIMARY KEY,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

-- Set once, by whoever sends the payment to the node: a payment is sent by one caller only.
ALTER TABLE ln_payments ADD COLUMN sent_at timestamptz;

-- Coins are immutable but for being spent once: amount, owner, asset, origin and outpoint of a
-- coin never change (the audit would catch it; the database refuses it).
CREATE FUNCTION user_utxos_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'coin % cannot be deleted', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.spent_tx IS NOT NULL THEN
        RAISE EXCEPTION 'coin % is already spent by transaction %', OLD.id, OLD.spent_tx
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.spent_tx IS NULL OR (NEW.id, NEW.user_id, NEW.asset_id, NEW.amount, NEW.created_tx,
                                NEW.outpoint, NEW.created_at)
            IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.asset_id, OLD.amount, OLD.created_tx,
                              OLD.outpoint, OLD.created_at) THEN
        RAISE EXCEPTION 'coin % can only be spent, not changed', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER user_utxos_spend_once ON user_utxos;
DROP TRIGGER user_utxos_no_delete ON user_utxos;
DROP FUNCTION user_utxos_spend_once();
CREATE TRIGGER user_utxos_guard BEFORE UPDATE OR DELETE ON user_utxos
    FOR EACH ROW EXECUTE FUNCTION user_utxos_guard();

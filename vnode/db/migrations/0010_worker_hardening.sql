-- Security review 1 (docs/SECURITY.md): no single row can stop a worker, and the books tell
-- the truth about retried invoices and inbound assets.

-- H1: a timestamp past year 9999 cannot be decoded by any client (asyncpg raises), so it can
-- never be stored. NOT VALID: rows from before this migration are not re-read here; vnode
-- reads timestamps as epoch seconds anyway, so an old row cannot stop a worker either.
ALTER TABLE ln_payments ADD CONSTRAINT ln_payments_expiry_decodable
    CHECK (invoice_expires_at < '10000-01-01') NOT VALID;
ALTER TABLE ln_invoices ADD CONSTRAINT ln_invoices_expiry_decodable
    CHECK (expires_at < '10000-01-01') NOT VALID;
ALTER TABLE rgb_invoices ADD CONSTRAINT rgb_invoices_expiry_decodable
    CHECK (expires_at < '10000-01-01') NOT VALID;

-- M2: the reconciler pages through every pending payment that is due, the one checked longest
-- ago (or never) first; a payment whose check raised waits longer each time (per-item backoff).
ALTER TABLE ln_payments
    ADD COLUMN checked_at timestamptz,
    ADD COLUMN next_check_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN check_errors integer NOT NULL DEFAULT 0;
CREATE INDEX ln_payments_due ON ln_payments (next_check_at)
    WHERE status = 'pending' AND kind = 'external';

-- M6: an RGB invoice stays watched until the node reports its transfer final.
ALTER TABLE rgb_invoices DROP CONSTRAINT rgb_invoices_status_check;
ALTER TABLE rgb_invoices ADD CONSTRAINT rgb_invoices_status_check
    CHECK (status IN ('open', 'settled', 'failed', 'expired'));

-- The functions that go with these tables (M1's late-success guard in vnode_payment_finish,
-- L9's asset check in vnode_receipt_credit and vnode_rgb_receipt_credit) are defined in
-- vnode/db/functions/, which the migrator applies after this migration.

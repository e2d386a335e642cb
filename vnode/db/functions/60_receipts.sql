-- Incoming payments (Flow 3) and RGB on-chain receipts, credited once.
--
-- The current definition of each object below, and nowhere else (CONTRIBUTING.md, "Database
-- code"). The migrator applies this file after the numbered migrations, again whenever its text
-- changes (its checksum is kept in schema_functions), and again after any numbered migration.
-- Files apply in name order: a file may use what a lower number defines. Change a function
-- here, never in a migration; a migration never calls one.
--
-- Every statement must be safe to run again on a database that already has it:
--   * CREATE OR REPLACE FUNCTION, for a new body, volatility or other attribute.
--   * New argument types make a new function: drop the old one first, by its old types,
--       DROP FUNCTION IF EXISTS vnode_example(bigint, text);
--   * A new return type, OUT parameter or parameter name cannot be replaced: put
--       DROP FUNCTION IF EXISTS vnode_example(bigint, text);
--     right above its CREATE (it is then made anew each time this file is applied).
--   * A trigger: DROP TRIGGER IF EXISTS name ON table; then CREATE TRIGGER.

-- One shape for invoice.paid, whether an outside payer paid through the node or a vnode user
-- paid inside the ledger. `comment` is the payer's LNURL comment (LUD-12), NULL otherwise.
CREATE OR REPLACE FUNCTION vnode_invoice_paid(
    inv ln_invoices, p_source text, p_from_node text, p_amount_msat bigint, p_asset_amount bigint)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'payment_hash', inv.payment_hash, 'source', p_source,
        'user_id', inv.user_id, 'node_id', 'vn_' || inv.user_id::text,
        'from_node_id', p_from_node,
        'amount_msat', p_amount_msat, 'amount_sats', p_amount_msat / 1000,
        'asset_id', inv.asset_id, 'asset_amount', p_asset_amount,
        'description', inv.description, 'comment', inv.comment,
        'created_at', vnode_ts(now()))
$$;

-- Flow 3: the node received a payment for one of our invoices; credit its owner once, with
-- what the node says arrived (overpayment included). The history entry's memo is the payer's
-- LNURL comment when there is one (as in vnode_internal_pay), else the invoice's description. What arrived is checked against the
-- invoice's asset first; p_asset_id is the asset the node reports (NULL: plain BTC).
-- Before migration 0010 it had no p_asset_id: that older signature is dropped.
DROP FUNCTION IF EXISTS vnode_receipt_credit(text, bigint, bigint);
DROP FUNCTION IF EXISTS vnode_receipt_credit(text, bigint, bigint, text);
CREATE OR REPLACE FUNCTION vnode_receipt_credit(
    p_hash text, p_amount_msat bigint, p_asset_amount bigint, p_asset_id text,
    OUT code text, OUT result jsonb, OUT credited boolean)
LANGUAGE plpgsql AS $$
DECLARE
    c_inbound constant bigint := vnode_account('lightning_inbound');
    inv ln_invoices%ROWTYPE;
    v_tx bigint;
BEGIN
    SELECT * INTO inv FROM ln_invoices WHERE payment_hash = p_hash FOR UPDATE;
    IF NOT FOUND THEN
        code := 'unknown_invoice';
        RETURN;
    END IF;
    IF coalesce(p_asset_id, 'BTC') <> inv.asset_id THEN
        INSERT INTO alerts (kind, payment_hash, details)
        SELECT 'receipt_asset_mismatch', p_hash,
               jsonb_build_object('invoice_asset_id', inv.asset_id, 'node_asset_id', p_asset_id,
                                  'asset_amount', p_asset_amount, 'amount_msat', p_amount_msat)
        WHERE NOT EXISTS (SELECT 1 FROM alerts
                          WHERE kind = 'receipt_asset_mismatch' AND payment_hash = p_hash);
        code := 'asset_mismatch';
        RETURN;
    END IF;
    INSERT INTO ln_receipts (payment_hash, source, user_id, amount_msat, asset_amount)
    VALUES (p_hash, 'node', inv.user_id, p_amount_msat,
            CASE WHEN inv.asset_id = 'BTC' THEN NULL ELSE p_asset_amount END)
    ON CONFLICT (payment_hash, source) DO NOTHING;
    IF NOT FOUND THEN
        code := 'ok';
        credited := false;
        result := jsonb_build_object('credited', false, 'payment_hash', p_hash,
                                     'user_id', inv.user_id, 'reason', 'already credited');
        RETURN;
    END IF;

    PERFORM 1 FROM virtual_nodes WHERE user_id = inv.user_id FOR UPDATE;
    IF p_amount_msat > 0 THEN
        v_tx := vnode_credit_user(inv.user_id, 'BTC', p_amount_msat, c_inbound,
                                  'invoice_receipt', p_hash);
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', 'BTC', p_amount_msat,
                              'lightning', coalesce(inv.comment, inv.description), 'completed',
                              p_hash);
    END IF;
    IF inv.asset_id <> 'BTC' AND coalesce(p_asset_amount, 0) > 0 THEN
        v_tx := vnode_credit_user(inv.user_id, inv.asset_id, p_asset_amount, c_inbound,
                                  'invoice_receipt', p_hash);
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', inv.asset_id,
                              p_asset_amount, 'lightning', coalesce(inv.comment, inv.description),
                              'completed', p_hash);
    END IF;
    UPDATE ln_invoices SET status = 'paid' WHERE payment_hash = p_hash;
    result := vnode_invoice_paid(inv, 'node', NULL, p_amount_msat,
                                 CASE WHEN inv.asset_id = 'BTC' THEN NULL ELSE p_asset_amount END);
    PERFORM vnode_emit(inv.user_id, 'invoice.paid', result);
    result := result || jsonb_build_object('credited', true);
    code := 'ok';
    credited := true;
END $$;

-- RGB on-chain: the node reports an incoming transfer to one of our RGB invoices as Settled;
-- credit its owner once, if the asset is the one the invoice asks for (before migration 0010
-- it took no asset: that older signature is dropped).
DROP FUNCTION IF EXISTS vnode_rgb_receipt_credit(text, bigint, bigint, text);
DROP FUNCTION IF EXISTS vnode_rgb_receipt_credit(text, bigint, bigint, text, text);
CREATE OR REPLACE FUNCTION vnode_rgb_receipt_credit(
    p_recipient_id text, p_idx bigint, p_amount bigint, p_outpoint text, p_asset_id text,
    OUT code text, OUT result jsonb, OUT credited boolean)
LANGUAGE plpgsql AS $$
DECLARE
    c_rgb_inbound constant bigint := vnode_account('rgb_onchain_inbound');
    inv rgb_invoices%ROWTYPE;
    v_tx bigint;
BEGIN
    SELECT * INTO inv FROM rgb_invoices WHERE recipient_id = p_recipient_id FOR UPDATE;
    IF NOT FOUND THEN
        code := 'unknown_invoice';
        RETURN;
    END IF;
    IF p_asset_id <> inv.asset_id THEN
        INSERT INTO alerts (kind, details)
        SELECT 'receipt_asset_mismatch',
               jsonb_build_object('recipient_id', p_recipient_id, 'invoice_asset_id',
                                  inv.asset_id, 'node_asset_id', p_asset_id,
                                  'asset_amount', p_amount)
        WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE kind = 'receipt_asset_mismatch'
                          AND details ->> 'recipient_id' = p_recipient_id);
        code := 'asset_mismatch';
        RETURN;
    END IF;
    INSERT INTO rgb_receipts (recipient_id, transfer_idx, asset_amount, outpoint)
    VALUES (p_recipient_id, p_idx, p_amount, p_outpoint)
    ON CONFLICT (recipient_id) DO NOTHING;
    IF NOT FOUND THEN
        code := 'ok';
        credited := false;
        result := jsonb_build_object('credited', false, 'recipient_id', p_recipient_id);
        RETURN;
    END IF;
    PERFORM 1 FROM virtual_nodes WHERE user_id = inv.user_id FOR UPDATE;
    v_tx := vnode_credit_user(inv.user_id, inv.asset_id, p_amount, c_rgb_inbound, 'rgb_receipt',
                              p_recipient_id, p_outpoint);
    PERFORM vnode_history(inv.user_id, v_tx, 'rgb_receipt', 'in', inv.asset_id, p_amount,
                          'rgb on-chain', NULL, 'completed', NULL);
    UPDATE rgb_invoices SET status = 'settled' WHERE recipient_id = p_recipient_id;
    result := jsonb_build_object(
        'credited', true, 'recipient_id', p_recipient_id, 'user_id', inv.user_id,
        'asset_id', inv.asset_id, 'asset_amount', p_amount, 'outpoint', p_outpoint,
        'transfer_idx', p_idx);
    PERFORM vnode_emit(inv.user_id, 'rgb.transfer.settled', result - 'credited');
    code := 'ok';
    credited := true;
END $$;

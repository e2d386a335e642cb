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

-- M1: a refunded attempt whose invoice was paid by a later attempt is not a late success: the
-- node keeps one record per payment hash, and it is the later attempt's.
CREATE OR REPLACE FUNCTION vnode_payment_finish(
    p_payment_id bigint, p_outcome text, p_fee_msat bigint, p_preimage text, p_reason text,
    OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c_outbound constant bigint := -3;
    c_fees constant bigint := -4;
    c_loss constant bigint := -5;
    c_in_flight constant bigint := -6;
    p ln_payments%ROWTYPE;
    v_total bigint;
    v_fee bigint;
    v_tx bigint;
BEGIN
    IF p_outcome NOT IN ('succeeded', 'failed') THEN
        RAISE EXCEPTION 'a payment finishes as succeeded or failed, not %', p_outcome;
    END IF;
    SELECT * INTO p FROM ln_payments WHERE id = p_payment_id FOR UPDATE;
    IF NOT FOUND THEN
        status := 404;
        body := vnode_error('unknown_payment', 'no such payment');
        RETURN;
    END IF;

    IF p.status <> 'pending' THEN
        IF p.status = 'failed' AND p_outcome = 'succeeded' AND p.late_success_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM ln_payments later
                           WHERE later.payment_hash = p.payment_hash AND later.id > p.id) THEN
            -- The user was refunded, yet the money left the node: the operator pays for it.
            UPDATE ln_payments SET late_success_at = now(), preimage = p_preimage
            WHERE id = p.id RETURNING * INTO p;
            PERFORM vnode_journal('operator_loss', 'BTC', c_loss, c_outbound, p.amount_msat,
                                  p.payment_hash);
            IF p.asset_id IS NOT NULL THEN
                PERFORM vnode_journal('operator_loss', p.asset_id, c_loss, c_outbound,
                                      p.asset_amount, p.payment_hash);
            END IF;
            INSERT INTO alerts (kind, payment_hash, details) VALUES (
                'success_after_refund', p.payment_hash,
                jsonb_build_object('payment_id', p.id, 'user_id', p.user_id,
                                   'amount_msat', p.amount_msat, 'asset_id', p.asset_id,
                                   'asset_amount', p.asset_amount));
        END IF;
        status := 200;
        body := vnode_payment_json(p);
        RETURN;
    END IF;

    PERFORM 1 FROM virtual_nodes WHERE user_id = p.user_id FOR UPDATE;
    v_total := p.amount_msat + p.fee_reserve_msat;

    IF p_outcome = 'succeeded' THEN
        -- Charge the reported fee, or the whole reserve when the node does not report fees.
        v_fee := least(coalesce(p_fee_msat, p.fee_reserve_msat), p.fee_reserve_msat);
        IF p.amount_msat > 0 THEN
            PERFORM vnode_journal('payment_sent', 'BTC', c_in_flight, c_outbound, p.amount_msat,
                                  p.payment_hash);
        END IF;
        IF v_fee > 0 THEN
            PERFORM vnode_journal('payment_fee', 'BTC', c_in_flight, c_fees, v_fee,
                                  p.payment_hash);
        END IF;
        IF p_fee_msat IS NOT NULL AND p_fee_msat > p.fee_reserve_msat THEN
            -- A fee above the limit is never taken from users (LESSONS 7).
            PERFORM vnode_journal('operator_loss', 'BTC', c_loss, c_fees,
                                  p_fee_msat - p.fee_reserve_msat, p.payment_hash);
            INSERT INTO alerts (kind, payment_hash, details) VALUES (
                'fee_above_reserve', p.payment_hash,
                jsonb_build_object('fee_msat', p_fee_msat, 'reserve_msat', p.fee_reserve_msat));
        END IF;
        IF v_total - p.amount_msat - v_fee > 0 THEN
            v_tx := vnode_credit_user(p.user_id, 'BTC', v_total - p.amount_msat - v_fee,
                                      c_in_flight, 'payment_refund', p.payment_hash);
            PERFORM vnode_history(p.user_id, v_tx, 'payment_refund', 'in', 'BTC',
                                  v_total - p.amount_msat - v_fee, 'lightning',
                                  'unused fee reserve', 'completed', p.payment_hash);
        END IF;
        IF p.asset_id IS NOT NULL THEN
            PERFORM vnode_journal('payment_sent', p.asset_id, c_in_flight, c_outbound,
                                  p.asset_amount, p.payment_hash);
        END IF;
        UPDATE ln_payments SET status = 'succeeded', fee_msat = v_fee, preimage = p_preimage,
                               finished_at = now()
        WHERE id = p.id RETURNING * INTO p;
    ELSE
        IF v_total > 0 THEN
            v_tx := vnode_credit_user(p.user_id, 'BTC', v_total, c_in_flight, 'payment_refund',
                                      p.payment_hash);
            PERFORM vnode_history(p.user_id, v_tx, 'payment_refund', 'in', 'BTC', v_total,
                                  'lightning', p_reason, 'completed', p.payment_hash);
        END IF;
        IF p.asset_id IS NOT NULL THEN
            v_tx := vnode_credit_user(p.user_id, p.asset_id, p.asset_amount, c_in_flight,
                                      'payment_refund', p.payment_hash);
            PERFORM vnode_history(p.user_id, v_tx, 'payment_refund', 'in', p.asset_id,
                                  p.asset_amount, 'lightning', p_reason, 'completed',
                                  p.payment_hash);
        END IF;
        UPDATE ln_payments SET status = 'failed', failure_reason = p_reason, finished_at = now()
        WHERE id = p.id RETURNING * INTO p;
    END IF;

    PERFORM vnode_pending_add(p.user_id, 'BTC', -v_total);
    IF p.asset_id IS NOT NULL THEN
        PERFORM vnode_pending_add(p.user_id, p.asset_id, -p.asset_amount);
    END IF;
    UPDATE ln_user_transactions SET status = p.status
    WHERE user_id = p.user_id AND payment_hash = p.payment_hash AND kind = 'payment'
      AND ln_user_transactions.status = 'pending';
    status := 200;
    body := vnode_payment_json(p);
    PERFORM vnode_emit(p.user_id, 'payment.' || p.status, body);
END $$;

-- L9: what the node says arrived is checked against the invoice's asset before any credit.
-- p_asset_id is the asset the node reports (NULL: plain BTC).
DROP FUNCTION vnode_receipt_credit(text, bigint, bigint);
CREATE FUNCTION vnode_receipt_credit(p_hash text, p_amount_msat bigint, p_asset_amount bigint,
                                     p_asset_id text, OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c_inbound constant bigint := -2;
    inv ln_invoices%ROWTYPE;
    v_tx bigint;
BEGIN
    SELECT * INTO inv FROM ln_invoices WHERE payment_hash = p_hash FOR UPDATE;
    IF NOT FOUND THEN
        status := 404;
        body := vnode_error('unknown_invoice', 'vnode did not issue an invoice with this hash');
        RETURN;
    END IF;
    IF coalesce(p_asset_id, 'BTC') <> inv.asset_id THEN
        INSERT INTO alerts (kind, payment_hash, details)
        SELECT 'receipt_asset_mismatch', p_hash,
               jsonb_build_object('invoice_asset_id', inv.asset_id, 'node_asset_id', p_asset_id,
                                  'asset_amount', p_asset_amount, 'amount_msat', p_amount_msat)
        WHERE NOT EXISTS (SELECT 1 FROM alerts
                          WHERE kind = 'receipt_asset_mismatch' AND payment_hash = p_hash);
        status := 409;
        body := vnode_error('asset_mismatch', 'the node received another asset than the '
                            'invoice asks for; nothing was credited');
        RETURN;
    END IF;
    INSERT INTO ln_receipts (payment_hash, source, user_id, amount_msat, asset_amount)
    VALUES (p_hash, 'node', inv.user_id, p_amount_msat,
            CASE WHEN inv.asset_id = 'BTC' THEN NULL ELSE p_asset_amount END)
    ON CONFLICT (payment_hash, source) DO NOTHING;
    IF NOT FOUND THEN
        status := 200;
        body := jsonb_build_object('credited', false, 'payment_hash', p_hash,
                                   'user_id', inv.user_id, 'reason', 'already credited');
        RETURN;
    END IF;

    PERFORM 1 FROM virtual_nodes WHERE user_id = inv.user_id FOR UPDATE;
    IF p_amount_msat > 0 THEN
        v_tx := vnode_credit_user(inv.user_id, 'BTC', p_amount_msat, c_inbound,
                                  'invoice_receipt', p_hash);
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', 'BTC', p_amount_msat,
                              'lightning', inv.description, 'completed', p_hash);
    END IF;
    IF inv.asset_id <> 'BTC' AND coalesce(p_asset_amount, 0) > 0 THEN
        v_tx := vnode_credit_user(inv.user_id, inv.asset_id, p_asset_amount, c_inbound,
                                  'invoice_receipt', p_hash);
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', inv.asset_id,
                              p_asset_amount, 'lightning', inv.description, 'completed', p_hash);
    END IF;
    UPDATE ln_invoices SET status = 'paid' WHERE payment_hash = p_hash;
    body := vnode_invoice_paid(inv, 'node', NULL, p_amount_msat,
                               CASE WHEN inv.asset_id = 'BTC' THEN NULL ELSE p_asset_amount END);
    PERFORM vnode_emit(inv.user_id, 'invoice.paid', body);
    body := body || jsonb_build_object('credited', true);
    status := 200;
END $$;

DROP FUNCTION vnode_rgb_receipt_credit(text, bigint, bigint, text);
CREATE FUNCTION vnode_rgb_receipt_credit(p_recipient_id text, p_idx bigint, p_amount bigint,
                                         p_outpoint text, p_asset_id text,
                                         OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c_rgb_inbound constant bigint := -7;
    inv rgb_invoices%ROWTYPE;
    v_tx bigint;
BEGIN
    SELECT * INTO inv FROM rgb_invoices WHERE recipient_id = p_recipient_id FOR UPDATE;
    IF NOT FOUND THEN
        status := 404;
        body := vnode_error('unknown_invoice', 'vnode did not issue this RGB invoice');
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
        status := 409;
        body := vnode_error('asset_mismatch', 'the node received another asset than the '
                            'invoice asks for; nothing was credited');
        RETURN;
    END IF;
    INSERT INTO rgb_receipts (recipient_id, transfer_idx, asset_amount, outpoint)
    VALUES (p_recipient_id, p_idx, p_amount, p_outpoint)
    ON CONFLICT (recipient_id) DO NOTHING;
    IF NOT FOUND THEN
        status := 200;
        body := jsonb_build_object('credited', false, 'recipient_id', p_recipient_id);
        RETURN;
    END IF;
    PERFORM 1 FROM virtual_nodes WHERE user_id = inv.user_id FOR UPDATE;
    v_tx := vnode_credit_user(inv.user_id, inv.asset_id, p_amount, c_rgb_inbound, 'rgb_receipt',
                              p_recipient_id, p_outpoint);
    PERFORM vnode_history(inv.user_id, v_tx, 'rgb_receipt', 'in', inv.asset_id, p_amount,
                          'rgb on-chain', NULL, 'completed', NULL);
    UPDATE rgb_invoices SET status = 'settled' WHERE recipient_id = p_recipient_id;
    body := jsonb_build_object(
        'credited', true, 'recipient_id', p_recipient_id, 'user_id', inv.user_id,
        'asset_id', inv.asset_id, 'asset_amount', p_amount, 'outpoint', p_outpoint,
        'transfer_idx', p_idx);
    PERFORM vnode_emit(inv.user_id, 'rgb.transfer.settled', body - 'credited');
    status := 200;
END $$;

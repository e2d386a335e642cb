-- Security review 1, L6: an RGB invoice made without asset_amount could not be paid inside the
-- ledger. vnode_internal_pay compared the balance with NULL (no refusal) and then wrote an
-- ln_payments row with an asset and no amount, which its CHECK refuses: a 500 for every payer.

-- The API refuses to make such an invoice now (422 amount_fields), and the table says so too.
-- NOT VALID: invoices made before this migration stay as they are; the function below
-- refuses to pay them with a 422 instead.
ALTER TABLE ln_invoices ADD CONSTRAINT ln_invoices_rgb_asset_amount
    CHECK (asset_id = 'BTC' OR asset_amount IS NOT NULL) NOT VALID;

-- As in 0006, with one more refusal: an RGB invoice without an amount (amount_required, the
-- answer the external path gives for the same invoice).
CREATE OR REPLACE FUNCTION vnode_internal_pay(
    p_payer bigint, p_hash text, p_invoice text, p_amount_msat bigint,
    p_owner text, p_idem_key text, p_req bytea,
    OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    inv ln_invoices%ROWTYPE;
    v_amount bigint;
    v_asset text;
    v_payment ln_payments%ROWTYPE;
    v_tx bigint;
    v_payer_node text := 'vn_' || p_payer::text;
    v_payee_node text;
BEGIN
    SELECT l.status, l.body INTO status, body
    FROM vnode_idem_lookup(p_owner, p_idem_key, 'sendpayment', p_req) l;
    IF FOUND THEN
        RETURN;
    END IF;

    -- Serialise every payer of this invoice on its row (LESSONS 3).
    SELECT * INTO inv FROM ln_invoices WHERE payment_hash = p_hash FOR UPDATE;
    v_amount := coalesce(inv.amount_msat, p_amount_msat, 0);
    v_asset := CASE WHEN inv.asset_id = 'BTC' THEN NULL ELSE inv.asset_id END;
    IF inv.payment_hash IS NULL OR inv.invoice <> p_invoice THEN
        -- Same hash, different invoice: a substitution attempt (LESSONS 17).
        status := 422;
        body := vnode_error('invoice_mismatch', 'this invoice is not the one vnode issued');
    ELSIF inv.user_id = p_payer THEN
        status := 422;
        body := vnode_error('self_payment', 'a user cannot pay their own invoice');
    ELSIF EXISTS (SELECT 1 FROM ln_payments WHERE payment_hash = p_hash
                  AND ln_payments.status IN ('pending', 'succeeded'))
          OR inv.status = 'paid' THEN
        status := 409;
        body := vnode_error('invoice_already_paid', 'this invoice is already paid');
    ELSIF inv.expires_at <= now() THEN
        status := 422;
        body := vnode_error('invoice_expired', 'the invoice has expired');
    ELSIF inv.asset_id <> 'BTC' AND inv.asset_amount IS NULL THEN
        -- L6: nothing says how many units move; the node refuses the same invoice this way.
        status := 422;
        body := vnode_error('amount_required', 'the RGB invoice does not name an asset amount');
    END IF;
    IF status IS NULL THEN
        -- Both nodes, in id order.
        PERFORM 1 FROM virtual_nodes WHERE user_id IN (p_payer, inv.user_id)
        ORDER BY user_id FOR UPDATE;
        IF NOT EXISTS (SELECT 1 FROM virtual_nodes WHERE user_id = p_payer) THEN
            status := 404;
            body := vnode_error('unknown_user', 'the payer has no virtual node');
        ELSIF vnode_user_balance(p_payer, 'BTC') < v_amount
              OR (v_asset IS NOT NULL
                  AND vnode_user_balance(p_payer, v_asset) < inv.asset_amount) THEN
            status := 409;
            body := vnode_error('insufficient_balance', 'the spendable balance is too small');
        END IF;
    END IF;
    IF status IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, status, body);
        RETURN;
    END IF;

    -- Validated; from here on the payment must complete.
    v_payee_node := 'vn_' || inv.user_id::text;
    INSERT INTO ln_payments (payment_hash, user_id, invoice, kind, amount_msat, asset_id,
                             asset_amount, fee_reserve_msat, fee_msat, status,
                             invoice_expires_at, finished_at)
    VALUES (p_hash, p_payer, p_invoice, 'internal', v_amount, v_asset, inv.asset_amount, 0, 0,
            'succeeded', inv.expires_at, now())
    RETURNING * INTO v_payment;

    IF v_amount > 0 THEN
        v_tx := vnode_journal('internal_payment', 'BTC', p_payer, inv.user_id, v_amount, p_hash);
        PERFORM vnode_spend(p_payer, 'BTC', vnode_user_balance(p_payer, 'BTC'), v_amount, v_tx);
        PERFORM vnode_receive(inv.user_id, 'BTC', v_amount, v_tx);
        PERFORM vnode_history(p_payer, v_tx, 'payment', 'out', 'BTC', v_amount, v_payee_node,
                              inv.description, 'succeeded', p_hash);
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', 'BTC', v_amount,
                              v_payer_node, inv.description, 'completed', p_hash);
    END IF;
    IF v_asset IS NOT NULL THEN
        v_tx := vnode_journal('internal_payment', v_asset, p_payer, inv.user_id,
                              inv.asset_amount, p_hash);
        PERFORM vnode_spend(p_payer, v_asset, vnode_user_balance(p_payer, v_asset),
                            inv.asset_amount, v_tx);
        PERFORM vnode_receive(inv.user_id, v_asset, inv.asset_amount, v_tx);
        PERFORM vnode_history(p_payer, v_tx, 'payment', 'out', v_asset, inv.asset_amount,
                              v_payee_node, inv.description, 'succeeded', p_hash);
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', v_asset,
                              inv.asset_amount, v_payer_node, inv.description, 'completed',
                              p_hash);
    END IF;
    UPDATE ln_invoices SET status = 'paid' WHERE payment_hash = p_hash;
    INSERT INTO ln_receipts (payment_hash, source, user_id, amount_msat, asset_amount)
    VALUES (p_hash, 'internal', inv.user_id, v_amount, inv.asset_amount);

    body := vnode_payment_json(v_payment);
    PERFORM vnode_emit(p_payer, 'payment.succeeded', body);
    PERFORM vnode_emit(inv.user_id, 'invoice.paid', vnode_invoice_paid(
        inv, 'internal', v_payer_node, v_amount, inv.asset_amount));
    status := 200;
    PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, status, body);
END $$;

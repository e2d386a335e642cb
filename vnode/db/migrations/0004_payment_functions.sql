-- Money functions for Lightning payments. Same conventions as 0002: one call, one transaction,
-- business refusals answered as (status, body), broken invariants raised.

CREATE FUNCTION vnode_system_add(p_account bigint, p_asset text, p_delta bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO system_balances AS s (account_id, asset_id, balance)
    VALUES (p_account, p_asset, p_delta)
    ON CONFLICT (account_id, asset_id)
    DO UPDATE SET balance = s.balance + excluded.balance, updated_at = now()
$$;

-- One journal row; the system side's balance moves with it (users' coins are the caller's).
CREATE FUNCTION vnode_journal(p_kind text, p_asset text, p_from bigint, p_to bigint,
                              p_amount bigint, p_memo text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint;
BEGIN
    INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount, memo)
    VALUES (p_kind, p_asset, p_from, p_to, p_amount, p_memo) RETURNING id INTO v_tx;
    IF p_from < 0 THEN
        PERFORM vnode_system_add(p_from, p_asset, -p_amount);
    END IF;
    IF p_to < 0 THEN
        PERFORM vnode_system_add(p_to, p_asset, p_amount);
    END IF;
    RETURN v_tx;
END $$;

CREATE FUNCTION vnode_user_balance(p_user bigint, p_asset text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(balance), 0) FROM ln_user_balances
    WHERE user_id = p_user AND asset_id = p_asset
$$;

CREATE FUNCTION vnode_history(p_user bigint, p_tx bigint, p_kind text, p_dir text, p_asset text,
                              p_amount bigint, p_counterparty text, p_memo text, p_status text,
                              p_hash text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO ln_user_transactions (user_id, tx_id, kind, direction, asset_id, amount,
                                      counterparty, memo, status, payment_hash)
    VALUES (p_user, p_tx, p_kind, p_dir, p_asset, p_amount, p_counterparty, p_memo, p_status,
            p_hash)
$$;

-- Move from a user (node locked by the caller) to another account; returns the journal id.
CREATE FUNCTION vnode_debit_user(p_user bigint, p_asset text, p_amount bigint, p_to bigint,
                                 p_kind text, p_memo text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint := vnode_journal(p_kind, p_asset, p_user, p_to, p_amount, p_memo);
BEGIN
    PERFORM vnode_spend(p_user, p_asset, vnode_user_balance(p_user, p_asset), p_amount, v_tx);
    RETURN v_tx;
END $$;

-- vnode_receive gains the coin's real outpoint (an on-chain receipt); callers of the old
-- four-argument form resolve to this one.
DROP FUNCTION vnode_receive(bigint, text, bigint, bigint);
CREATE FUNCTION vnode_receive(p_user bigint, p_asset text, p_amount bigint, p_tx bigint,
                              p_outpoint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
BEGIN
    INSERT INTO user_utxos (user_id, asset_id, amount, created_tx, outpoint)
    VALUES (p_user, p_asset, p_amount, p_tx, p_outpoint);
    INSERT INTO ln_user_balances AS b (user_id, asset_id, balance)
    VALUES (p_user, p_asset, p_amount)
    ON CONFLICT (user_id, asset_id)
    DO UPDATE SET balance = b.balance + excluded.balance, updated_at = now()
    RETURNING b.balance INTO v_balance;
    RETURN v_balance;
END $$;

-- Move from another account to a user (a new coin); returns the journal id.
CREATE FUNCTION vnode_credit_user(p_user bigint, p_asset text, p_amount bigint, p_from bigint,
                                  p_kind text, p_memo text, p_outpoint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint := vnode_journal(p_kind, p_asset, p_from, p_user, p_amount, p_memo);
BEGIN
    PERFORM vnode_receive(p_user, p_asset, p_amount, v_tx, p_outpoint);
    RETURN v_tx;
END $$;

-- An UPDATE, not an upsert: the balance row exists (the reserve spent coins from it), and an
-- upsert's candidate row with a negative delta would trip the CHECK before the conflict.
CREATE FUNCTION vnode_pending_add(p_user bigint, p_asset text, p_delta bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ln_user_balances SET pending = pending + p_delta, updated_at = now()
    WHERE user_id = p_user AND asset_id = p_asset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no balance row for user % asset %', p_user, p_asset
            USING ERRCODE = 'data_corrupted';
    END IF;
END $$;

CREATE FUNCTION vnode_payment_json(p ln_payments) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'payment_id', p.id, 'payment_hash', p.payment_hash, 'status', p.status,
        'kind', p.kind, 'user_id', p.user_id, 'node_id', 'vn_' || p.user_id::text,
        'amount_msat', p.amount_msat, 'amount_sats', p.amount_msat / 1000,
        'asset_id', coalesce(p.asset_id, 'BTC'), 'asset_amount', p.asset_amount,
        'fee_reserve_msat', p.fee_reserve_msat, 'fee_msat', p.fee_msat,
        'preimage', p.preimage, 'failure_reason', p.failure_reason,
        'created_at', vnode_ts(p.created_at),
        'finished_at', CASE WHEN p.finished_at IS NULL THEN NULL ELSE vnode_ts(p.finished_at) END)
$$;

-- Flow 2, step 1: reserve amount + fee reserve (and the RGB asset) before the node is called.
CREATE FUNCTION vnode_payment_reserve(
    p_user bigint, p_hash text, p_invoice text, p_amount_msat bigint, p_asset_id text,
    p_asset_amount bigint, p_fee_reserve bigint, p_expires_at timestamptz,
    p_owner text, p_idem_key text, p_req bytea,
    OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c_in_flight constant bigint := -6;
    v_total bigint := p_amount_msat + p_fee_reserve;
    v_payment ln_payments%ROWTYPE;
    v_live ln_payments%ROWTYPE;
    v_tx bigint;
BEGIN
    SELECT l.status, l.body INTO status, body
    FROM vnode_idem_lookup(p_owner, p_idem_key, 'sendpayment', p_req) l;
    IF FOUND THEN
        RETURN;
    END IF;

    PERFORM 1 FROM virtual_nodes WHERE user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        status := 404;
        body := vnode_error('unknown_user', 'the payer has no virtual node');
    END IF;
    IF status IS NULL THEN
        SELECT * INTO v_live FROM ln_payments
        WHERE payment_hash = p_hash AND ln_payments.status IN ('pending', 'succeeded');
        IF FOUND THEN
            status := 409;
            body := vnode_error(CASE v_live.status WHEN 'pending' THEN 'payment_in_progress'
                                ELSE 'invoice_already_paid' END,
                                'this invoice already has a ' || v_live.status || ' payment');
        ELSIF vnode_user_balance(p_user, 'BTC') < v_total THEN
            status := 409;
            body := vnode_error('insufficient_balance', format(
                'the payment needs %s msat (amount %s + fee reserve %s); spendable %s msat',
                v_total, p_amount_msat, p_fee_reserve, vnode_user_balance(p_user, 'BTC')));
        ELSIF p_asset_id IS NOT NULL AND vnode_user_balance(p_user, p_asset_id) < p_asset_amount THEN
            status := 409;
            body := vnode_error('insufficient_balance', format(
                'the payment needs %s of %s; spendable %s', p_asset_amount, p_asset_id,
                vnode_user_balance(p_user, p_asset_id)));
        END IF;
    END IF;
    IF status IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, status, body);
        RETURN;
    END IF;

    -- Validated; from here on the reserve must complete.
    INSERT INTO ln_payments (payment_hash, user_id, invoice, kind, amount_msat, asset_id,
                             asset_amount, fee_reserve_msat, status, invoice_expires_at)
    VALUES (p_hash, p_user, p_invoice, 'external', p_amount_msat, p_asset_id, p_asset_amount,
            p_fee_reserve, 'pending', p_expires_at)
    RETURNING * INTO v_payment;

    IF v_total > 0 THEN
        v_tx := vnode_debit_user(p_user, 'BTC', v_total, c_in_flight, 'payment_reserve', p_hash);
        PERFORM vnode_pending_add(p_user, 'BTC', v_total);
        PERFORM vnode_history(p_user, v_tx, 'payment', 'out', 'BTC', v_total, 'lightning',
                              NULL, 'pending', p_hash);
    END IF;
    IF p_asset_id IS NOT NULL THEN
        v_tx := vnode_debit_user(p_user, p_asset_id, p_asset_amount, c_in_flight,
                                 'payment_reserve', p_hash);
        PERFORM vnode_pending_add(p_user, p_asset_id, p_asset_amount);
        PERFORM vnode_history(p_user, v_tx, 'payment', 'out', p_asset_id, p_asset_amount,
                              'lightning', NULL, 'pending', p_hash);
    END IF;

    body := vnode_payment_json(v_payment);
    PERFORM vnode_emit(p_user, 'payment.pending', body);
    status := 202;
    PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, status, body);
END $$;

-- Flow 2, step 3: the node's final answer. Idempotent: a payment already final is left alone,
-- except a success after a refund, which is booked as an operator loss and raises an alert.
CREATE FUNCTION vnode_payment_finish(
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
        IF p.status = 'failed' AND p_outcome = 'succeeded' AND p.late_success_at IS NULL THEN
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

    -- Serialise with the user's other movements (same lock order as everywhere: node first
    -- is not possible here, but nothing else locks a payment row after a node row).
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

-- Flow 2 for an invoice vnode issued: settled in the ledger, no node call, no fee.
CREATE FUNCTION vnode_internal_pay(
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
    PERFORM vnode_emit(inv.user_id, 'invoice.paid', jsonb_build_object(
        'payment_hash', p_hash, 'source', 'internal', 'from_node_id', v_payer_node,
        'amount_msat', v_amount, 'asset_id', inv.asset_id, 'asset_amount', inv.asset_amount));
    status := 200;
    PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, status, body);
END $$;

-- Flow 3: the node received a payment for one of our invoices; credit its owner once, with
-- what the node says arrived (overpayment included).
CREATE FUNCTION vnode_receipt_credit(p_hash text, p_amount_msat bigint, p_asset_amount bigint,
                                     OUT status integer, OUT body jsonb)
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
    body := jsonb_build_object(
        'credited', true, 'payment_hash', p_hash, 'user_id', inv.user_id,
        'node_id', 'vn_' || inv.user_id::text, 'source', 'node', 'amount_msat', p_amount_msat,
        'asset_id', inv.asset_id,
        'asset_amount', CASE WHEN inv.asset_id = 'BTC' THEN NULL ELSE p_asset_amount END);
    PERFORM vnode_emit(inv.user_id, 'invoice.paid', body - 'credited');
    status := 200;
END $$;

-- RGB on-chain: the node reports an incoming transfer to one of our RGB invoices as Settled.
CREATE FUNCTION vnode_rgb_receipt_credit(p_recipient_id text, p_idx bigint, p_amount bigint,
                                         p_outpoint text, OUT status integer, OUT body jsonb)
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

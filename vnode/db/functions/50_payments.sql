-- Outgoing Lightning payments (Flow 2): reserve, finish, internal pay.
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

-- A payment as the API shows it.
CREATE OR REPLACE FUNCTION vnode_payment_json(p ln_payments) RETURNS jsonb
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
-- The Idempotency-Key was looked up once, before the invoice was read (vnode/payments/send.py):
-- a second request with the same key racing this one fails on the key's primary key when it
-- stores its answer, with all it did rolled back, and the caller replays the first answer.
DROP FUNCTION IF EXISTS vnode_payment_reserve(
    bigint, text, text, bigint, text, bigint, bigint, timestamptz, text, text, bytea);
CREATE OR REPLACE FUNCTION vnode_payment_reserve(
    p_user bigint, p_hash text, p_invoice text, p_amount_msat bigint, p_asset_id text,
    p_asset_amount bigint, p_fee_reserve bigint, p_expires_at timestamptz, p_owner text,
    p_idem_key text, p_req bytea,
    OUT code text, OUT detail text, OUT result jsonb, OUT payment_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c_in_flight constant bigint := vnode_account('payments_in_flight');
    v_total bigint := p_amount_msat + p_fee_reserve;
    v_payment ln_payments%ROWTYPE;
    v_live ln_payments%ROWTYPE;
    v_tx bigint;
    v_old bigint;
    v_coins bigint;
BEGIN
    PERFORM 1 FROM virtual_nodes WHERE user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        code := 'unknown_user';
    END IF;
    IF code IS NULL THEN
        -- A new statement after the lock: the balance as the previous holder left it.
        v_old := vnode_user_spendable(p_user, 'BTC');
        SELECT * INTO v_live FROM ln_payments
        WHERE payment_hash = p_hash AND ln_payments.status IN ('pending', 'succeeded');
        IF FOUND THEN
            code := CASE v_live.status WHEN 'pending' THEN 'payment_in_progress'
                    ELSE 'invoice_already_paid' END;
        ELSIF v_old < v_total THEN
            code := 'insufficient_balance';
            detail := format(
                'the payment needs %s msat (amount %s + fee reserve %s); spendable %s msat',
                v_total, p_amount_msat, p_fee_reserve, v_old);
        ELSIF p_asset_id IS NOT NULL AND vnode_user_spendable(p_user, p_asset_id) < p_asset_amount THEN
            code := 'insufficient_balance';
            detail := format('the payment needs %s of %s; spendable %s', p_asset_amount,
                             p_asset_id, vnode_user_spendable(p_user, p_asset_id));
        ELSIF vnode_limits_apply(p_user) THEN
            -- Per-user limits (35_limits), under the payer's node lock; the reserve is the
            -- largest fee the payer can be charged.
            SELECT c.code, c.detail INTO code, detail
            FROM vnode_limit_check(p_user, 'send', p_amount_msat, p_fee_reserve) c;
        END IF;
    END IF;
    IF code IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, code, detail, NULL);
        RETURN;
    END IF;

    -- Validated; from here on the reserve must complete. The caller that reserves is the one
    -- that sends (vnode/payments/send.py), so the payment is claimed for sending here, in the
    -- reserve's own row, rather than by an UPDATE of it a moment later.
    INSERT INTO ln_payments (payment_hash, user_id, invoice, kind, amount_msat, asset_id,
                             asset_amount, fee_reserve_msat, status, invoice_expires_at,
                             sent_at)
    VALUES (p_hash, p_user, p_invoice, 'external', p_amount_msat, p_asset_id, p_asset_amount,
            p_fee_reserve, 'pending', p_expires_at, now())
    RETURNING * INTO v_payment;

    IF v_total > 0 THEN
        -- vnode_debit_user, vnode_pending_add and vnode_history inlined (the BTC reserve is
        -- on every external payment): the journal row, the coins, the balance's spendable
        -- and pending in one UPDATE, the history line. The in-flight account's balance is
        -- moved last, below (docs/adr/0031).
        INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount, memo)
        VALUES ('payment_reserve', 'BTC', p_user, c_in_flight, v_total, p_hash)
        RETURNING id INTO v_tx;
        WITH spent AS (
            UPDATE user_utxos SET spent_tx = v_tx
            WHERE user_id = p_user AND asset_id = 'BTC' AND spent_tx IS NULL
            RETURNING amount
        )
        SELECT coalesce(sum(amount), 0) INTO v_coins FROM spent;
        -- The cached balance must equal the coins it caches; anything else is corruption.
        IF v_coins <> v_old THEN
            RAISE EXCEPTION 'ledger corruption: user % asset % coins % but cached balance %',
                p_user, 'BTC', v_coins, v_old USING ERRCODE = 'data_corrupted';
        END IF;
        IF v_old - v_total > 0 THEN
            INSERT INTO user_utxos (user_id, asset_id, amount, created_tx)
            VALUES (p_user, 'BTC', v_old - v_total, v_tx);
        END IF;
        UPDATE ln_user_balances
        SET spendable = v_old - v_total, pending = pending + v_total, updated_at = now()
        WHERE user_id = p_user AND asset_id = 'BTC';
        INSERT INTO ln_user_transactions (user_id, tx_id, kind, direction, asset_id, amount,
                                          counterparty, memo, status, payment_hash)
        VALUES (p_user, v_tx, 'payment', 'out', 'BTC', v_total, 'lightning', NULL, 'pending',
                p_hash);
    END IF;
    IF p_asset_id IS NOT NULL THEN
        v_tx := vnode_debit_user(p_user, p_asset_id, p_asset_amount, c_in_flight,
                                 'payment_reserve', p_hash);
        PERFORM vnode_pending_add(p_user, p_asset_id, p_asset_amount);
        PERFORM vnode_history(p_user, v_tx, 'payment', 'out', p_asset_id, p_asset_amount,
                              'lightning', NULL, 'pending', p_hash);
    END IF;

    code := 'pending';
    result := vnode_payment_json(v_payment);
    payment_id := v_payment.id;
    PERFORM vnode_emit(p_user, 'payment.pending', result);
    PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, code, NULL, result);
    -- Last: the in-flight account's row is every payment's (each reserve and each finish
    -- updates it), and its lock is held until this transaction commits. Moved here, the
    -- lock is held for the commit alone instead of the whole reserve; under load the
    -- reserves and finishes queued on it (bench/payments.py --pg-stat-statements:
    -- 3.4 ms of waiting per update). What vnode_journal would have done for the row above.
    IF v_total > 0 THEN
        PERFORM vnode_system_add(c_in_flight, 'BTC', v_total);
    END IF;
END $$;

-- Flow 2, step 3: the node's final answer. Idempotent: a payment already final is left alone,
-- except a success after a refund, which is booked as an operator loss and raises an alert.
-- A refunded attempt whose invoice was paid by a later attempt is not a late success: the
-- node keeps one record per payment hash, and it is the later attempt's.
DROP FUNCTION IF EXISTS vnode_payment_finish(bigint, text, bigint, text, text);
CREATE OR REPLACE FUNCTION vnode_payment_finish(
    p_payment_id bigint, p_outcome text, p_fee_msat bigint, p_preimage text, p_reason text,
    OUT code text, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c_outbound constant bigint := vnode_account('lightning_outbound');
    c_fees constant bigint := vnode_account('routing_fees');
    c_loss constant bigint := vnode_account('operator_loss');
    c_in_flight constant bigint := vnode_account('payments_in_flight');
    p ln_payments%ROWTYPE;
    v_total bigint;
    v_fee bigint := 0;  -- of a success: booked in one statement at the end
    v_sent bigint := 0;  -- of a success: booked in one statement at the end
    v_tx bigint;
BEGIN
    IF p_outcome NOT IN ('succeeded', 'failed') THEN
        RAISE EXCEPTION 'a payment finishes as succeeded or failed, not %', p_outcome;
    END IF;
    SELECT * INTO p FROM ln_payments WHERE id = p_payment_id FOR UPDATE;
    IF NOT FOUND THEN
        code := 'unknown_payment';
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
        code := 'ok';
        result := vnode_payment_json(p);
        RETURN;
    END IF;

    PERFORM 1 FROM virtual_nodes WHERE user_id = p.user_id FOR UPDATE;
    v_total := p.amount_msat + p.fee_reserve_msat;

    IF p_outcome = 'succeeded' THEN
        -- Charge the reported fee, or the whole reserve when the node does not report fees.
        v_fee := least(coalesce(p_fee_msat, p.fee_reserve_msat), p.fee_reserve_msat);
        -- The two journal rows of vnode_journal in one INSERT; the system accounts they move
        -- (in flight, outbound, fees: every payment's rows) are moved at the end, below.
        INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount,
                                          memo)
        SELECT k, 'BTC', c_in_flight, t, a, p.payment_hash
        FROM (VALUES (1, 'payment_sent', c_outbound, p.amount_msat),
                     (2, 'payment_fee', c_fees, v_fee)) AS j (n, k, t, a)
        WHERE a > 0
        ORDER BY n;
        v_sent := p.amount_msat;
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
    code := 'ok';
    result := vnode_payment_json(p);
    PERFORM vnode_emit(p.user_id, 'payment.' || p.status, result);
    -- Last, as in vnode_payment_reserve: the system accounts' rows of the journal rows of a
    -- success (in flight -> outbound, in flight -> fees), in one statement, in the order
    -- vnode_journal locked them (in flight, outbound, fees), their locks held for the commit
    -- alone.
    IF v_sent + v_fee > 0 THEN
        INSERT INTO system_balances AS s (account_id, asset_id, balance)
        SELECT acc, 'BTC', delta
        FROM (VALUES (1, c_in_flight, -(v_sent + v_fee)), (2, c_outbound, v_sent),
                     (3, c_fees, v_fee)) AS d (n, acc, delta)
        WHERE delta <> 0
        ORDER BY n
        ON CONFLICT (account_id, asset_id)
        DO UPDATE SET balance = s.balance + excluded.balance, updated_at = now();
    END IF;
END $$;

-- Flow 2 for an invoice vnode issued: settled in the ledger, no node call, no fee. An RGB
-- invoice without an amount is refused (amount_required, the answer the external path gives
-- for the same invoice). The Idempotency-Key was looked up once already, as for a reserve.
DROP FUNCTION IF EXISTS vnode_internal_pay(bigint, text, text, bigint, text, text, bytea);
CREATE OR REPLACE FUNCTION vnode_internal_pay(
    p_payer bigint, p_hash text, p_invoice text, p_amount_msat bigint, p_owner text,
    p_idem_key text, p_req bytea, OUT code text, OUT detail text, OUT result jsonb)
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
    -- Serialise every payer of this invoice on its row (LESSONS 3).
    SELECT * INTO inv FROM ln_invoices WHERE payment_hash = p_hash FOR UPDATE;
    v_amount := coalesce(inv.amount_msat, p_amount_msat, 0);
    v_asset := CASE WHEN inv.asset_id = 'BTC' THEN NULL ELSE inv.asset_id END;
    IF inv.payment_hash IS NULL OR inv.invoice <> p_invoice THEN
        -- Same hash, different invoice: a substitution attempt (LESSONS 17).
        code := 'invoice_mismatch';
    ELSIF inv.user_id = p_payer THEN
        code := 'self_payment';
    ELSIF EXISTS (SELECT 1 FROM ln_payments WHERE payment_hash = p_hash
                  AND ln_payments.status IN ('pending', 'succeeded'))
          OR inv.status = 'paid' THEN
        code := 'invoice_already_paid';
    ELSIF inv.expires_at <= now() THEN
        code := 'invoice_expired';
    ELSIF inv.asset_id <> 'BTC' AND inv.asset_amount IS NULL THEN
        -- L6: nothing says how many units move; the node refuses the same invoice this way.
        code := 'amount_required';
        detail := 'the RGB invoice does not name an asset amount';
    END IF;
    IF code IS NULL THEN
        -- Both nodes, in id order.
        PERFORM 1 FROM virtual_nodes WHERE user_id IN (p_payer, inv.user_id)
        ORDER BY user_id FOR UPDATE;
        IF NOT EXISTS (SELECT 1 FROM virtual_nodes WHERE user_id = p_payer) THEN
            code := 'unknown_user';
        ELSIF vnode_user_spendable(p_payer, 'BTC') < v_amount THEN
            code := 'insufficient_balance';
            detail := format('the payment needs %s msat; spendable %s msat', v_amount,
                             vnode_user_spendable(p_payer, 'BTC'));
        ELSIF v_asset IS NOT NULL
              AND vnode_user_spendable(p_payer, v_asset) < inv.asset_amount THEN
            code := 'insufficient_balance';
            detail := format('the payment needs %s of %s; spendable %s', inv.asset_amount,
                             v_asset, vnode_user_spendable(p_payer, v_asset));
        ELSIF vnode_limits_apply(p_payer, inv.user_id) THEN
            -- Per-user limits (35_limits), under both node locks: the payer's send limits,
            -- then the payee's receive limits (the money has not arrived: it may be refused).
            SELECT c.code, c.detail INTO code, detail
            FROM vnode_limit_check(p_payer, 'send', v_amount, 0) c;
            IF code IS NULL THEN
                SELECT c.code, vnode_limit_for_payer(c.detail) INTO code, detail
                FROM vnode_limit_check(inv.user_id, 'receive', v_amount, 0) c;
            END IF;
        END IF;
    END IF;
    IF code IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, code, detail, NULL);
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
        PERFORM vnode_spend(p_payer, 'BTC', vnode_user_spendable(p_payer, 'BTC'), v_amount, v_tx);
        PERFORM vnode_receive(inv.user_id, 'BTC', v_amount, v_tx);
        PERFORM vnode_history(p_payer, v_tx, 'payment', 'out', 'BTC', v_amount, v_payee_node,
                              inv.description, 'succeeded', p_hash);
        -- The payee's memo: the payer's LNURL comment when there is one (as in
        -- vnode_receipt_credit), else the invoice's description.
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', 'BTC', v_amount,
                              v_payer_node, coalesce(inv.comment, inv.description), 'completed',
                              p_hash);
    END IF;
    IF v_asset IS NOT NULL THEN
        v_tx := vnode_journal('internal_payment', v_asset, p_payer, inv.user_id,
                              inv.asset_amount, p_hash);
        PERFORM vnode_spend(p_payer, v_asset, vnode_user_spendable(p_payer, v_asset),
                            inv.asset_amount, v_tx);
        PERFORM vnode_receive(inv.user_id, v_asset, inv.asset_amount, v_tx);
        PERFORM vnode_history(p_payer, v_tx, 'payment', 'out', v_asset, inv.asset_amount,
                              v_payee_node, inv.description, 'succeeded', p_hash);
        PERFORM vnode_history(inv.user_id, v_tx, 'invoice_receipt', 'in', v_asset,
                              inv.asset_amount, v_payer_node,
                              coalesce(inv.comment, inv.description), 'completed', p_hash);
    END IF;
    UPDATE ln_invoices SET status = 'paid' WHERE payment_hash = p_hash;
    INSERT INTO ln_receipts (payment_hash, source, user_id, amount_msat, asset_amount)
    VALUES (p_hash, 'internal', inv.user_id, v_amount, inv.asset_amount);

    code := 'ok';
    result := vnode_payment_json(v_payment);
    PERFORM vnode_emit(p_payer, 'payment.succeeded', result);
    PERFORM vnode_emit(inv.user_id, 'invoice.paid', vnode_invoice_paid(
        inv, 'internal', v_payer_node, v_amount, inv.asset_amount));
    PERFORM vnode_idem_store(p_owner, p_idem_key, 'sendpayment', p_req, code, NULL, result);
END $$;

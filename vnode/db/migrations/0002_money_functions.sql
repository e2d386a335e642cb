-- Money movements as database functions: each request is one round trip and one transaction,
-- and every check that protects money runs under the row locks it depends on.
--
-- Functions answer (status, body) instead of raising for business refusals, so that an
-- Idempotency-Key can record a refusal as well as a success. They raise only for broken
-- invariants, which roll everything back.

CREATE FUNCTION vnode_error(p_code text, p_message text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('error', jsonb_build_object('code', p_code, 'message', p_message))
$$;

CREATE FUNCTION vnode_ts(p_ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(p_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The stored answer for (owner, key), or no row. A different request under the same key is
-- refused rather than silently answered with someone else's result.
CREATE FUNCTION vnode_idem_lookup(p_owner text, p_key text, p_endpoint text, p_hash bytea,
                                  OUT status integer, OUT body jsonb)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
    r idempotency_keys%ROWTYPE;
BEGIN
    IF p_key IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO r FROM idempotency_keys WHERE owner = p_owner AND key = p_key;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF r.endpoint <> p_endpoint OR r.request_hash <> p_hash THEN
        status := 409;
        body := vnode_error('idempotency_key_reused',
            'this Idempotency-Key was already used with a different request');
    ELSE
        status := r.status_code;
        body := r.response;
    END IF;
    RETURN NEXT;
END $$;

-- Records the answer. A concurrent request with the same key that got here first makes this
-- INSERT fail with a unique violation, which rolls back the whole second movement; the caller
-- then retries and replays the stored answer.
CREATE FUNCTION vnode_idem_store(p_owner text, p_key text, p_endpoint text, p_hash bytea,
                                 p_status integer, p_body jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (owner, key, endpoint, request_hash, status_code, response)
        VALUES (p_owner, p_key, p_endpoint, p_hash, p_status, p_body);
    END IF;
END $$;

CREATE FUNCTION vnode_ensure_node(p_user bigint, p_pubkey text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO virtual_nodes (user_id, node_id, pubkey)
    VALUES (p_user, 'vn_' || p_user::text, p_pubkey)
    ON CONFLICT (user_id) DO NOTHING
$$;

-- Spend every unspent coin of (user, asset) and return the change as a new coin. The caller
-- holds the user's node lock and has checked p_old_balance >= p_amount under it.
CREATE FUNCTION vnode_spend(p_user bigint, p_asset text, p_old_balance bigint, p_amount bigint,
                            p_tx bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_coins bigint;
    v_change bigint := p_old_balance - p_amount;
BEGIN
    WITH spent AS (
        UPDATE user_utxos SET spent_tx = p_tx
        WHERE user_id = p_user AND asset_id = p_asset AND spent_tx IS NULL
        RETURNING amount
    )
    SELECT coalesce(sum(amount), 0) INTO v_coins FROM spent;
    -- The cached balance must equal the coins it caches; anything else is corruption.
    IF v_coins <> p_old_balance THEN
        RAISE EXCEPTION 'ledger corruption: user % asset % coins % but cached balance %',
            p_user, p_asset, v_coins, p_old_balance USING ERRCODE = 'data_corrupted';
    END IF;
    IF v_change > 0 THEN
        INSERT INTO user_utxos (user_id, asset_id, amount, created_tx)
        VALUES (p_user, p_asset, v_change, p_tx);
    END IF;
    UPDATE ln_user_balances SET balance = v_change, updated_at = now()
    WHERE user_id = p_user AND asset_id = p_asset;
    RETURN v_change;
END $$;

-- Create a coin for the user and add it to the cached balance; returns the new balance.
CREATE FUNCTION vnode_receive(p_user bigint, p_asset text, p_amount bigint, p_tx bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
BEGIN
    INSERT INTO user_utxos (user_id, asset_id, amount, created_tx)
    VALUES (p_user, p_asset, p_amount, p_tx);
    INSERT INTO ln_user_balances AS b (user_id, asset_id, balance)
    VALUES (p_user, p_asset, p_amount)
    ON CONFLICT (user_id, asset_id)
    DO UPDATE SET balance = b.balance + excluded.balance, updated_at = now()
    RETURNING b.balance INTO v_balance;
    RETURN v_balance;
END $$;

-- Append an event for one user, with the next number of that user's sequence.
CREATE FUNCTION vnode_emit(p_user bigint, p_type text, p_payload jsonb) RETURNS void
LANGUAGE sql AS $$
    WITH seq AS (
        UPDATE virtual_nodes SET event_seq = event_seq + 1 WHERE user_id = p_user
        RETURNING event_seq
    )
    INSERT INTO outbox (event_type, user_id, user_seq, payload)
    SELECT p_type, p_user, seq.event_seq, p_payload FROM seq
$$;

-- Flow 1: one internal transfer.
CREATE FUNCTION vnode_transfer(
    p_from bigint, p_to bigint, p_to_pubkey text, p_asset text, p_amount bigint, p_memo text,
    p_owner text, p_idem_key text, p_hash bytea,
    OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_from_found boolean := false;
    v_to_found boolean := false;
    v_old bigint := 0;
    v_new bigint;
    v_tx bigint;
    v_at timestamptz;
    v_at_text text;
    v_from_node text := 'vn_' || p_from::text;
    v_to_node text := 'vn_' || p_to::text;
    v_amounts jsonb;
    r record;
BEGIN
    SELECT l.status, l.body INTO status, body
    FROM vnode_idem_lookup(p_owner, p_idem_key, 'transfer', p_hash) l;
    IF FOUND THEN
        RETURN;
    END IF;

    -- Lock both nodes in id order (no deadlock between A->B and B->A).
    FOR r IN
        SELECT n.user_id FROM virtual_nodes n
        WHERE n.user_id IN (p_from, p_to)
        ORDER BY n.user_id
        FOR UPDATE
    LOOP
        IF r.user_id = p_from THEN
            v_from_found := true;
        ELSE
            v_to_found := true;
        END IF;
    END LOOP;
    -- Read the balance in a new statement, after the lock: under READ COMMITTED a row joined
    -- to the locked one would come from the snapshot taken before the wait, i.e. stale.
    SELECT coalesce(max(balance), 0) INTO v_old FROM ln_user_balances
    WHERE user_id = p_from AND asset_id = p_asset;

    IF NOT v_from_found THEN
        status := 404;
        body := vnode_error('unknown_user', 'the sender has no virtual node');
    ELSIF v_old < p_amount THEN
        status := 409;
        body := vnode_error('insufficient_balance',
            format('balance %s is less than the amount %s', v_old, p_amount));
    END IF;
    IF status IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, 'transfer', p_hash, status, body);
        RETURN;
    END IF;

    -- Validated; from here on the transfer must complete.
    IF NOT v_to_found THEN
        PERFORM vnode_ensure_node(p_to, p_to_pubkey);
    END IF;

    INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount, memo)
    VALUES ('transfer', p_asset, p_from, p_to, p_amount, p_memo)
    RETURNING id, created_at INTO v_tx, v_at;
    v_at_text := vnode_ts(v_at);

    v_new := vnode_spend(p_from, p_asset, v_old, p_amount, v_tx);
    PERFORM vnode_receive(p_to, p_asset, p_amount, v_tx);

    INSERT INTO ln_user_transactions
        (user_id, tx_id, kind, direction, asset_id, amount, counterparty, memo)
    VALUES (p_from, v_tx, 'transfer', 'out', p_asset, p_amount, v_to_node, p_memo),
           (p_to, v_tx, 'transfer', 'in', p_asset, p_amount, v_from_node, p_memo);

    IF p_asset = 'BTC' THEN
        v_amounts := jsonb_build_object('amount_msat', p_amount, 'amount_sats', p_amount / 1000);
    ELSE
        v_amounts := jsonb_build_object('asset_amount', p_amount);
    END IF;

    PERFORM vnode_emit(p_from, 'transfer.completed', v_amounts || jsonb_build_object(
        'transfer_id', v_tx, 'direction', 'out', 'asset_id', p_asset,
        'counterparty', v_to_node, 'memo', p_memo, 'created_at', v_at_text));
    PERFORM vnode_emit(p_to, 'transfer.completed', v_amounts || jsonb_build_object(
        'transfer_id', v_tx, 'direction', 'in', 'asset_id', p_asset,
        'counterparty', v_from_node, 'memo', p_memo, 'created_at', v_at_text));

    status := 200;
    body := v_amounts || jsonb_build_object(
        'transfer_id', v_tx,
        'status', 'completed',
        'from_user_id', p_from, 'from_node_id', v_from_node,
        'to_user_id', p_to, 'to_node_id', v_to_node,
        'asset_id', p_asset,
        'fee_msat', 0,
        'memo', p_memo,
        'created_at', v_at_text,
        'sender_balance', CASE WHEN p_asset = 'BTC'
            THEN jsonb_build_object('balance_msat', v_new, 'balance_sats', v_new / 1000)
            ELSE jsonb_build_object('asset_amount', v_new) END);
    PERFORM vnode_idem_store(p_owner, p_idem_key, 'transfer', p_hash, status, body);
END $$;

-- Operator funding and corrections, booked against the operator_funding system account.
CREATE FUNCTION vnode_admin_move(
    p_kind text, p_user bigint, p_pubkey text, p_asset text, p_amount bigint, p_reason text,
    p_owner text, p_idem_key text, p_hash bytea,
    OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c_system constant bigint := -1;  -- operator_funding
    v_found boolean;
    v_old bigint;
    v_new bigint;
    v_tx bigint;
    v_at timestamptz;
    v_node text := 'vn_' || p_user::text;
    v_dir text;
    v_amounts jsonb;
BEGIN
    IF p_kind NOT IN ('admin_credit', 'admin_debit') THEN
        RAISE EXCEPTION 'unknown admin movement %', p_kind;
    END IF;
    SELECT l.status, l.body INTO status, body
    FROM vnode_idem_lookup(p_owner, p_idem_key, p_kind, p_hash) l;
    IF FOUND THEN
        RETURN;
    END IF;

    IF p_kind = 'admin_credit' THEN
        PERFORM vnode_ensure_node(p_user, p_pubkey);
    END IF;
    SELECT true INTO v_found FROM virtual_nodes WHERE user_id = p_user FOR UPDATE;
    -- A new statement after the lock sees the balance as the previous holder left it.
    SELECT coalesce(max(balance), 0) INTO v_old FROM ln_user_balances
    WHERE user_id = p_user AND asset_id = p_asset;

    IF v_found IS NULL THEN
        status := 404;
        body := vnode_error('unknown_user', 'this user has no virtual node');
    ELSIF p_kind = 'admin_debit' AND v_old < p_amount THEN
        status := 409;
        body := vnode_error('insufficient_balance',
            format('balance %s is less than the amount %s', v_old, p_amount));
    END IF;
    IF status IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, p_kind, p_hash, status, body);
        RETURN;
    END IF;

    -- Validated; from here on the movement must complete.
    INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount, memo)
    VALUES (p_kind, p_asset,
            CASE WHEN p_kind = 'admin_credit' THEN c_system ELSE p_user END,
            CASE WHEN p_kind = 'admin_credit' THEN p_user ELSE c_system END,
            p_amount, p_reason)
    RETURNING id, created_at INTO v_tx, v_at;

    IF p_kind = 'admin_credit' THEN
        v_new := vnode_receive(p_user, p_asset, p_amount, v_tx);
        v_dir := 'in';
    ELSE
        v_new := vnode_spend(p_user, p_asset, v_old, p_amount, v_tx);
        v_dir := 'out';
    END IF;

    INSERT INTO system_balances AS s (account_id, asset_id, balance)
    VALUES (c_system, p_asset, CASE WHEN v_dir = 'in' THEN -p_amount ELSE p_amount END)
    ON CONFLICT (account_id, asset_id)
    DO UPDATE SET balance = s.balance + excluded.balance, updated_at = now();

    INSERT INTO ln_user_transactions
        (user_id, tx_id, kind, direction, asset_id, amount, counterparty, memo)
    VALUES (p_user, v_tx, p_kind, v_dir, p_asset, p_amount, 'operator_funding', p_reason);

    IF p_asset = 'BTC' THEN
        v_amounts := jsonb_build_object('amount_msat', p_amount, 'amount_sats', p_amount / 1000);
    ELSE
        v_amounts := jsonb_build_object('asset_amount', p_amount);
    END IF;
    PERFORM vnode_emit(p_user, replace(p_kind, '_', '.'), v_amounts || jsonb_build_object(
        'transaction_id', v_tx, 'direction', v_dir, 'asset_id', p_asset,
        'reason', p_reason, 'created_at', vnode_ts(v_at)));

    status := 200;
    body := v_amounts || jsonb_build_object(
        'transaction_id', v_tx,
        'kind', p_kind,
        'user_id', p_user, 'node_id', v_node,
        'asset_id', p_asset,
        'reason', p_reason,
        'created_at', vnode_ts(v_at),
        'balance', CASE WHEN p_asset = 'BTC'
            THEN jsonb_build_object('balance_msat', v_new, 'balance_sats', v_new / 1000)
            ELSE jsonb_build_object('asset_amount', v_new) END);
    PERFORM vnode_idem_store(p_owner, p_idem_key, p_kind, p_hash, status, body);
END $$;

-- vnode_transfer with the same effects and answers in fewer statements (docs/PERFORMANCE.md):
-- both sequence numbers in one UPDATE, both events in one INSERT, both new coins in one
-- INSERT, spend and receive inlined, the idempotency helpers only when a key was given.

CREATE OR REPLACE FUNCTION vnode_transfer(
    p_from bigint, p_to bigint, p_to_pubkey text, p_asset text, p_amount bigint, p_memo text,
    p_owner text, p_idem_key text, p_hash bytea,
    OUT status integer, OUT body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_from_found boolean := false;
    v_to_found boolean := false;
    v_old bigint;
    v_coins bigint;
    v_new bigint;
    v_tx bigint;
    v_at timestamptz;
    v_at_text text;
    v_from_node text := 'vn_' || p_from::text;
    v_to_node text := 'vn_' || p_to::text;
    v_from_seq bigint;
    v_to_seq bigint;
    v_amounts jsonb;
    v_event jsonb;
    r record;
BEGIN
    IF p_idem_key IS NOT NULL THEN
        SELECT l.status, l.body INTO status, body
        FROM vnode_idem_lookup(p_owner, p_idem_key, 'transfer', p_hash) l;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    -- Lock both nodes in id order (no deadlock between A->B and B->A).
    FOR r IN
        SELECT n.user_id FROM virtual_nodes n WHERE n.user_id IN (p_from, p_to)
        ORDER BY n.user_id FOR UPDATE
    LOOP
        IF r.user_id = p_from THEN
            v_from_found := true;
        ELSE
            v_to_found := true;
        END IF;
    END LOOP;
    -- A new statement after the lock: it sees the balance as the previous holder left it.
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
        IF p_idem_key IS NOT NULL THEN
            PERFORM vnode_idem_store(p_owner, p_idem_key, 'transfer', p_hash, status, body);
        END IF;
        RETURN;
    END IF;

    -- Validated; from here on the transfer must complete.
    IF NOT v_to_found THEN
        INSERT INTO virtual_nodes (user_id, node_id, pubkey)
        VALUES (p_to, v_to_node, p_to_pubkey) ON CONFLICT (user_id) DO NOTHING;
    END IF;

    INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount, memo)
    VALUES ('transfer', p_asset, p_from, p_to, p_amount, p_memo)
    RETURNING id, created_at INTO v_tx, v_at;
    v_at_text := to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    v_new := v_old - p_amount;

    -- Spend every unspent coin of the sender; the cached balance must equal them.
    WITH spent AS (
        UPDATE user_utxos SET spent_tx = v_tx
        WHERE user_id = p_from AND asset_id = p_asset AND spent_tx IS NULL
        RETURNING amount
    )
    SELECT coalesce(sum(amount), 0) INTO v_coins FROM spent;
    IF v_coins <> v_old THEN
        RAISE EXCEPTION 'ledger corruption: user % asset % coins % but cached balance %',
            p_from, p_asset, v_coins, v_old USING ERRCODE = 'data_corrupted';
    END IF;
    -- The recipient's coin and the sender's change, in one statement.
    INSERT INTO user_utxos (user_id, asset_id, amount, created_tx)
    SELECT u, p_asset, a, v_tx
    FROM (VALUES (p_to, p_amount), (p_from, v_new)) AS c (u, a) WHERE a > 0;

    UPDATE ln_user_balances SET balance = v_new, updated_at = now()
    WHERE user_id = p_from AND asset_id = p_asset;
    INSERT INTO ln_user_balances AS b (user_id, asset_id, balance)
    VALUES (p_to, p_asset, p_amount)
    ON CONFLICT (user_id, asset_id)
    DO UPDATE SET balance = b.balance + excluded.balance, updated_at = now();

    INSERT INTO ln_user_transactions
        (user_id, tx_id, kind, direction, asset_id, amount, counterparty, memo)
    VALUES (p_from, v_tx, 'transfer', 'out', p_asset, p_amount, v_to_node, p_memo),
           (p_to, v_tx, 'transfer', 'in', p_asset, p_amount, v_from_node, p_memo);

    IF p_asset = 'BTC' THEN
        v_amounts := jsonb_build_object('amount_msat', p_amount, 'amount_sats', p_amount / 1000);
    ELSE
        v_amounts := jsonb_build_object('asset_amount', p_amount);
    END IF;

    -- Both users' next sequence numbers in one statement (their rows are locked), then both
    -- events in one INSERT.
    FOR r IN
        UPDATE virtual_nodes SET event_seq = event_seq + 1 WHERE user_id IN (p_from, p_to)
        RETURNING user_id, event_seq
    LOOP
        IF r.user_id = p_from THEN
            v_from_seq := r.event_seq;
        ELSE
            v_to_seq := r.event_seq;
        END IF;
    END LOOP;
    v_event := v_amounts || jsonb_build_object(
        'transfer_id', v_tx, 'asset_id', p_asset, 'memo', p_memo, 'created_at', v_at_text);
    INSERT INTO outbox (event_type, user_id, user_seq, payload) VALUES
        ('transfer.completed', p_from, v_from_seq, v_event || jsonb_build_object(
            'direction', 'out', 'counterparty', v_to_node)),
        ('transfer.completed', p_to, v_to_seq, v_event || jsonb_build_object(
            'direction', 'in', 'counterparty', v_from_node));

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
    IF p_idem_key IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, 'transfer', p_hash, status, body);
    END IF;
END $$;

-- The ledger: coins, balances, journal, history; transfers and operator moves.
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

-- A user's virtual node, made on first use.
CREATE OR REPLACE FUNCTION vnode_ensure_node(p_user bigint, p_pubkey text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO virtual_nodes (user_id, node_id, pubkey)
    VALUES (p_user, 'vn_' || p_user::text, p_pubkey)
    -- No conflict target: node_id and pubkey are unique keys too, and a concurrent first use
    -- can collide on either before user_id; with a target only user_id's collision is caught.
    ON CONFLICT DO NOTHING
$$;

-- The cached balance of (user, asset); 0 when the user never held the asset.
-- (vnode_user_balance before migration 0013 named the column `spendable`.)
DROP FUNCTION IF EXISTS vnode_user_balance(bigint, text);
CREATE OR REPLACE FUNCTION vnode_user_spendable(p_user bigint, p_asset text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(spendable), 0) FROM ln_user_balances
    WHERE user_id = p_user AND asset_id = p_asset
$$;

-- Spend every unspent coin of (user, asset) and return the change as a new coin. The caller
-- holds the user's node lock and has checked p_old_balance >= p_amount under it.
CREATE OR REPLACE FUNCTION vnode_spend(
    p_user bigint, p_asset text, p_old_balance bigint, p_amount bigint, p_tx bigint)
RETURNS bigint
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
    UPDATE ln_user_balances SET spendable = v_change, updated_at = now()
    WHERE user_id = p_user AND asset_id = p_asset;
    RETURN v_change;
END $$;

-- Create a coin for the user and add it to the cached balance; returns the new balance.
-- p_outpoint: the coin's real outpoint, when it comes from an on-chain receipt.
CREATE OR REPLACE FUNCTION vnode_receive(
    p_user bigint, p_asset text, p_amount bigint, p_tx bigint, p_outpoint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
BEGIN
    INSERT INTO user_utxos (user_id, asset_id, amount, created_tx, outpoint)
    VALUES (p_user, p_asset, p_amount, p_tx, p_outpoint);
    INSERT INTO ln_user_balances AS b (user_id, asset_id, spendable)
    VALUES (p_user, p_asset, p_amount)
    ON CONFLICT (user_id, asset_id)
    DO UPDATE SET spendable = b.spendable + excluded.spendable, updated_at = now()
    RETURNING b.spendable INTO v_balance;
    RETURN v_balance;
END $$;

-- Move a system account's balance (system accounts may go negative: a source of funds).
CREATE OR REPLACE FUNCTION vnode_system_add(p_account bigint, p_asset text, p_delta bigint)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO system_balances AS s (account_id, asset_id, balance)
    VALUES (p_account, p_asset, p_delta)
    ON CONFLICT (account_id, asset_id)
    DO UPDATE SET balance = s.balance + excluded.balance, updated_at = now()
$$;

-- One journal row; the system side's balance moves with it (users' coins are the caller's).
CREATE OR REPLACE FUNCTION vnode_journal(
    p_kind text, p_asset text, p_from bigint, p_to bigint, p_amount bigint, p_memo text)
RETURNS bigint
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

-- One line of a user's history, what the wallet shows.
CREATE OR REPLACE FUNCTION vnode_history(
    p_user bigint, p_tx bigint, p_kind text, p_dir text, p_asset text, p_amount bigint,
    p_counterparty text, p_memo text, p_status text, p_hash text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO ln_user_transactions (user_id, tx_id, kind, direction, asset_id, amount,
                                      counterparty, memo, status, payment_hash)
    VALUES (p_user, p_tx, p_kind, p_dir, p_asset, p_amount, p_counterparty, p_memo, p_status,
            p_hash)
$$;

-- Move from a user (node locked by the caller) to another account; returns the journal id.
CREATE OR REPLACE FUNCTION vnode_debit_user(
    p_user bigint, p_asset text, p_amount bigint, p_to bigint, p_kind text, p_memo text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint := vnode_journal(p_kind, p_asset, p_user, p_to, p_amount, p_memo);
BEGIN
    PERFORM vnode_spend(p_user, p_asset, vnode_user_spendable(p_user, p_asset), p_amount, v_tx);
    RETURN v_tx;
END $$;

-- Move from another account to a user (a new coin); returns the journal id.
CREATE OR REPLACE FUNCTION vnode_credit_user(
    p_user bigint, p_asset text, p_amount bigint, p_from bigint, p_kind text, p_memo text,
    p_outpoint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint := vnode_journal(p_kind, p_asset, p_from, p_user, p_amount, p_memo);
BEGIN
    PERFORM vnode_receive(p_user, p_asset, p_amount, v_tx, p_outpoint);
    RETURN v_tx;
END $$;

-- An UPDATE, not an upsert: the balance row exists (the reserve spent coins from it), and an
-- upsert's candidate row with a negative delta would trip the CHECK before the conflict.
CREATE OR REPLACE FUNCTION vnode_pending_add(p_user bigint, p_asset text, p_delta bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ln_user_balances SET pending = pending + p_delta, updated_at = now()
    WHERE user_id = p_user AND asset_id = p_asset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no balance row for user % asset %', p_user, p_asset
            USING ERRCODE = 'data_corrupted';
    END IF;
END $$;

-- Flow 1: one internal transfer. Written for speed (docs/PERFORMANCE.md): both sequence
-- numbers in one UPDATE, both events in one INSERT, both new coins in one INSERT, spend and
-- receive inlined, the idempotency helpers only when a key was given.
DROP FUNCTION IF EXISTS vnode_transfer(bigint, bigint, text, text, bigint, text, text, text, bytea);
CREATE OR REPLACE FUNCTION vnode_transfer(
    p_from bigint, p_to bigint, p_to_pubkey text, p_asset text, p_amount bigint, p_memo text,
    p_owner text, p_idem_key text, p_hash bytea,
    OUT code text, OUT detail text, OUT result jsonb)
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
    -- A key is nearly always new: one probe of its primary key here, and the replay's rules
    -- (vnode_idem_lookup: the same request, the write for a synchronous standby) only when it
    -- is there. A duplicate racing this one finds nothing yet; it waits on the key's INSERT
    -- below and replays when retried (vnode/ledger/calls.py).
    IF p_idem_key IS NOT NULL
       AND EXISTS (SELECT FROM idempotency_keys k WHERE k.owner = p_owner AND k.key = p_idem_key)
    THEN
        SELECT l.code, l.detail, l.result INTO code, detail, result
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
    SELECT coalesce(max(spendable), 0) INTO v_old FROM ln_user_balances
    WHERE user_id = p_from AND asset_id = p_asset;

    IF NOT v_from_found THEN
        code := 'unknown_user';
    ELSIF v_old < p_amount THEN
        code := 'insufficient_balance';
        detail := format('balance %s is less than the amount %s', v_old, p_amount);
    ELSIF p_asset = 'BTC' AND vnode_limits_apply(p_from, p_to) THEN
        -- Per-user limits (35_limits), under both node locks: the sender's, then the
        -- recipient's (nothing has arrived yet, so a receipt can still be refused here).
        SELECT c.code, c.detail INTO code, detail
        FROM vnode_limit_check(p_from, 'send', p_amount, 0) c;
        IF code IS NULL THEN
            SELECT c.code, vnode_limit_for_payer(c.detail) INTO code, detail
            FROM vnode_limit_check(p_to, 'receive', p_amount, 0) c;
        END IF;
        IF code IS NULL AND NOT v_to_found THEN
            -- A new recipient was not locked above. Create its node now: if a concurrent
            -- transfer created it first, this waits for that one's commit; then lock it and
            -- check again, counting what that transfer credited.
            INSERT INTO virtual_nodes (user_id, node_id, pubkey)
            VALUES (p_to, v_to_node, p_to_pubkey) ON CONFLICT DO NOTHING;  -- any key: see vnode_ensure_node
            IF NOT FOUND THEN
                PERFORM 1 FROM virtual_nodes WHERE user_id = p_to FOR UPDATE;
                SELECT c.code, vnode_limit_for_payer(c.detail) INTO code, detail
                FROM vnode_limit_check(p_to, 'receive', p_amount, 0) c;
            END IF;
            v_to_found := true;
        END IF;
    END IF;
    IF code IS NOT NULL THEN
        IF p_idem_key IS NOT NULL THEN
            PERFORM vnode_idem_store(p_owner, p_idem_key, 'transfer', p_hash, code, detail, NULL);
        END IF;
        RETURN;
    END IF;

    -- Validated; from here on the transfer must complete.
    IF NOT v_to_found THEN
        INSERT INTO virtual_nodes (user_id, node_id, pubkey)
        VALUES (p_to, v_to_node, p_to_pubkey) ON CONFLICT DO NOTHING;  -- any key: see vnode_ensure_node
    END IF;

    INSERT INTO virtual_transactions (kind, asset_id, from_account, to_account, amount, memo)
    VALUES ('transfer', p_asset, p_from, p_to, p_amount, p_memo)
    RETURNING id, created_at INTO v_tx, v_at;
    v_at_text := vnode_ts(v_at);
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

    UPDATE ln_user_balances SET spendable = v_new, updated_at = now()
    WHERE user_id = p_from AND asset_id = p_asset;
    INSERT INTO ln_user_balances AS b (user_id, asset_id, spendable)
    VALUES (p_to, p_asset, p_amount)
    ON CONFLICT (user_id, asset_id)
    DO UPDATE SET spendable = b.spendable + excluded.spendable, updated_at = now();

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
    -- (event_id: the column's time-ordered default, migration 0020.)
    INSERT INTO outbox (event_type, user_id, user_seq, payload) VALUES
        ('transfer.completed', p_from, v_from_seq, v_event || jsonb_build_object(
            'direction', 'out', 'counterparty', v_to_node)),
        ('transfer.completed', p_to, v_to_seq, v_event || jsonb_build_object(
            'direction', 'in', 'counterparty', v_from_node));

    code := 'ok';
    result := v_amounts || jsonb_build_object(
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
        -- vnode_idem_store's INSERT (10_idempotency.sql), inlined on this path: the nested
        -- function call cost a third of what the key adds to a transfer.
        INSERT INTO idempotency_keys (owner, key, endpoint, request_hash, code, detail, result)
        VALUES (p_owner, p_idem_key, 'transfer', p_hash, code, NULL, result);
    END IF;
END $$;

-- Flow 1, several transfers in one call and one commit (micro-batching, docs/adr/0026): item i
-- is exactly vnode_transfer(p_from[i], p_to[i], ...), in item order, each with its own answer
-- (a refusal is an answer, not an error: one transfer's insufficient balance never fails its
-- neighbours). Every existing node of the batch is locked first, in user-id order, so that two
-- batches, or a batch and a single transfer, take their locks in one order (no deadlock); each
-- item's own lock is then already held. An error (none is expected) rolls back the whole batch;
-- the caller then runs its items one by one (vnode/ledger/transfer_batch.py). No savepoint per
-- item: a subtransaction per transfer costs more than the batch saves, and more than 64 of
-- them in one transaction slow every other backend's snapshots.
DROP FUNCTION IF EXISTS vnode_transfer_batch(
    bigint[], bigint[], text[], text[], bigint[], text[], text[], text[], bytea[]);
CREATE OR REPLACE FUNCTION vnode_transfer_batch(
    p_from bigint[], p_to bigint[], p_to_pubkey text[], p_asset text[], p_amount bigint[],
    p_memo text[], p_owner text[], p_idem_key text[], p_hash bytea[])
RETURNS TABLE (item integer, code text, detail text, result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    PERFORM 1 FROM virtual_nodes n WHERE n.user_id = ANY (p_from || p_to)
    ORDER BY n.user_id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_from, 1), 0) LOOP
        item := i;
        SELECT t.code, t.detail, t.result INTO code, detail, result
        FROM vnode_transfer(p_from[i], p_to[i], p_to_pubkey[i], p_asset[i], p_amount[i],
                            p_memo[i], p_owner[i], p_idem_key[i], p_hash[i]) t;
        RETURN NEXT;
    END LOOP;
END $$;

-- Operator funding and corrections, booked against the operator_funding system account.
DROP FUNCTION IF EXISTS vnode_admin_move(text, bigint, text, text, bigint, text, text, text, bytea);
CREATE OR REPLACE FUNCTION vnode_admin_move(
    p_kind text, p_user bigint, p_pubkey text, p_asset text, p_amount bigint, p_reason text,
    p_owner text, p_idem_key text, p_hash bytea,
    OUT code text, OUT detail text, OUT result jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    c_system constant bigint := vnode_account('operator_funding');
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
    SELECT l.code, l.detail, l.result INTO code, detail, result
    FROM vnode_idem_lookup(p_owner, p_idem_key, p_kind, p_hash) l;
    IF FOUND THEN
        RETURN;
    END IF;

    IF p_kind = 'admin_credit' THEN
        PERFORM vnode_ensure_node(p_user, p_pubkey);
    END IF;
    SELECT true INTO v_found FROM virtual_nodes WHERE user_id = p_user FOR UPDATE;
    -- A new statement after the lock sees the balance as the previous holder left it.
    SELECT coalesce(max(spendable), 0) INTO v_old FROM ln_user_balances
    WHERE user_id = p_user AND asset_id = p_asset;

    IF v_found IS NULL THEN
        code := 'unknown_user';
    ELSIF p_kind = 'admin_debit' AND v_old < p_amount THEN
        code := 'insufficient_balance';
        detail := format('balance %s is less than the amount %s', v_old, p_amount);
    END IF;
    IF code IS NOT NULL THEN
        PERFORM vnode_idem_store(p_owner, p_idem_key, p_kind, p_hash, code, detail, NULL);
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

    code := 'ok';
    result := v_amounts || jsonb_build_object(
        'transaction_id', v_tx,
        'kind', p_kind,
        'user_id', p_user, 'node_id', v_node,
        'asset_id', p_asset,
        'reason', p_reason,
        'created_at', vnode_ts(v_at),
        'balance', CASE WHEN p_asset = 'BTC'
            THEN jsonb_build_object('balance_msat', v_new, 'balance_sats', v_new / 1000)
            ELSE jsonb_build_object('asset_amount', v_new) END);
    PERFORM vnode_idem_store(p_owner, p_idem_key, p_kind, p_hash, code, NULL, result);
END $$;

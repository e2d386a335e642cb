-- Per-user limits (docs/LIMITS.md): the effective limits of a user, the rolling volumes, and
-- the one check every money function that can still refuse a movement calls under its locks.
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

-- Does any limit apply to these users? The callers' gate: with no row for them and no defaults
-- row (user_limits row 0), a movement costs this one primary-key probe and nothing else.
CREATE OR REPLACE FUNCTION vnode_limits_apply(p_a bigint, p_b bigint DEFAULT NULL)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM user_limits WHERE user_id IN (0, p_a, p_b))
$$;

-- A user's effective limits: the user's override where there is one, else the server default
-- (row 0), else NULL (off). user_id is the user's; updated_at the later of the two rows'.
CREATE OR REPLACE FUNCTION vnode_limits_of(p_user bigint) RETURNS user_limits
LANGUAGE sql STABLE AS $$
    SELECT p_user,
           coalesce(u.send_max_msat, d.send_max_msat),
           coalesce(u.receive_max_msat, d.receive_max_msat),
           coalesce(u.balance_max_msat, d.balance_max_msat),
           coalesce(u.send_24h_msat, d.send_24h_msat),
           coalesce(u.send_30d_msat, d.send_30d_msat),
           coalesce(u.receive_24h_msat, d.receive_24h_msat),
           coalesce(u.receive_30d_msat, d.receive_30d_msat),
           coalesce(u.fee_max_msat, d.fee_max_msat),
           greatest(u.updated_at, d.updated_at)
    FROM (SELECT 1) AS one
    LEFT JOIN user_limits d ON d.user_id = 0
    LEFT JOIN user_limits u ON u.user_id = p_user AND p_user <> 0
$$;

-- What a user sent (p_dir 'send') or received ('receive') in BTC in the last 24 hours and
-- 30 days, in msat. Sent: transfers out, and payments (internal and external) pending or
-- succeeded, by their amount (fees have their own limit). Received: transfers in and invoice
-- receipts (from outside and from other users). Operator credits and refunds are not volume.
-- numeric: a sum of bigints may exceed bigint.
--
-- Cost: the rows of the window only, not the user's whole history. Both tables are indexed by
-- (user_id, id DESC), not by time, so each sum starts above a floor: the newest row of the
-- user older than the window by an hour. Ids grow with insertion and created_at is the
-- inserting transaction's start, so every row below that floor was inserted before it and is
-- older than the window, as long as no transaction writing these tables runs for an hour (the
-- money functions take milliseconds).
CREATE OR REPLACE FUNCTION vnode_limit_volumes(
    p_user bigint, p_dir text, OUT day_msat numeric, OUT month_msat numeric)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_day timestamptz := now() - interval '24 hours';
    v_month timestamptz := now() - interval '30 days';
    v_floor bigint;
    v_pay_day numeric;
    v_pay_month numeric;
BEGIN
    IF p_dir NOT IN ('send', 'receive') THEN
        RAISE EXCEPTION 'a limit direction is send or receive, not %', p_dir;
    END IF;
    SELECT t.id INTO v_floor FROM ln_user_transactions t
    WHERE t.user_id = p_user AND t.created_at < v_month - interval '1 hour'
    ORDER BY t.id DESC LIMIT 1;
    SELECT coalesce(sum(t.amount) FILTER (WHERE t.created_at >= v_day), 0),
           coalesce(sum(t.amount), 0)
    INTO day_msat, month_msat
    FROM ln_user_transactions t
    WHERE t.user_id = p_user AND t.id > coalesce(v_floor, 0) AND t.created_at >= v_month
      AND t.asset_id = 'BTC'
      AND CASE p_dir WHEN 'send' THEN t.direction = 'out' AND t.kind = 'transfer'
                     ELSE t.direction = 'in' AND t.kind IN ('transfer', 'invoice_receipt') END;
    IF p_dir = 'send' THEN
        SELECT p.id INTO v_floor FROM ln_payments p
        WHERE p.user_id = p_user AND p.created_at < v_month - interval '1 hour'
        ORDER BY p.id DESC LIMIT 1;
        SELECT coalesce(sum(p.amount_msat) FILTER (WHERE p.created_at >= v_day), 0),
               coalesce(sum(p.amount_msat), 0)
        INTO v_pay_day, v_pay_month
        FROM ln_payments p
        WHERE p.user_id = p_user AND p.id > coalesce(v_floor, 0) AND p.created_at >= v_month
          AND p.status IN ('pending', 'succeeded');
        day_msat := day_msat + v_pay_day;
        month_msat := month_msat + v_pay_month;
    END IF;
END $$;

-- A refusal's detail: a JSON object naming the limit, its value, what was already used of it,
-- the amount asked for and the headroom left (limit - used, never below 0); party 'self': the
-- limit is the caller's user's own. vnode/limits/refusal.py reads it into the answer's error
-- object.
CREATE OR REPLACE FUNCTION vnode_limit_detail(
    p_limit text, p_limit_msat bigint, p_used_msat numeric, p_amount_msat bigint)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'limit', p_limit, 'party', 'self', 'limit_msat', p_limit_msat, 'used_msat', p_used_msat,
        'amount_msat', p_amount_msat,
        'headroom_msat', greatest(p_limit_msat - p_used_msat, 0))::text
$$;

-- A refusal by the recipient's receive limits, as the payer is told it: which limit, and that
-- it is the recipient's, but none of the recipient's figures. The used amount of
-- balance_max_msat is the recipient's balance, and the headroom gives it away with the limit:
-- a refused transfer, which changes nothing, must not be a way to read another user's balance
-- or volume. NULL stays NULL (no refusal).
CREATE OR REPLACE FUNCTION vnode_limit_for_payer(p_detail text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'limit', d ->> 'limit', 'party', 'recipient', 'amount_msat', d -> 'amount_msat')::text
    FROM (SELECT p_detail::jsonb AS d) AS refusal
    WHERE p_detail IS NOT NULL
$$;

-- The check: may p_user send (p_dir 'send', with a fee of at most p_fee_msat) or receive
-- ('receive') p_amount_msat of BTC now? code NULL when yes, else 'limit_exceeded' with the
-- first limit it breaks in detail. The current amount counts: used + amount must fit.
-- Correct only under the user's node lock (virtual_nodes FOR UPDATE), which serialises the
-- movements whose volume it sums; every money function calls it after taking that lock.
CREATE OR REPLACE FUNCTION vnode_limit_check(
    p_user bigint, p_dir text, p_amount_msat bigint, p_fee_msat bigint,
    OUT code text, OUT detail text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    l user_limits;
    v_day numeric;
    v_month numeric;
    v_balance numeric;
    v_day_limit bigint;
    v_month_limit bigint;
BEGIN
    l := vnode_limits_of(p_user);
    IF p_dir = 'send' THEN
        IF p_amount_msat > l.send_max_msat THEN
            code := 'limit_exceeded';
            detail := vnode_limit_detail('send_max_msat', l.send_max_msat, 0, p_amount_msat);
            RETURN;
        END IF;
        IF p_fee_msat > l.fee_max_msat THEN
            code := 'limit_exceeded';
            detail := vnode_limit_detail('fee_max_msat', l.fee_max_msat, 0, p_fee_msat);
            RETURN;
        END IF;
        v_day_limit := l.send_24h_msat;
        v_month_limit := l.send_30d_msat;
    ELSIF p_dir = 'receive' THEN
        IF p_amount_msat > l.receive_max_msat THEN
            code := 'limit_exceeded';
            detail := vnode_limit_detail('receive_max_msat', l.receive_max_msat, 0,
                                         p_amount_msat);
            RETURN;
        END IF;
        IF l.balance_max_msat IS NOT NULL THEN
            -- The balance a user holds: spendable plus what is reserved for payments in flight.
            SELECT coalesce(sum(b.spendable + b.pending), 0) INTO v_balance
            FROM ln_user_balances b WHERE b.user_id = p_user AND b.asset_id = 'BTC';
            IF v_balance + p_amount_msat > l.balance_max_msat THEN
                code := 'limit_exceeded';
                detail := vnode_limit_detail('balance_max_msat', l.balance_max_msat, v_balance,
                                             p_amount_msat);
                RETURN;
            END IF;
        END IF;
        v_day_limit := l.receive_24h_msat;
        v_month_limit := l.receive_30d_msat;
    ELSE
        RAISE EXCEPTION 'a limit direction is send or receive, not %', p_dir;
    END IF;
    IF v_day_limit IS NULL AND v_month_limit IS NULL THEN
        RETURN;
    END IF;
    SELECT v.day_msat, v.month_msat INTO v_day, v_month FROM vnode_limit_volumes(p_user, p_dir) v;
    IF v_day + p_amount_msat > v_day_limit THEN
        code := 'limit_exceeded';
        detail := vnode_limit_detail(p_dir || '_24h_msat', v_day_limit, v_day, p_amount_msat);
    ELSIF v_month + p_amount_msat > v_month_limit THEN
        code := 'limit_exceeded';
        detail := vnode_limit_detail(p_dir || '_30d_msat', v_month_limit, v_month,
                                     p_amount_msat);
    END IF;
END $$;

-- Rate limits: take one token from the bucket p_key (at most p_burst tokens, refilled at
-- p_per_s a second). Answers 0 when a token was taken, else the seconds until one will be
-- there (nothing taken). One upsert: concurrent callers, from any number of processes,
-- serialise on the bucket's row. clock_timestamp(): the database's clock, the same for all.
CREATE OR REPLACE FUNCTION vnode_rate_take(
    p_key text, p_burst double precision, p_per_s double precision)
RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_tokens double precision;
BEGIN
    IF p_burst < 1 OR p_per_s <= 0 THEN
        RAISE EXCEPTION 'a rate limit needs a burst of at least 1 and a positive rate';
    END IF;
    INSERT INTO rate_buckets AS b (key, tokens, updated_at)
    VALUES (p_key, p_burst - 1, v_now)
    ON CONFLICT (key) DO UPDATE
    SET tokens = least(p_burst, b.tokens
                       + greatest(extract(epoch FROM v_now - b.updated_at), 0) * p_per_s) - 1,
        updated_at = v_now
    WHERE least(p_burst, b.tokens
                + greatest(extract(epoch FROM v_now - b.updated_at), 0) * p_per_s) >= 1
    RETURNING b.tokens INTO v_tokens;
    IF FOUND THEN
        RETURN 0;
    END IF;
    SELECT least(p_burst, b.tokens
                 + greatest(extract(epoch FROM v_now - b.updated_at), 0) * p_per_s)
    INTO v_tokens FROM rate_buckets b WHERE b.key = p_key;
    RETURN greatest((1 - v_tokens) / p_per_s, 0.001);
END $$;

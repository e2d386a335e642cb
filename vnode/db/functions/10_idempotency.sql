-- Idempotency-Key records: look up a stored answer, store a new one.
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

-- The stored answer for (owner, key), or no row. A different request under the same key is
-- refused rather than silently answered with someone else's result.
DROP FUNCTION IF EXISTS vnode_idem_lookup(text, text, text, bytea);
CREATE OR REPLACE FUNCTION vnode_idem_lookup(
    p_owner text, p_key text, p_endpoint text, p_hash bytea,
    OUT code text, OUT detail text, OUT result jsonb)
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
        code := 'idempotency_key_reused';
    ELSE
        -- A replay must not confirm a commit a synchronous standby may not have: a first
        -- request whose commit wait was cut short (its connection lost, a cancel) is visible
        -- here before the standby has it. A write makes this transaction's own commit wait
        -- for the standby, and its commit record comes after the stored answer's, so the
        -- answer is only returned once the standby has both (docs/adr/0023).
        UPDATE idempotency_keys k SET code = k.code WHERE k.owner = p_owner AND k.key = p_key;
        code := r.code;
        detail := r.detail;
        result := r.result;
    END IF;
    RETURN NEXT;
END $$;

-- Records the answer. A concurrent request with the same key that got here first makes this
-- INSERT fail with a unique violation, which rolls back the whole second movement; the caller
-- then retries and replays the stored answer. vnode_transfer (40_ledger.sql) runs this INSERT
-- inline on its success path, for speed: change both.
DROP FUNCTION IF EXISTS vnode_idem_store(text, text, text, bytea, integer, jsonb);
DROP FUNCTION IF EXISTS vnode_idem_store(text, text, text, bytea, text, text, jsonb);
CREATE OR REPLACE FUNCTION vnode_idem_store(
    p_owner text, p_key text, p_endpoint text, p_hash bytea, p_code text, p_detail text,
    p_result jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (owner, key, endpoint, request_hash, code, detail, result)
        VALUES (p_owner, p_key, p_endpoint, p_hash, p_code, p_detail, p_result);
    END IF;
END $$;

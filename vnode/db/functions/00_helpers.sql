-- Helpers used by every money function: system accounts, result codes, timestamps.
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

-- The system accounts: the outside world and the operator, as accounts, so that every movement
-- balances. Their ids are declared here and nowhere else in SQL (the system_accounts rows were
-- written by migrations 0001 and 0004; vnode/domain/accounts.py is the Python side; a test
-- checks that the three agree). Functions name an account, never its number:
--     c_in_flight constant bigint := vnode_account('payments_in_flight');
-- IMMUTABLE and plain SQL, so a call with a constant name is folded to the number when the
-- calling statement is planned; an unknown name raises.
CREATE OR REPLACE FUNCTION vnode_unknown_account(p_name text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION 'unknown system account %', p_name;
END $$;

CREATE OR REPLACE FUNCTION vnode_account(p_name text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_name
        WHEN 'operator_funding' THEN -1      -- credits and debits made by the operator
        WHEN 'lightning_inbound' THEN -2     -- payments received by the master node
        WHEN 'lightning_outbound' THEN -3    -- payments sent by the master node
        WHEN 'routing_fees' THEN -4          -- routing fees paid by the master node
        WHEN 'operator_loss' THEN -5         -- money the operator lost
        WHEN 'payments_in_flight' THEN -6    -- reserves of outgoing payments not yet final
        WHEN 'rgb_onchain_inbound' THEN -7   -- RGB assets received on-chain by the master node
        ELSE vnode_unknown_account(p_name)
    END::bigint
$$;

-- Money functions answer a result code (ADR 0012), never an HTTP status or an error text:
--     code    'ok', 'pending' (a payment accepted, not final) or a refusal's code, each one in
--             vnode/errors.py's catalogue (a test reads every `code :=` of these files);
--     detail  a refusal's data-bearing message (amounts), or NULL for the catalogue's text;
--     result  a success's document, as the API shows it; NULL for a refusal.
-- Before that (migration 0012), they answered an HTTP status, refusals built into a body by
-- vnode_error, which is gone.
DROP FUNCTION IF EXISTS vnode_error(text, text);

-- Every timestamp vnode writes into a body or an event: UTC, always six decimals, 'Z'
-- (2026-11-26T10:00:00.000000Z). The Python side is vnode/domain/timestamps.py; a test checks
-- that both write the same string for the same instant. STABLE, as to_char is: then a call is
-- inlined into the calling statement and costs no more than writing to_char there.
CREATE OR REPLACE FUNCTION vnode_ts(p_ts timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(p_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

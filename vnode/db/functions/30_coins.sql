-- The coin guard: a coin is immutable and spent once. A file of its own because re-creating
-- the triggers locks user_utxos: an edit of another file must not do that.
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

-- Coins are immutable but for being spent once: amount, owner, asset, origin and outpoint of a
-- coin never change (the audit would catch it; the database refuses it).
CREATE OR REPLACE FUNCTION user_utxos_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'coin % cannot be deleted', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.spent_tx IS NOT NULL THEN
        RAISE EXCEPTION 'coin % is already spent by transaction %', OLD.id, OLD.spent_tx
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.spent_tx IS NULL OR (NEW.id, NEW.user_id, NEW.asset_id, NEW.amount, NEW.created_tx,
                                NEW.outpoint, NEW.created_at)
            IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.asset_id, OLD.amount, OLD.created_tx,
                              OLD.outpoint, OLD.created_at) THEN
        RAISE EXCEPTION 'coin % can only be spent, not changed', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

-- It fires only for an update it refuses: a plain spend (spent_tx from NULL to a value, nothing
-- else changed) does not call a plpgsql function for every coin.
DROP TRIGGER IF EXISTS user_utxos_guard ON user_utxos;
CREATE TRIGGER user_utxos_guard BEFORE UPDATE ON user_utxos
    FOR EACH ROW WHEN (
        OLD.spent_tx IS NOT NULL OR NEW.spent_tx IS NULL
        OR (NEW.id, NEW.user_id, NEW.asset_id, NEW.amount, NEW.created_tx, NEW.outpoint,
            NEW.created_at)
           IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.asset_id, OLD.amount, OLD.created_tx,
                             OLD.outpoint, OLD.created_at))
    EXECUTE FUNCTION user_utxos_guard();
DROP TRIGGER IF EXISTS user_utxos_no_delete ON user_utxos;
CREATE TRIGGER user_utxos_no_delete BEFORE DELETE ON user_utxos
    FOR EACH ROW EXECUTE FUNCTION user_utxos_guard();

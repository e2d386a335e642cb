-- Fewer index and trigger writes per movement (docs/PERFORMANCE.md), same rules enforced.

-- The UNIQUE (user_id, user_seq) constraint's index already serves these lookups.
DROP INDEX outbox_user_seq;

-- Nothing reads the journal by account on a hot path (history is ln_user_transactions; the
-- audit scans the whole journal), so these two indexes only cost writes.
DROP INDEX virtual_transactions_from;
DROP INDEX virtual_transactions_to;

-- The coin guard fires only for an update it refuses: a plain spend (spent_tx from NULL to a
-- value, nothing else changed) no longer calls a plpgsql function for every coin.
DROP TRIGGER user_utxos_guard ON user_utxos;
CREATE TRIGGER user_utxos_guard BEFORE UPDATE ON user_utxos
    FOR EACH ROW WHEN (
        OLD.spent_tx IS NOT NULL OR NEW.spent_tx IS NULL
        OR (NEW.id, NEW.user_id, NEW.asset_id, NEW.amount, NEW.created_tx, NEW.outpoint,
            NEW.created_at)
           IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.asset_id, OLD.amount, OLD.created_tx,
                             OLD.outpoint, OLD.created_at))
    EXECUTE FUNCTION user_utxos_guard();
CREATE TRIGGER user_utxos_no_delete BEFORE DELETE ON user_utxos
    FOR EACH ROW EXECUTE FUNCTION user_utxos_guard();

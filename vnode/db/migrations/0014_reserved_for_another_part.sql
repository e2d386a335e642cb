-- PLACEHOLDER, not to be merged: number 0014 belongs to another branch of issue 12. Migration
-- numbers must run without gaps (vnode/db/migrate.py), so this branch carries an empty 0014
-- to apply its own 0015. Drop this file when merging.
SELECT 1;

-- Placeholder for migration number 17, reserved for another branch (the console's is 18, and
-- the migrator refuses gaps). It does nothing; the branch that owns 17 replaces this file.
SELECT 1;

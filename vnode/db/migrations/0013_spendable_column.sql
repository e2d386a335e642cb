-- One meaning per name (issue 11, step 5): the API's `balance` is what a user holds, settled
-- (spendable + pending); this column was only the spendable part, the sum of unspent coins.
-- It is now called what it is. The functions that write it (vnode/db/functions/) use the new
-- name; vnode_user_balance, which read it, is vnode_user_spendable.
ALTER TABLE ln_user_balances RENAME COLUMN balance TO spendable;
ALTER TABLE ln_user_balances
    RENAME CONSTRAINT ln_user_balances_balance_check TO ln_user_balances_spendable_check;

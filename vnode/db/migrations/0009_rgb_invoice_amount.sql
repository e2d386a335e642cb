-- Security review 1, L6: an RGB invoice made without asset_amount could not be paid inside the
-- ledger. vnode_internal_pay compared the balance with NULL (no refusal) and then wrote an
-- ln_payments row with an asset and no amount, which its CHECK refuses: a 500 for every payer.

-- The API refuses to make such an invoice now (422 amount_fields), and the table says so too.
-- NOT VALID: invoices made before this migration stay as they are; the function below
-- refuses to pay them with a 422 instead.
ALTER TABLE ln_invoices ADD CONSTRAINT ln_invoices_rgb_asset_amount
    CHECK (asset_id = 'BTC' OR asset_amount IS NOT NULL) NOT VALID;

-- The refusal to pay such a legacy invoice inside the ledger (422 amount_required) is in
-- vnode_internal_pay, vnode/db/functions/50_payments.sql.

-- Money functions answer a result code, not an HTTP status (ADR 0012): the stored answers of
-- Idempotency-Keys follow. `code` is 'ok', 'pending' (a payment accepted, not yet final) or a
-- refusal's code from vnode/errors.py's catalogue, which alone maps codes to HTTP statuses and
-- texts; `detail` is a refusal's data-bearing message (amounts), `result` a success's document.
-- Rows written before keep their answer: the code of a refusal is read from its body.
ALTER TABLE idempotency_keys ADD COLUMN code text, ADD COLUMN detail text;
ALTER TABLE idempotency_keys ALTER COLUMN response DROP NOT NULL;
UPDATE idempotency_keys SET
    code = CASE WHEN status_code = 202 THEN 'pending'
                WHEN status_code < 400 THEN 'ok'
                ELSE coalesce(response -> 'error' ->> 'code', 'internal_error') END,
    detail = CASE WHEN status_code >= 400 THEN response -> 'error' ->> 'message' END,
    response = CASE WHEN status_code < 400 THEN response END;
ALTER TABLE idempotency_keys ALTER COLUMN code SET NOT NULL;
ALTER TABLE idempotency_keys DROP COLUMN status_code;
ALTER TABLE idempotency_keys RENAME COLUMN response TO result;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_result_of_success
    CHECK ((code IN ('ok', 'pending')) = (result IS NOT NULL));

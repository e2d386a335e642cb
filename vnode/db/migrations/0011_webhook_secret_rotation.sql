-- Webhook secret rotation (issue 11, step 3): after a rotation the replaced secret still signs
-- deliveries, beside the new one, until previous_secret_until; then it is ignored (the
-- dispatcher reads it only while the grace period lasts) and cleared by the next rotation.
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_until timestamptz,
    ADD COLUMN secret_rotated_at timestamptz,
    ADD CONSTRAINT webhook_endpoints_previous_secret_until
        CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL));

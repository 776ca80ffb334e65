-- The stuck-orders digest looks for the latest alert of its kind.
CREATE INDEX payverify_outbox_kind_created_idx ON payverify_outbox (kind, created_at);

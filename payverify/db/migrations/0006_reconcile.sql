-- Reconciliation (payverify reconcile). Per SumUp merchant account, where the incremental sync
-- stands: the next run asks for transactions created or changed since `changes_since`. Written only
-- after an account's history was read to the end in a run that was not a dry run.
CREATE TABLE payverify_reconcile_cursor (
    merchant_code  text PRIMARY KEY,
    changes_since  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Every discrepancy staff were told about, by its stable key, so a later run reports it as known and
-- alerts only for new ones. What was reported stays with it (the order may change later).
CREATE TABLE payverify_reconcile_reported (
    key               text PRIMARY KEY,
    kind              text NOT NULL,
    merchant_code     text NOT NULL,
    transaction_code  text,
    order_number      text,
    amount            numeric,
    currency          text,
    detail            text NOT NULL,
    run_id            text NOT NULL,
    reported_at       timestamptz NOT NULL DEFAULT now()
);
-- The metrics count them by kind.
CREATE INDEX payverify_reconcile_reported_kind_idx ON payverify_reconcile_reported (kind);

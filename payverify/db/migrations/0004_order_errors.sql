-- Orders whose verification errors run after run (an internal or database error, not a SumUp "no
-- answer"): how many attempts in a row, since when, and the last error (one line, never a secret).
-- An attempt that reaches a decision resets all three. Enough in a row and staff get one alert.
ALTER TABLE payverify_order_state
    ADD COLUMN consecutive_errors integer NOT NULL DEFAULT 0,
    ADD COLUMN first_error_at timestamptz,
    ADD COLUMN last_error text;
-- `payverify pending` lists erroring orders whatever their status without scanning the orders.
CREATE INDEX payverify_order_state_errors_idx ON payverify_order_state (order_id) WHERE consecutive_errors > 0;

-- Orders that errored in each run: the metrics' payverify_order_errors_total.
ALTER TABLE payverify_runs ADD COLUMN order_errors integer;

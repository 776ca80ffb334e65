-- Reads that must cost the same after years of history (the sweep's, the metrics').

-- The sweep finds failed/expired orders in the rescue window as the orders it checked within it.
CREATE INDEX payverify_order_state_checked_idx ON payverify_order_state (last_checked_at);
-- The metrics count failed mail (pending mail has payverify_outbox_due_idx).
CREATE INDEX payverify_outbox_failed_idx ON payverify_outbox (id) WHERE status = 'failed';
-- The metrics' last successful run of a command on any host (the daily reconciliation).
CREATE INDEX payverify_runs_succeeded_idx ON payverify_runs (command, finished_at) WHERE exit_status = 0;
-- The metrics' payment-to-mail time: the confirmations sent in the last hour.
CREATE INDEX payverify_outbox_sent_idx ON payverify_outbox (kind, sent_at)
    WHERE status = 'sent' AND dedup_key IS NOT NULL;

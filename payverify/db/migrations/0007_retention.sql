-- Retention (modes/retention.py): payverify's own rows older than PAYVERIFY_RETENTION_DAYS are deleted
-- in small batches, at most once an hour across all hosts.

-- Per housekeeping task, when its last pass began and who ran it. A pass claims the row in one
-- statement (taken only when the last pass is over an hour old), so two hosts never both run it.
CREATE TABLE payverify_housekeeping (
    task         text PRIMARY KEY,
    last_run_at  timestamptz NOT NULL,
    host         text NOT NULL,
    run_id       text NOT NULL
);

-- Runs that retention deleted, counted per host, command and exit status (NULL: never finished), so
-- the metrics' counters (payverify_runs_total, payverify_order_errors_total) never go down.
CREATE TABLE payverify_runs_pruned (
    host          text NOT NULL,
    command       text NOT NULL,
    exit_status   integer,
    runs          bigint NOT NULL,
    order_errors  bigint NOT NULL
);
CREATE UNIQUE INDEX payverify_runs_pruned_key ON payverify_runs_pruned (host, command, coalesce(exit_status, -1));

-- Each prune batch reads the oldest rows from where the last one stopped, through these, so a batch
-- costs the same on a table of millions and never re-reads what it kept.
CREATE INDEX payverify_audit_created_idx ON payverify_audit (created_at, id);
CREATE INDEX payverify_runs_started_idx ON payverify_runs (started_at, id);
-- Only mail that is done can go: failed and pending rows are not in it.
CREATE INDEX payverify_outbox_done_idx ON payverify_outbox (created_at, id) WHERE status IN ('sent', 'cancelled');

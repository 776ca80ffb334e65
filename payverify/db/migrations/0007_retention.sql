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

-- Runs counted per host, command and exit status (NULL: not finished, or killed), kept by a trigger
-- on payverify_runs as rows are written: the metrics' counters (payverify_runs_total,
-- payverify_order_errors_total) read a few rows here, not every run there ever was, and never go
-- down when retention deletes old runs.
CREATE TABLE payverify_run_counts (
    host          text NOT NULL,
    command       text NOT NULL,
    exit_status   integer,
    runs          bigint NOT NULL,
    order_errors  bigint NOT NULL
);
CREATE UNIQUE INDEX payverify_run_counts_key ON payverify_run_counts (host, command, coalesce(exit_status, -1));
INSERT INTO payverify_run_counts (host, command, exit_status, runs, order_errors)
SELECT host, command, exit_status, count(*), coalesce(sum(order_errors), 0)
FROM payverify_runs GROUP BY host, command, exit_status;

-- A run row moves from one count to another as it finishes (its exit status and errors set).
-- search_path FROM CURRENT: payverify's own schema, wherever the session's search_path points.
CREATE FUNCTION payverify_count_run() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.exit_status IS NOT DISTINCT FROM NEW.exit_status
           AND OLD.order_errors IS NOT DISTINCT FROM NEW.order_errors THEN
            RETURN NULL;
        END IF;
        UPDATE payverify_run_counts
        SET runs = runs - 1, order_errors = order_errors - coalesce(OLD.order_errors, 0)
        WHERE host = OLD.host AND command = OLD.command AND coalesce(exit_status, -1) = coalesce(OLD.exit_status, -1);
    END IF;
    INSERT INTO payverify_run_counts AS c (host, command, exit_status, runs, order_errors)
    VALUES (NEW.host, NEW.command, NEW.exit_status, 1, coalesce(NEW.order_errors, 0))
    ON CONFLICT (host, command, (coalesce(exit_status, -1)))
    DO UPDATE SET runs = c.runs + 1, order_errors = c.order_errors + EXCLUDED.order_errors;
    RETURN NULL;
END
$$;
CREATE TRIGGER payverify_runs_counted AFTER INSERT OR UPDATE OF exit_status, order_errors ON payverify_runs
    FOR EACH ROW EXECUTE FUNCTION payverify_count_run();

-- Each prune batch reads the oldest rows from where the last one stopped, through these, so a batch
-- costs the same on a table of millions and never re-reads what it kept.
CREATE INDEX payverify_audit_created_idx ON payverify_audit (created_at, id);
CREATE INDEX payverify_runs_started_idx ON payverify_runs (started_at, id);
-- Only mail that is done can go: failed and pending rows are not in it.
CREATE INDEX payverify_outbox_done_idx ON payverify_outbox (created_at, id) WHERE status IN ('sent', 'cancelled');

-- One row per run of a command (a sweep, mostly): when it started and ended, how it ended and what
-- it did. Feeds the metrics file (runs by exit status, the last run's outcomes and SumUp errors,
-- the last successful run). A row without finished_at is a run still going, or one that was killed.
CREATE TABLE payverify_runs (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL UNIQUE,
    host          text NOT NULL,
    command       text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    exit_status   integer,
    verified      integer,
    outcomes      jsonb,
    sumup_errors  jsonb,
    mail_sent     integer,
    mail_failed   integer
);
-- The metrics look up this host's latest runs of one command.
CREATE INDEX payverify_runs_host_idx ON payverify_runs (host, command, finished_at);

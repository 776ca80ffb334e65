-- Claims die with the process that made them, not when their lease lapses.
-- Every run-time process (sweep, watch, check, resend, reconcile) has a row here while it runs, keyed
-- by the lease owner string of its claims (host:pid:run_id); a thread of its own writes seen_at every
-- few seconds (db/presence.py) and the row goes on a clean exit, or when another payverify process on
-- the same machine finds its pid gone. An order lease or an outbox claim whose owner has no row seen
-- lately (killed, crashed, stopped) is free at once; the lease's own length stays as the backstop.
-- Plain rows, no session state: works through a transaction-pooling PgBouncer, where a server session
-- is shared by many clients.
CREATE TABLE payverify_processes (
    owner        text PRIMARY KEY,
    host         text NOT NULL,
    command      text NOT NULL,
    -- Where its pid means something: host name, kernel boot id and pid namespace (NULL: unknown).
    machine      text,
    pid          integer NOT NULL,
    pid_started  bigint,  -- the kernel's start time of that pid, so a reused pid is not taken for it
    started_at   timestamptz NOT NULL,
    seen_at      timestamptz NOT NULL
);
-- The claims read the live ones (seen lately); retention deletes the long silent ones.
CREATE INDEX payverify_processes_seen_idx ON payverify_processes (seen_at);
CREATE INDEX payverify_processes_machine_idx ON payverify_processes (machine);

-- Who holds an outbox row being sent (NULL when nobody: pushing next_attempt_at ahead is the lease).
ALTER TABLE payverify_outbox ADD COLUMN claimed_by text;
-- The rows being sent right now, a handful: a claim looks here first for those of a dead process.
CREATE INDEX payverify_outbox_claimed_idx ON payverify_outbox (claimed_by, next_attempt_at, id)
    WHERE status = 'pending' AND claimed_by IS NOT NULL;

-- payverify's own state. No foreign keys into the site's tables: a foreign key would add
-- triggers and locks to tables payverify must never alter.

-- Per-order bookkeeping: the lease that keeps overlapping runs apart, and when it was last checked.
CREATE TABLE payverify_order_state (
    order_id           bigint PRIMARY KEY,
    lease_owner        text,
    lease_expires_at   timestamptz,
    last_checked_at    timestamptz,
    checks             integer NOT NULL DEFAULT 0,
    last_http_status   integer,
    last_sumup_status  text,
    last_outcome       text,
    last_reason        text
);

-- One row per paid order whose tickets were issued: the primary key is the database's own
-- backstop against issuing an order's tickets twice.
CREATE TABLE payverify_fulfilment (
    order_id          bigint PRIMARY KEY,
    checkout_id       text NOT NULL,
    transaction_code  text,
    tickets_issued    integer NOT NULL,
    run_id            text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Mail and alerts, written in the same transaction as the outcome that calls for them.
CREATE TABLE payverify_outbox (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,
    dedup_key        text UNIQUE,
    order_id         bigint,
    recipients       text[] NOT NULL,
    context          jsonb NOT NULL,
    message_id       text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX payverify_outbox_due_idx ON payverify_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX payverify_outbox_order_idx ON payverify_outbox (order_id);

-- One row per verification attempt that reached a decision (never a secret in here).
CREATE TABLE payverify_audit (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL,
    host          text NOT NULL,
    command       text NOT NULL,
    order_id      bigint NOT NULL,
    order_number  text,
    checkout_id   text,
    http_status   integer,
    sumup_status  text,
    outcome       text NOT NULL,
    reason        text NOT NULL,
    duration_ms   integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payverify_audit_order_idx ON payverify_audit (order_id, created_at);

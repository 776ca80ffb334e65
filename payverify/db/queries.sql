-- The SQL payverify's modes run on the site's tables and its own, by name: each query under a
-- `-- name: NAME` header with one line saying what it does; longer notes are in "Notes" below. Loaded by
-- db/queries.py. Parameters are %(name)s only, so a literal % is %%.
--
-- The rest of payverify's SQL: catalog.sql (what doctor's rights and index checks and `db grants` read
-- of pg_catalog), migrations/ (payverify's own tables, applied by `db upgrade`), db/grants.py (the GRANT
-- statements `db grants` prints, made from names), db/indexes.py (the CREATE INDEX statements doctor
-- suggests, made from names), db/connection.py (the driver's own few statements: the transaction's
-- SET LOCAL settings, LISTEN, the search_path lookup). The demo's queries live in payverify_dev/
-- (seed.sql, history.sql, demo.sql).
--
-- `{awaiting}` in a query is the fragment of that name below, put in at load time: whether an order
-- `o` of orders_order awaits payment (models.AWAITING_PAYMENT: pending once it has a checkout, or
-- pending_verification). Written once here; tests/integration/test_awaiting_fragment.py holds it to
-- models.py. `{live_owners}`, `{held_orders}` and `{possible_owner}` are fragments too (a fragment may use another).
--
-- Notes:
-- - site_columns: The columns of the site's tables (or the views standing for them), to check the
--   contract first. From pg_catalog, not information_schema: information_schema shows a role only the
--   columns it has rights on, so under least privilege a NOT NULL ticket column payverify cannot fill
--   would be hidden. The columns are named and spelled as information_schema.columns has them.
-- - view_base_columns: When a site table is a view: the columns of the table(s) behind it, and whether
--   the view uses each. (A view reports every column nullable; an INSERT through it still fails on its
--   base's NOT NULL.) From the view rule's dependencies in pg_catalog: information_schema lists them
--   only to the owner.
-- - select_due_orders: The next batch of orders a sweep should verify, longest-waiting first. No lock
--   is taken here. Fresh orders are due every run; awaiting orders over 30 min old are checked less
--   often as they age (every age/8, at most every 30 min) unless replaying; failed/expired ones in the
--   rescue window at most every rescue_checked_before; with recheck_seconds (watch's housekeeping),
--   awaiting orders at most that often, never-checked ones once that old. Orders checked since this run
--   started, leased by another live process, or in flight (exclude) are left out: a lease of this
--   process (owner) not in flight was left by a lost connection, and a dead process's lease is free
--   (claim_order says why). due_total counts them all (before the LIMIT). The candidates are found
--   without reading history: awaiting orders through the site's status index; failed/expired ones in
--   the rescue window as the orders payverify checked within it (its own index on last_checked_at: a
--   settle is a check) and, for any it never saw, the orders newer than the newest one created before
--   the window (the primary key, walked back from the newest: ids grow with created_at). Going through
--   every failed or expired order there ever was is what this avoids (MATERIALIZED and looked up by id,
--   so the planner cannot fold it back into one scan).
-- - watch_new_orders: For `payverify watch`: orders that came back from SumUp (the site sets
--   pending_verification and updated_at then) that payverify has not read since, or that came back
--   within fast_seconds and whose last check (someone else's) got PENDING or no answer: either way the
--   return's fast schedule is due. Bounded by the status index and the last hour, so a poll every
--   second costs next to nothing.
-- - claim_order: Take the lease unless another live process holds it or, with with_seen (a sweep: the
--   order was selected, not noticed as watch's asks are), checked the order after we selected it. Free: no lease, a lapsed one, one whose owner was not seen alive lately
--   (payverify_processes: killed, crashed, stopped), or one of this very process (owner):
--   orders/lease.py lets a claim through only while no other thread of the process has the order, so
--   such a lease was left by a lost connection.
-- - record_check: After an attempt that reached a decision: release our lease (never another run's),
--   remember what SumUp said, and end any error streak. The check counts from when the order was read
--   (checked_at), so a customer's return while SumUp was being asked is still a return not asked about
--   (watch).
-- - insert_ticket: Every NOT NULL column is written here, as Django would (auto_now_add): the site's
--   tables have no database defaults. created_at is the database's clock, like every other time
--   payverify writes.
-- - insert_outbox: De-duplicated by key: an alert or mail already queued for this key is not queued
--   again. ticket_clock_started_at: set on the confirmation a settle queues (time to ticket starts
--   there).
-- - claim_outbox_row: Take the next due message; pushing next_attempt_at ahead is its lease while we
--   send it, claimed_by says whose it is. First a row this process claimed and could not give back
--   (left_behind: its connection was lost), then one whose claimant was not seen alive lately
--   (payverify_processes: killed, crashed, stopped; through payverify_outbox_claimed_idx, the few rows
--   being sent), then the next due one (through payverify_outbox_due_idx); each is looked at only when
--   those before it find none. While a sweep still verifies, only what it queued itself (created since
--   fresh_since): an older row may be for an order the sweep is about to settle otherwise (a late
--   payment cancels its "payment failed"). With order_id (check, resend): only that order's mail.
-- - mark_outbox_sent: The SMTP server has just accepted it: time to ticket ends now (NULL when its
--   start is unknown). Never negative: the start was at most the settle transaction's now(), and this
--   is a later one on the same clock. The rendering context (customer's name, items, amounts, an
--   alert's lists) is never read again: check reads the columns, resend renders from the order. Only
--   what names the message is kept.
-- - outbox_claim_held: Just before a message goes to the SMTP server: is the row still ours? A process
--   stopped for a while (SIGSTOP, a stall) may have lost it to another that sent it meanwhile; it must
--   not send it again.
-- - release_outbox_row: Not this message's failure (the run stopped before its turn, or the SMTP server
--   as a whole failed): due again at once, the attempt not counted.
-- - give_back_outbox_row: The SMTP server as a whole failed (refused, dropped, 421): due again at once,
--   the attempt not counted, and why it waits recorded for `check` and `pending`.
-- - pending_orders: The on-call view: orders awaiting verification or a person, with what payverify
--   last saw; plus failed/expired orders in the rescue window whose verification keeps erroring. Those
--   are found from the partial index on payverify_order_state (MATERIALIZED: a few rows, each looked up
--   by id), never by going through every failed or expired order there ever was.
-- - metrics_runs_by_exit_status: exit_status NULL: started and not (yet) finished, a run that is going
--   or was killed. order_errors: orders whose verification errored in those runs. From the counts a
--   trigger keeps (migration 0007): a few rows however many runs there were, and never fewer after
--   retention.
-- - metrics_time_to_ticket: Order confirmations the SMTP server accepted in the last window_minutes,
--   with their time to ticket: how many, their sum, and per upper bound (ascending) how many took at
--   most that long, so cumulative. Read from payverify_outbox_time_to_ticket_idx only (a time is set
--   only as a row is marked sent, so no status test is needed): the window bounds what is read, however
--   long the outbox's history.
-- - metrics_payment_to_mail: Payment verified -> confirmation accepted by the SMTP server, for
--   confirmations sent in the last hour. Only the confirmation queued by the settle (it has a dedup
--   key): a resend has none. The hour's rows come from payverify_outbox_sent_idx, their orders by id:
--   never the whole outbox.
-- - reconcile_orders_by_code: Orders naming any of these transaction codes, of an artist whose merchant
--   account this is. The codes are looked up first, on their own (MATERIALIZED, then by id): left to
--   itself the planner goes through the account's events and reads every order the account ever had.
--   With the site's index on sumup_transaction_code (doctor asks a reconciling site for it) that is a
--   page's worth of rows.
-- - reconcile_completed_since: The completed orders of one merchant account paid since then: the
--   orders' side of the totals, and the orders whose payment the history must have. Found by paid_at
--   first, as above (the site's index on paid_at, which doctor asks a reconciling site for, makes that
--   the window's orders).
-- - reconcile_open_orders_near: Whose payment might this be: not completed orders of the merchant with
--   that amount and currency, created in the hours before the payment (or just after: clocks differ),
--   with a checkout to ask. The site has no index on created_at, but ids grow with it: the window's
--   ends are found as ids by bisecting the primary key (for each end, the newest order created before
--   it: some 20 index probes a million orders, however old the payment), and only the orders between
--   them are read.
-- - reconcile_settleable_orders: The orders of one merchant account a sweep may still settle, with a
--   checkout to ask: awaiting payment (through the site's status index), or failed/expired and created
--   since the rescue window began (the orders newer than the newest one created before it: ids grow
--   with created_at). A young payment no completed order names waits only if one of these is its owner.
--   Read once per account and run: the sweep's own candidates, not a day's orders per payment.
-- - retention (prune_*_batch): A prune batch: the next `batch` rows older than the cutoff after
--   (after_at, after_id), walked through an index in order; of those, the ones retention may delete;
--   deleted unless dry_run. It returns how many it read, how many may go (a dry run's count), how many
--   went, and where the next batch starts. Kept however old, in every batch query: anything of an order
--   still awaiting verification or a person (`held`: the orders `payverify pending` lists: pending with
--   a checkout, pending_verification, requires_manual_review, or an open error streak). Every other
--   table is looked up only by key, for the batch's ids as an array (`= ANY(ARRAY(...))`), never
--   joined: a join may be planned as a scan of the whole table, once per batch.
-- - claim_housekeeping: The task's pass is ours unless one began less than every_seconds ago, on any
--   host. One statement: of two hosts claiming at once, the second waits for the first's row and then
--   finds it too recent.
-- - prune_outbox_batch: Only mail that is done (sent or cancelled; failed and pending rows stay),
--   through the partial index payverify_outbox_done_idx (hence the literal statuses). Also kept: an
--   alert of a held_kinds kind whose de-duplication key still holds back the next one (a reconnect
--   alert until the artist's credentials work again), so deleting it never sends that alert again.
-- - prune_runs_batch: Runs by when they started. Kept per host and command (`keepers`, found for the
--   batch's few hosts and commands through payverify_runs_host_idx): the latest finished run and the
--   latest successful one, which the metrics read (the last run, the last success, the last
--   reconciliation). An old unfinished run (killed) goes. The runs counted (payverify_run_counts) stay
--   counted.
-- - prune_silent_processes: Process rows not seen for a day: processes that were killed or crashed (a
--   clean exit deletes its own row). Until then `SELECT * FROM payverify_processes` shows what died,
--   and when. A handful of rows.
-- - process_seen: This process is alive: written when it starts and every few seconds after (a row
--   pruned or deleted while the process was stopped comes back).
-- - processes_on_machine: The other processes of this machine (same boot, same pid namespace) that
--   still count as alive: the kernel can say whether each still runs.

-- fragment: awaiting
-- Awaiting payment: a pending order once it has a checkout to ask about, or one back from SumUp.
((o.status = 'pending' AND o.sumup_checkout_id IS NOT NULL) OR o.status = 'pending_verification')

-- fragment: live_owners
-- The owners of the processes still alive (seen within alive_seconds): a lease or claim of any other owner is free.
ARRAY(SELECT p.owner FROM payverify_processes p WHERE p.seen_at > now() - make_interval(secs => %(alive_seconds)s))

-- fragment: held_orders
-- Of a prune batch's `candidates`, the orders whose rows stay: awaiting payment or a person, or erroring.
SELECT o.id AS order_id FROM orders_order o
    WHERE o.id = ANY(ARRAY(SELECT DISTINCT order_id FROM candidates WHERE order_id IS NOT NULL))
      AND ({awaiting} OR o.status = 'requires_manual_review')
    UNION
    SELECT s.order_id FROM payverify_order_state s
    WHERE s.order_id = ANY(ARRAY(SELECT DISTINCT order_id FROM candidates WHERE order_id IS NOT NULL))
      AND s.consecutive_errors > 0

-- fragment: possible_owner
-- An order that may own a payment (reconcile), with its artist: what reconcile asks its checkout with.
o.id, o.order_number, o.status, o.total, o.currency, a.sumup_merchant_code AS merchant_code,
       o.sumup_transaction_code AS transaction_code, o.paid_at, o.created_at, o.sumup_checkout_id AS checkout_id,
       (a.sumup_access_token IS NOT NULL OR a.sumup_refresh_token IS NOT NULL) AS artist_uses_oauth,
       a.id AS artist_id, a.name AS artist_name
FROM orders_order o
JOIN events_event e ON e.id = o.event_id
JOIN artists_artist a ON a.id = e.artist_id

-- name: take_migration_lock
-- Serialises `db upgrade` across hosts for the length of its transaction.
SELECT pg_advisory_xact_lock(726931001)

-- name: schema_version_table_exists
-- Whether payverify's tables were ever made (`db upgrade` has run).
SELECT to_regclass('payverify_schema_version') IS NOT NULL AS present

-- name: schema_version
-- The newest migration applied.
SELECT coalesce(max(version), 0) AS version FROM payverify_schema_version

-- name: create_schema_version_table
-- The table of applied migrations, made before the first one (`db upgrade`).
CREATE TABLE IF NOT EXISTS payverify_schema_version (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())

-- name: record_migration
-- A migration was applied.
INSERT INTO payverify_schema_version (version, name) VALUES (%(version)s, %(name)s)

-- name: current_schema
-- Where the site's tables are looked up: PAYVERIFY_SITE_SCHEMA, else the connection's search_path.
SELECT current_schema()::text AS schema

-- name: site_columns
-- The columns of the site's tables (or the views standing for them), as information_schema names them.
SELECT c.relname::text AS table_name, a.attname::text AS column_name,
       format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, NULL) AS data_type,
       CASE WHEN (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END)
                 IN ('varchar'::regtype, 'bpchar'::regtype)
                 AND (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) > 4
            THEN (CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) - 4 END AS max_length,
       CASE WHEN a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) THEN 'NO' ELSE 'YES' END AS is_nullable,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS column_default,
       CASE WHEN a.attidentity <> '' THEN 'YES' ELSE 'NO' END AS is_identity,
       CASE WHEN a.attgenerated <> '' THEN 'ALWAYS' ELSE 'NEVER' END AS is_generated
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  AND c.relkind IN ('r', 'p', 'v', 'f') AND c.relname = ANY(%(tables)s)

-- name: view_base_columns
-- When a site table is a view: the columns of the table(s) behind it, and whether the view uses each.
SELECT n.nspname::text || '.' || b.relname::text AS table_name, a.attname::text AS column_name,
       CASE WHEN a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) THEN 'NO' ELSE 'YES' END AS is_nullable,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS column_default,
       CASE WHEN a.attidentity <> '' THEN 'YES' ELSE 'NO' END AS is_identity,
       CASE WHEN a.attgenerated <> '' THEN 'ALWAYS' ELSE 'NEVER' END AS is_generated,
       EXISTS (SELECT 1 FROM pg_depend u
               WHERE u.classid = 'pg_rewrite'::regclass AND u.objid = r.oid
                 AND u.refclassid = 'pg_class'::regclass AND u.refobjid = b.oid
                 AND u.refobjsubid = a.attnum) AS used
FROM pg_class v
JOIN pg_rewrite r ON r.ev_class = v.oid AND r.rulename = '_RETURN'
JOIN (SELECT DISTINCT objid, refobjid FROM pg_depend
      WHERE classid = 'pg_rewrite'::regclass AND refclassid = 'pg_class'::regclass) dep
  ON dep.objid = r.oid AND dep.refobjid <> v.oid
JOIN pg_class b ON b.oid = dep.refobjid AND b.relkind IN ('r', 'p', 'v', 'f')
JOIN pg_namespace n ON n.oid = b.relnamespace
JOIN pg_attribute a ON a.attrelid = b.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = b.oid AND d.adnum = a.attnum
WHERE v.relkind = 'v' AND v.relname = %(view)s
  AND v.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())

-- name: backend_pid
-- The server process this transaction runs on (behind a pooler: not the one the connection was told).
SELECT pg_backend_pid() AS pid

-- name: session_settings
-- What this transaction runs with (doctor: the per-transaction settings hold behind a pooler too).
SELECT current_setting('statement_timeout') AS statement_timeout,
       current_setting('lock_timeout') AS lock_timeout, current_setting('TimeZone') AS timezone

-- name: now
-- The database's clock, which every time payverify writes comes from.
SELECT now() AS now

-- name: select_due_orders
-- The next batch of orders a sweep should verify, longest-waiting first, with how many are due.
WITH candidates AS MATERIALIZED (
    SELECT o.id FROM orders_order o
    WHERE {awaiting}
    UNION
    SELECT s.order_id FROM payverify_order_state s WHERE s.last_checked_at >= %(rescue_since)s
    UNION
    SELECT o.id FROM orders_order o
    WHERE o.id > coalesce((SELECT b.id FROM orders_order b WHERE b.created_at < %(rescue_since)s
                           ORDER BY b.id DESC LIMIT 1), 0)
      AND o.status IN ('failed', 'expired')
)
SELECT o.id, s.last_checked_at, count(*) OVER () AS due_total
FROM orders_order o
LEFT JOIN payverify_order_state s ON s.order_id = o.id
WHERE (
        ({awaiting}
         AND (NOT %(aging)s OR s.last_checked_at IS NULL OR o.created_at > now() - interval '30 minutes'
              OR s.last_checked_at <= now() - least(interval '30 minutes', (now() - o.created_at) / 8))
         AND (%(recheck_seconds)s = 0
              OR coalesce(s.last_checked_at, o.created_at) <= now() - make_interval(secs => %(recheck_seconds)s)))
     OR (o.status IN ('failed', 'expired')
         AND o.sumup_checkout_id IS NOT NULL
         AND o.created_at >= %(rescue_since)s
         AND (s.last_checked_at IS NULL OR s.last_checked_at < %(rescue_checked_before)s))
      )
  AND (s.lease_expires_at IS NULL OR s.lease_expires_at < now() OR s.lease_owner = %(owner)s
       OR s.lease_owner <> ALL({live_owners}))
  AND (s.last_checked_at IS NULL OR s.last_checked_at < %(run_started)s)
  AND o.id <> ALL(%(exclude)s::bigint[])
  AND o.id = ANY(ARRAY(SELECT id FROM candidates))
ORDER BY coalesce(s.last_checked_at, o.created_at), o.id
LIMIT %(limit)s

-- name: watch_new_orders
-- For watch: orders back from SumUp whose return's fast schedule is due.
SELECT o.id, extract(epoch FROM now() - o.updated_at)::float8 AS since_return
FROM orders_order o
LEFT JOIN payverify_order_state s ON s.order_id = o.id
WHERE o.status = 'pending_verification'
  AND o.updated_at > now() - interval '1 hour'
  AND (s.last_checked_at IS NULL OR s.last_checked_at < o.updated_at
       OR (o.updated_at > now() - make_interval(secs => %(fast_seconds)s)
           AND coalesce(s.last_sumup_status, 'PENDING') = 'PENDING'))
  AND (s.lease_expires_at IS NULL OR s.lease_expires_at < now()
       OR s.lease_owner <> ALL({live_owners}))
  AND o.id <> ALL(%(exclude)s::bigint[])
ORDER BY o.updated_at, o.id
LIMIT %(limit)s

-- name: ensure_order_state
-- Give the order its payverify_order_state row, so it can be leased.
INSERT INTO payverify_order_state (order_id) VALUES (%(order_id)s) ON CONFLICT (order_id) DO NOTHING

-- name: claim_order
-- Take the lease unless another live process holds it or (when selected: with_seen) checked the order since.
UPDATE payverify_order_state
SET lease_owner = %(owner)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE order_id = (
    SELECT order_id FROM payverify_order_state
    WHERE order_id = %(order_id)s
      AND (lease_expires_at IS NULL OR lease_expires_at < now() OR lease_owner = %(owner)s
           OR lease_owner <> ALL({live_owners}))
      AND (NOT %(with_seen)s OR last_checked_at IS NOT DISTINCT FROM %(seen_last_checked_at)s)
    FOR UPDATE SKIP LOCKED)
RETURNING order_id

-- name: record_check
-- After an attempt that reached a decision: release our lease, keep SumUp's answer, end any error streak.
INSERT INTO payverify_order_state AS s
    (order_id, last_checked_at, checks, last_http_status, last_sumup_status, last_outcome, last_reason)
VALUES (%(order_id)s, coalesce(%(checked_at)s, now()), 1, %(http_status)s, %(sumup_status)s, %(outcome)s,
        %(reason)s)
ON CONFLICT (order_id) DO UPDATE
SET lease_owner = CASE WHEN s.lease_owner = %(owner)s THEN NULL ELSE s.lease_owner END,
    lease_expires_at = CASE WHEN s.lease_owner = %(owner)s THEN NULL ELSE s.lease_expires_at END,
    last_checked_at = coalesce(%(checked_at)s, now()), checks = s.checks + 1,
    last_http_status = EXCLUDED.last_http_status, last_sumup_status = EXCLUDED.last_sumup_status,
    last_outcome = EXCLUDED.last_outcome, last_reason = EXCLUDED.last_reason,
    consecutive_errors = 0, first_error_at = NULL, last_error = NULL

-- name: record_error_check
-- After an attempt that errored before a decision: release our lease; the streak counts this run once.
INSERT INTO payverify_order_state AS s
    (order_id, last_checked_at, checks, last_outcome, last_reason, consecutive_errors, first_error_at, last_error)
VALUES (%(order_id)s, now(), 1, %(outcome)s, %(reason)s, 1, now(), %(reason)s)
ON CONFLICT (order_id) DO UPDATE
SET lease_owner = CASE WHEN s.lease_owner = %(owner)s THEN NULL ELSE s.lease_owner END,
    lease_expires_at = CASE WHEN s.lease_owner = %(owner)s THEN NULL ELSE s.lease_expires_at END,
    last_checked_at = now(), checks = s.checks + 1,
    last_http_status = NULL, last_sumup_status = NULL,
    last_outcome = EXCLUDED.last_outcome, last_reason = EXCLUDED.last_reason,
    consecutive_errors = s.consecutive_errors + CASE
        WHEN s.consecutive_errors > 0 AND EXISTS (
            SELECT 1 FROM payverify_audit a
            WHERE a.order_id = s.order_id AND a.created_at >= s.first_error_at
              AND a.run_id = %(run_id)s AND a.outcome = 'error') THEN 0
        ELSE 1 END,
    first_error_at = coalesce(s.first_error_at, now()), last_error = EXCLUDED.last_error
RETURNING consecutive_errors, first_error_at

-- name: load_order
-- The order with what the decision needs of its event and artist; read_at: when it was read.
SELECT now() AS read_at, o.id, o.order_number, o.status, o.email, o.first_name, o.last_name, o.total, o.currency,
       o.sumup_checkout_id, o.created_at, o.updated_at, o.event_id,
       e.title AS event_title, e.venue AS event_venue, e.starts_at AS event_starts_at,
       e.ends_at AS event_ends_at,
       a.id AS artist_id, a.name AS artist_name, a.sumup_merchant_code AS artist_merchant_code,
       (a.sumup_access_token IS NOT NULL OR a.sumup_refresh_token IS NOT NULL) AS artist_uses_oauth
FROM orders_order o
JOIN events_event e ON e.id = o.event_id
JOIN artists_artist a ON a.id = e.artist_id
WHERE o.id = %(order_id)s

-- name: find_order_id_by_number
-- An order by its number (check, resend).
SELECT id FROM orders_order WHERE order_number = %(order_number)s

-- name: find_order_id_by_id
-- An order by its id (check, resend).
SELECT id FROM orders_order WHERE id = %(order_id)s

-- name: order_number_by_id
-- For an order that errored: its number even when the whole order cannot be loaded.
SELECT order_number FROM orders_order WHERE id = %(order_id)s

-- name: load_order_items
-- The order's items with their ticket types' names.
SELECT i.id, i.ticket_type_id, t.name AS ticket_type_name, i.quantity, i.unit_price
FROM orders_orderitem i JOIN events_tickettype t ON t.id = i.ticket_type_id
WHERE i.order_id = %(order_id)s
ORDER BY i.id

-- name: settle_order
-- The guard: only if the order is still as we saw it. Must touch exactly one row.
UPDATE orders_order
SET status = %(new_status)s,
    updated_at = now(),
    paid_at = CASE WHEN %(paid)s THEN now() ELSE paid_at END,
    sumup_transaction_code = CASE WHEN %(paid)s THEN %(transaction_code)s ELSE sumup_transaction_code END
WHERE id = %(order_id)s AND status = %(seen_status)s AND sumup_checkout_id = %(seen_checkout_id)s

-- name: insert_fulfilment
-- The order's fulfilment: the database's backstop against issuing its tickets twice.
INSERT INTO payverify_fulfilment (order_id, checkout_id, transaction_code, tickets_issued, run_id)
VALUES (%(order_id)s, %(checkout_id)s, %(transaction_code)s, %(tickets_issued)s, %(run_id)s)

-- name: insert_ticket
-- One ticket, every NOT NULL column written as Django would (the site's tables have no defaults).
INSERT INTO tickets_ticket (order_id, order_item_id, event_id, ticket_type_id, code, holder_name, status,
                            created_at, checked_in_at)
VALUES (%(order_id)s, %(order_item_id)s, %(event_id)s, %(ticket_type_id)s, %(code)s, %(holder_name)s, 'valid',
        now(), NULL)

-- name: insert_outbox
-- Queue a mail or alert, unless one with this de-duplication key is already queued.
INSERT INTO payverify_outbox (kind, dedup_key, order_id, recipients, context, message_id, ticket_clock_started_at)
VALUES (%(kind)s, %(dedup_key)s, %(order_id)s, %(recipients)s, %(context)s::jsonb, %(message_id)s,
        %(ticket_clock_started_at)s)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id

-- name: rearm_alert
-- The condition behind an alert is over: keep the row (history) but free its key for the next time.
UPDATE payverify_outbox SET dedup_key = NULL WHERE dedup_key = %(dedup_key)s

-- name: insert_audit
-- One line of the audit trail: what was asked about an order, and what came of it.
INSERT INTO payverify_audit (run_id, host, command, order_id, order_number, checkout_id, http_status,
                             sumup_status, outcome, reason, duration_ms)
VALUES (%(run_id)s, %(host)s, %(command)s, %(order_id)s, %(order_number)s, %(checkout_id)s,
        %(http_status)s, %(sumup_status)s, %(outcome)s, %(reason)s, %(duration_ms)s)

-- name: lock_artist_tokens
-- Token refresh happens under the artist's row lock, so two processes never refresh at once.
SELECT id, name, sumup_access_token, sumup_refresh_token, sumup_token_expires_at
FROM artists_artist WHERE id = %(artist_id)s FOR UPDATE

-- name: read_artist_tokens
-- An artist's SumUp tokens, without a lock.
SELECT id, name, sumup_access_token, sumup_refresh_token, sumup_token_expires_at
FROM artists_artist WHERE id = %(artist_id)s

-- name: store_artist_tokens
-- Store an artist's rotated token pair after a refresh.
UPDATE artists_artist
SET sumup_access_token = %(access_token)s, sumup_refresh_token = %(refresh_token)s,
    sumup_token_expires_at = %(expires_at)s
WHERE id = %(artist_id)s

-- name: recent_audit
-- An order's latest audit lines, newest first (check).
SELECT run_id, host, command, checkout_id, http_status, sumup_status, outcome, reason, duration_ms, created_at
FROM payverify_audit WHERE order_id = %(order_id)s ORDER BY created_at DESC, id DESC LIMIT %(limit)s

-- name: order_outbox
-- An order's mail, oldest first (check).
SELECT kind, recipients, status, attempts, created_at, sent_at, last_error, ticket_clock_started_at,
       time_to_ticket_seconds
FROM payverify_outbox WHERE order_id = %(order_id)s ORDER BY id

-- name: claim_outbox_row
-- Take the next due message: ours left behind first, then one a dead claimant held, then the next due.
UPDATE payverify_outbox
SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => %(lease_seconds)s),
    claimed_by = %(owner)s
WHERE id = coalesce(
    (SELECT id FROM payverify_outbox
     WHERE id = ANY(%(left_behind)s::bigint[]) AND status = 'pending' AND claimed_by = %(owner)s
       AND (%(fresh_since)s::timestamptz IS NULL OR created_at >= %(fresh_since)s::timestamptz)
       AND (%(order_id)s::bigint IS NULL OR order_id = %(order_id)s::bigint)
     LIMIT 1
     FOR UPDATE SKIP LOCKED),
    (SELECT id FROM payverify_outbox
     WHERE status = 'pending' AND claimed_by IS NOT NULL
       AND claimed_by <> ALL({live_owners})
       AND (%(fresh_since)s::timestamptz IS NULL OR created_at >= %(fresh_since)s::timestamptz)
       AND (%(order_id)s::bigint IS NULL OR order_id = %(order_id)s::bigint)
     ORDER BY claimed_by, next_attempt_at, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED),
    (SELECT id FROM payverify_outbox
     WHERE status = 'pending' AND next_attempt_at <= now()
       AND (%(fresh_since)s::timestamptz IS NULL OR created_at >= %(fresh_since)s::timestamptz)
       AND (%(order_id)s::bigint IS NULL OR order_id = %(order_id)s::bigint)
     ORDER BY next_attempt_at, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED))
RETURNING id, kind, order_id, recipients, context, message_id, attempts, created_at,
          created_at < now() - %(give_up_hours)s * interval '1 hour' AS too_old

-- name: cancel_pending_mail
-- No longer true (the order was paid): cancel its pending mail of this kind, context slimmed.
UPDATE payverify_outbox SET status = 'cancelled', last_error = 'no longer true: the order was paid',
    context = jsonb_strip_nulls(jsonb_build_object('order_id', context->'order_id',
                                                   'order_number', context->'order_number',
                                                   'artist', context->'artist'))
WHERE order_id = %(order_id)s AND kind = %(kind)s AND status = 'pending'

-- name: mark_outbox_sent
-- The SMTP server has just accepted it: time to ticket ends now; only what names the message is kept.
UPDATE payverify_outbox
SET status = 'sent', sent_at = now(), last_error = %(note)s, claimed_by = NULL,
    time_to_ticket_seconds = extract(epoch FROM now() - ticket_clock_started_at),
    context = jsonb_strip_nulls(jsonb_build_object('order_id', context->'order_id',
                                                   'order_number', context->'order_number',
                                                   'artist', context->'artist'))
WHERE id = %(id)s

-- name: outbox_claim_held
-- Just before a message goes to the SMTP server: is the row still ours?
SELECT 1 AS held FROM payverify_outbox WHERE id = %(id)s AND status = 'pending' AND claimed_by = %(owner)s

-- name: mark_outbox_retry
-- This message failed: due again after the delay, with why.
UPDATE payverify_outbox
SET next_attempt_at = now() + make_interval(secs => %(delay_seconds)s), last_error = %(error)s, claimed_by = NULL
WHERE id = %(id)s

-- name: release_outbox_row
-- Not this message's failure (the run stopped before its turn): due again at once, the attempt not counted.
UPDATE payverify_outbox SET next_attempt_at = now(), attempts = attempts - 1, claimed_by = NULL WHERE id = %(id)s

-- name: give_back_outbox_row
-- The SMTP server as a whole failed: due again at once, the attempt not counted, why recorded.
UPDATE payverify_outbox SET next_attempt_at = now(), attempts = attempts - 1, last_error = %(error)s,
    claimed_by = NULL
WHERE id = %(id)s

-- name: mark_outbox_failed
-- This message will not be sent: given up, with why.
UPDATE payverify_outbox SET status = 'failed', last_error = %(error)s, claimed_by = NULL WHERE id = %(id)s

-- name: order_tickets
-- An order's tickets, for its confirmation.
SELECT t.code, tt.name AS ticket_type, t.holder_name
FROM tickets_ticket t JOIN events_tickettype tt ON tt.id = t.ticket_type_id
WHERE t.order_id = %(order_id)s
ORDER BY t.id

-- name: outbox_backlog
-- How many messages wait and how many failed, each count through its own partial index.
SELECT (SELECT count(*) FROM payverify_outbox WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM payverify_outbox WHERE status = 'failed') AS failed

-- name: take_digest_lock
-- Serialises the stuck-orders digest across hosts for the length of its transaction.
SELECT pg_advisory_xact_lock(726931002)

-- name: recent_alert_of_kind
-- Whether an alert of this kind was queued in the last minutes.
SELECT 1 AS found FROM payverify_outbox
WHERE kind = %(kind)s AND created_at > now() - %(minutes)s * interval '1 minute'
LIMIT 1

-- name: stuck_orders
-- Orders the site marked pending_verification that are still there after the stuck threshold.
SELECT o.id, o.order_number, o.created_at, o.updated_at,
       floor(extract(epoch FROM now() - o.updated_at) / 60)::int AS stuck_minutes,
       s.last_checked_at, s.checks, s.last_http_status, s.last_sumup_status, s.last_outcome, s.last_reason
FROM orders_order o LEFT JOIN payverify_order_state s ON s.order_id = o.id
WHERE o.status = 'pending_verification' AND o.updated_at < now() - %(minutes)s * interval '1 minute'
ORDER BY o.updated_at
LIMIT %(limit)s

-- name: outbox_row_state
-- One message's status, last error and attempts.
SELECT status, last_error, attempts FROM payverify_outbox WHERE id = %(id)s

-- name: pending_orders
-- The on-call view: orders awaiting verification or a person, or erroring in the rescue window.
WITH erroring AS MATERIALIZED (
    SELECT order_id FROM payverify_order_state WHERE consecutive_errors > 0 AND NOT %(stuck)s
), listed AS (
    SELECT o.id FROM orders_order o
    WHERE ({awaiting} OR o.status = 'requires_manual_review')
      AND (NOT %(stuck)s
           OR (o.status = 'pending_verification' AND o.updated_at < now() - %(stuck_minutes)s * interval '1 minute'))
    UNION ALL
    SELECT o.id FROM erroring JOIN orders_order o ON o.id = erroring.order_id
    WHERE o.status IN ('failed', 'expired') AND o.created_at >= now() - %(rescue_hours)s * interval '1 hour'
)
SELECT o.id, o.order_number, o.status, o.created_at, o.updated_at,
       floor(extract(epoch FROM now() - o.created_at))::bigint AS age_seconds,
       a.name AS artist_name, s.last_checked_at, coalesce(s.checks, 0) AS checks, s.last_http_status,
       s.last_sumup_status, s.last_outcome, s.last_reason,
       coalesce(s.consecutive_errors, 0) AS consecutive_errors, s.first_error_at, s.last_error,
       (SELECT count(*) FROM payverify_outbox m WHERE m.order_id = o.id AND m.status = 'pending') AS mail_queued,
       (SELECT count(*) FROM payverify_outbox m WHERE m.order_id = o.id AND m.status = 'failed') AS mail_failed
FROM listed
JOIN orders_order o ON o.id = listed.id
JOIN events_event e ON e.id = o.event_id
JOIN artists_artist a ON a.id = e.artist_id
LEFT JOIN payverify_order_state s ON s.order_id = o.id
ORDER BY o.created_at, o.id
LIMIT %(limit)s

-- name: insert_run
-- A run begins. Recording it twice (a retried call) changes nothing.
INSERT INTO payverify_runs (run_id, host, command) VALUES (%(run_id)s, %(host)s, %(command)s)
ON CONFLICT (run_id) DO NOTHING

-- name: finish_run
-- A run ends: its exit status and what it did.
UPDATE payverify_runs
SET finished_at = now(), exit_status = %(exit_status)s, verified = %(verified)s,
    outcomes = %(outcomes)s::jsonb, sumup_errors = %(sumup_errors)s::jsonb,
    mail_sent = %(mail_sent)s, mail_failed = %(mail_failed)s, order_errors = %(order_errors)s
WHERE run_id = %(run_id)s

-- name: metrics_runs_by_exit_status
-- Runs of this host and command by exit status (NULL: going or killed), from payverify_run_counts.
SELECT exit_status, runs AS n, order_errors
FROM payverify_run_counts WHERE host = %(host)s AND command = %(command)s AND runs > 0
ORDER BY exit_status NULLS LAST

-- name: metrics_last_run
-- The last finished run of this host and command.
SELECT run_id, started_at, finished_at, exit_status, verified, outcomes, sumup_errors,
       extract(epoch FROM finished_at) AS finished_epoch
FROM payverify_runs
WHERE host = %(host)s AND command = %(command)s AND finished_at IS NOT NULL
ORDER BY finished_at DESC, id DESC
LIMIT 1

-- name: metrics_last_success
-- When the last successful run of this host and command finished.
SELECT extract(epoch FROM max(finished_at)) AS finished_epoch
FROM payverify_runs
WHERE host = %(host)s AND command = %(command)s AND finished_at IS NOT NULL AND exit_status = 0

-- name: metrics_oldest_due_order
-- Age of the oldest order a sweep should settle (0 when there is none).
SELECT coalesce(extract(epoch FROM now() - min(o.created_at)), 0) AS age_seconds
FROM orders_order o
WHERE {awaiting}

-- name: metrics_time_to_ticket
-- Confirmations accepted in the last window_minutes: count, sum and cumulative counts per bound.
WITH recent AS MATERIALIZED (
    SELECT time_to_ticket_seconds AS seconds FROM payverify_outbox
    WHERE kind = %(kind)s AND time_to_ticket_seconds IS NOT NULL
      AND sent_at > now() - %(window_minutes)s * interval '1 minute'
)
SELECT (SELECT count(*) FROM recent) AS n,
       (SELECT coalesce(sum(seconds), 0) FROM recent) AS total_seconds,
       ARRAY(SELECT count(r.seconds)
             FROM unnest(%(bounds)s::float8[]) WITH ORDINALITY AS b(le, i)
             LEFT JOIN recent r ON r.seconds <= b.le
             GROUP BY b.i ORDER BY b.i) AS at_most

-- name: metrics_payment_to_mail
-- Payment verified to confirmation accepted, for settle confirmations sent in the last hour.
WITH recent AS MATERIALIZED (
    SELECT order_id, sent_at FROM payverify_outbox
    WHERE kind = %(kind)s AND status = 'sent' AND dedup_key IS NOT NULL AND sent_at > now() - interval '1 hour'
)
SELECT count(*) AS n,
       coalesce(sum(greatest(0, extract(epoch FROM r.sent_at - o.paid_at))), 0) AS total_seconds,
       coalesce(max(greatest(0, extract(epoch FROM r.sent_at - o.paid_at))), 0) AS max_seconds
FROM recent r
JOIN orders_order o ON o.id = r.order_id
WHERE o.paid_at IS NOT NULL

-- name: doctor_oauth_artists
-- The artists connected with OAuth, for doctor's check that each one's token works.
SELECT id, name, sumup_access_token, sumup_refresh_token IS NOT NULL AS refreshable
FROM artists_artist
WHERE sumup_access_token IS NOT NULL OR sumup_refresh_token IS NOT NULL ORDER BY id

-- ---- reconciliation (payverify reconcile) ----------------------------------------------------------

-- name: reconcile_artist_accounts
-- The artists whose own SumUp account payverify can read: connected with OAuth, merchant code known.
SELECT id, name, sumup_merchant_code AS merchant_code
FROM artists_artist
WHERE (sumup_access_token IS NOT NULL OR sumup_refresh_token IS NOT NULL)
  AND NULLIF(btrim(sumup_merchant_code), '') IS NOT NULL
ORDER BY id

-- name: reconcile_orders_by_code
-- Orders naming any of these transaction codes, of an artist whose merchant account this is.
WITH named AS MATERIALIZED (
    SELECT o.id FROM orders_order o WHERE o.sumup_transaction_code = ANY(%(codes)s)
)
SELECT o.id, o.order_number, o.status, o.total, o.currency, a.sumup_merchant_code AS merchant_code,
       o.sumup_transaction_code AS transaction_code, o.paid_at, o.created_at
FROM orders_order o
JOIN events_event e ON e.id = o.event_id
JOIN artists_artist a ON a.id = e.artist_id
WHERE o.id = ANY(ARRAY(SELECT id FROM named)) AND a.sumup_merchant_code = %(merchant_code)s

-- name: reconcile_completed_since
-- The completed orders of one merchant account paid since then.
WITH paid AS MATERIALIZED (
    SELECT o.id FROM orders_order o WHERE o.paid_at >= %(since)s AND o.status = 'completed'
)
SELECT o.id, o.order_number, o.status, o.total, o.currency, a.sumup_merchant_code AS merchant_code,
       o.sumup_transaction_code AS transaction_code, o.paid_at, o.created_at
FROM orders_order o
JOIN events_event e ON e.id = o.event_id
JOIN artists_artist a ON a.id = e.artist_id
WHERE o.id = ANY(ARRAY(SELECT id FROM paid)) AND a.sumup_merchant_code = %(merchant_code)s
ORDER BY o.paid_at, o.id

-- name: reconcile_open_orders_near
-- Whose payment might this be: open orders of the merchant with that amount, created near it.
WITH RECURSIVE bisect(target, lo, hi) AS (
    -- lo: an order created before target (0: none); no order from hi on was.
    SELECT t, 0::bigint, (SELECT coalesce(max(id), 0) FROM orders_order)::bigint + 1
    FROM unnest(ARRAY[%(paid_at)s - interval '26 hours', %(paid_at)s + interval '1 hour']) AS t
  UNION ALL
    SELECT b.target,
           CASE WHEN m.id IS NOT NULL AND m.created_at < b.target THEN m.id ELSE b.lo END,
           CASE WHEN m.id IS NULL THEN (b.lo + b.hi) / 2 WHEN m.created_at >= b.target THEN m.id ELSE b.hi END
    FROM bisect b
    LEFT JOIN LATERAL (SELECT o.id, o.created_at FROM orders_order o
                       WHERE o.id >= (b.lo + b.hi) / 2 AND o.id < b.hi ORDER BY o.id LIMIT 1) m ON true
    WHERE b.hi - b.lo > 1
),
window_ids AS MATERIALIZED (
    SELECT min(lo) AS after, max(lo) AS through FROM bisect WHERE hi - lo <= 1
),
near AS MATERIALIZED (
    SELECT o.id FROM orders_order o, window_ids w
    WHERE o.id > w.after AND o.id <= w.through
      AND o.created_at BETWEEN %(paid_at)s - interval '26 hours' AND %(paid_at)s + interval '1 hour'
)
SELECT {possible_owner}
WHERE o.id = ANY(ARRAY(SELECT id FROM near))
  AND o.status <> 'completed' AND o.total = %(amount)s AND upper(o.currency) = upper(%(currency)s)
  AND a.sumup_merchant_code = %(merchant_code)s AND NULLIF(btrim(o.sumup_checkout_id), '') IS NOT NULL
ORDER BY abs(extract(epoch FROM o.created_at - %(paid_at)s)), o.id
LIMIT %(limit)s

-- name: reconcile_settleable_orders
-- The orders of one merchant account a sweep may still settle, with a checkout to ask.
WITH candidates AS MATERIALIZED (
    SELECT o.id FROM orders_order o WHERE {awaiting}
    UNION
    SELECT o.id FROM orders_order o
    WHERE o.id > coalesce((SELECT b.id FROM orders_order b WHERE b.created_at < %(rescue_since)s
                           ORDER BY b.id DESC LIMIT 1), 0)
      AND o.status IN ('failed', 'expired')
)
SELECT {possible_owner}
WHERE o.id = ANY(ARRAY(SELECT id FROM candidates))
  AND ({awaiting} OR o.created_at >= %(rescue_since)s)
  AND a.sumup_merchant_code = %(merchant_code)s AND NULLIF(btrim(o.sumup_checkout_id), '') IS NOT NULL
ORDER BY o.id

-- name: reconcile_cursor
-- Where the merchant account's history was read up to.
SELECT changes_since FROM payverify_reconcile_cursor WHERE merchant_code = %(merchant_code)s

-- name: reconcile_store_cursor
-- Remember where the merchant account's history was read up to.
INSERT INTO payverify_reconcile_cursor (merchant_code, changes_since, updated_at)
VALUES (%(merchant_code)s, %(changes_since)s, now())
ON CONFLICT (merchant_code) DO UPDATE SET changes_since = EXCLUDED.changes_since, updated_at = now()

-- name: reconcile_report
-- Record a finding; returns the key only when it is new: what the run's alert lists.
INSERT INTO payverify_reconcile_reported (key, kind, merchant_code, transaction_code, order_number, amount,
                                          currency, detail, run_id)
VALUES (%(key)s, %(kind)s, %(merchant_code)s, %(transaction_code)s, %(order_number)s, %(amount)s,
        %(currency)s, %(detail)s, %(run_id)s)
ON CONFLICT (key) DO NOTHING
RETURNING key

-- name: reconcile_reported_by_kind
-- Findings ever reported, by kind (metrics).
SELECT kind, count(*) AS n FROM payverify_reconcile_reported GROUP BY kind

-- name: metrics_last_reconcile
-- The last reconciliation that read every account, on any host (it runs on one, daily).
SELECT extract(epoch FROM max(finished_at)) AS finished_epoch
FROM payverify_runs
WHERE command = 'reconcile' AND finished_at IS NOT NULL AND exit_status = 0

-- name: reconcile_known_keys
-- Of these findings' keys, the ones already reported.
SELECT key FROM payverify_reconcile_reported WHERE key = ANY(%(keys)s)

-- ---- retention (modes/retention.py) ------------------------------------------------------------------

-- name: retention_cutoff
-- The time before which retention deletes.
SELECT now() - make_interval(days => %(days)s) AS cutoff

-- name: claim_housekeeping
-- The task's pass is ours unless one began less than every_seconds ago, on any host.
INSERT INTO payverify_housekeeping AS h (task, last_run_at, host, run_id)
VALUES (%(task)s, now(), %(host)s, %(run_id)s)
ON CONFLICT (task) DO UPDATE SET last_run_at = now(), host = EXCLUDED.host, run_id = EXCLUDED.run_id
WHERE h.last_run_at <= now() - make_interval(secs => %(every_seconds)s)
RETURNING task

-- name: prune_audit_batch
-- A prune batch of audit lines; lines of a held order stay.
WITH candidates AS MATERIALIZED (
    SELECT id, order_id, created_at FROM payverify_audit
    WHERE created_at < %(cutoff)s AND (created_at, id) > (%(after_at)s, %(after_id)s)
    ORDER BY created_at, id
    LIMIT %(batch)s
), held AS MATERIALIZED ({held_orders}), doomed AS MATERIALIZED (
    SELECT c.id FROM candidates c WHERE c.order_id <> ALL(ARRAY(SELECT order_id FROM held))
), deleted AS (
    DELETE FROM payverify_audit WHERE id = ANY(ARRAY(SELECT id FROM doomed)) AND NOT %(dry_run)s RETURNING id
)
SELECT (SELECT count(*) FROM candidates) AS examined, (SELECT count(*) FROM doomed) AS eligible,
       (SELECT count(*) FROM deleted) AS deleted,
       (SELECT created_at FROM candidates ORDER BY created_at DESC, id DESC LIMIT 1) AS last_at,
       (SELECT id FROM candidates ORDER BY created_at DESC, id DESC LIMIT 1) AS last_id

-- name: prune_outbox_batch
-- A prune batch of done mail (sent or cancelled); mail of a held order, and live alert keys, stay.
WITH candidates AS MATERIALIZED (
    SELECT id, order_id, kind, dedup_key, created_at FROM payverify_outbox
    WHERE status IN ('sent', 'cancelled') AND created_at < %(cutoff)s AND (created_at, id) > (%(after_at)s, %(after_id)s)
    ORDER BY created_at, id
    LIMIT %(batch)s
), held AS MATERIALIZED ({held_orders}), doomed AS MATERIALIZED (
    SELECT c.id FROM candidates c
    WHERE NOT (c.dedup_key IS NOT NULL AND c.kind = ANY(%(held_kinds)s::text[]))
      AND (c.order_id IS NULL OR c.order_id <> ALL(ARRAY(SELECT order_id FROM held)))
), deleted AS (
    DELETE FROM payverify_outbox
    WHERE id = ANY(ARRAY(SELECT id FROM doomed)) AND status IN ('sent', 'cancelled') AND NOT %(dry_run)s
    RETURNING id
)
SELECT (SELECT count(*) FROM candidates) AS examined, (SELECT count(*) FROM doomed) AS eligible,
       (SELECT count(*) FROM deleted) AS deleted,
       (SELECT created_at FROM candidates ORDER BY created_at DESC, id DESC LIMIT 1) AS last_at,
       (SELECT id FROM candidates ORDER BY created_at DESC, id DESC LIMIT 1) AS last_id

-- name: prune_runs_batch
-- A prune batch of runs; the latest finished and latest successful run per host and command stay.
WITH candidates AS MATERIALIZED (
    SELECT id, host, command, started_at FROM payverify_runs
    WHERE started_at < %(cutoff)s AND (started_at, id) > (%(after_at)s, %(after_id)s)
    ORDER BY started_at, id
    LIMIT %(batch)s
), keepers AS MATERIALIZED (
    SELECT k.id FROM (SELECT DISTINCT host, command FROM candidates) g
    CROSS JOIN LATERAL (
        (SELECT n.id FROM payverify_runs n
         WHERE n.host = g.host AND n.command = g.command AND n.finished_at IS NOT NULL
         ORDER BY n.finished_at DESC, n.id DESC LIMIT 1)
        UNION ALL
        (SELECT n.id FROM payverify_runs n
         WHERE n.host = g.host AND n.command = g.command AND n.finished_at IS NOT NULL AND n.exit_status = 0
         ORDER BY n.finished_at DESC, n.id DESC LIMIT 1)
    ) k
), doomed AS MATERIALIZED (
    SELECT c.id FROM candidates c WHERE c.id <> ALL(ARRAY(SELECT id FROM keepers))
), deleted AS (
    DELETE FROM payverify_runs WHERE id = ANY(ARRAY(SELECT id FROM doomed)) AND NOT %(dry_run)s RETURNING id
)
SELECT (SELECT count(*) FROM candidates) AS examined, (SELECT count(*) FROM doomed) AS eligible,
       (SELECT count(*) FROM deleted) AS deleted,
       (SELECT started_at FROM candidates ORDER BY started_at DESC, id DESC LIMIT 1) AS last_at,
       (SELECT id FROM candidates ORDER BY started_at DESC, id DESC LIMIT 1) AS last_id

-- name: prune_silent_processes
-- Process rows not seen for a day: processes that were killed or crashed.
DELETE FROM payverify_processes WHERE seen_at < now() - make_interval(hours => %(hours)s) AND NOT %(dry_run)s

-- ---- live processes (db/presence.py) ---------------------------------------------------------------

-- name: process_seen
-- This process is alive: written when it starts and every few seconds after.
INSERT INTO payverify_processes AS p (owner, host, command, machine, pid, pid_started, started_at, seen_at)
VALUES (%(owner)s, %(host)s, %(command)s, %(machine)s, %(pid)s, %(pid_started)s, now(), now())
ON CONFLICT (owner) DO UPDATE SET seen_at = now()

-- name: process_gone
-- A clean exit, or a process of this machine whose pid is gone: its claims are free at once.
DELETE FROM payverify_processes WHERE owner = %(owner)s

-- name: processes_on_machine
-- The other processes of this machine that still count as alive: the kernel can say whether each runs.
SELECT owner, command, pid, pid_started, started_at, seen_at FROM payverify_processes
WHERE machine = %(machine)s AND owner <> %(owner)s
  AND seen_at > now() - make_interval(secs => %(alive_seconds)s)

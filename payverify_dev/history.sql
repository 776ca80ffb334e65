-- Years of history for the scale benchmark and its test (history.py), in a few big statements.
-- Like Django, every NOT NULL column of a site table is written: those tables have no defaults.
-- Ids of the site's rows are given, not drawn from the identity, so every statement can compute the
-- ids it refers to without looking them up; history.py moves each identity past them at the end.
-- No literal percent sign anywhere: psycopg2 reads one as a parameter (hence mod() for modulo).

-- name: loosen
-- One transaction of minutes and sorts of a million rows: not the 30 s and 4 MB a payverify run gets.
SELECT set_config('statement_timeout', '0', true), set_config('work_mem', '256MB', true)

-- name: skip_triggers
-- A superuser loads without the triggers, as pg_restore --disable-triggers does: the site's foreign keys
-- would check some eight million references one at a time at COMMIT (a million orders took 160 s with
-- them on this machine, 105 s without), every one of which these statements make by construction (the
-- test checks them). Anyone else loads with them. Only for this transaction; NOT NULL, CHECK and UNIQUE
-- hold either way.
SELECT set_config('session_replication_role', 'replica', true) FROM pg_roles WHERE rolname = current_user AND rolsuper

-- name: clock
SELECT now() AS now

-- name: id_bases
SELECT (SELECT coalesce(max(id), 0) FROM artists_artist) AS artist,
       (SELECT coalesce(max(id), 0) FROM events_event) AS event,
       (SELECT coalesce(max(id), 0) FROM events_tickettype) AS ticket_type,
       (SELECT coalesce(max(id), 0) FROM orders_order) AS order_,
       (SELECT coalesce(max(id), 0) FROM orders_orderitem) AS item

-- name: run_id_function
-- A run's id from its five-minute slot (seconds since 1970 over 300: cron starts a sweep at each):
-- x -> a x + b with a odd is a bijection modulo 2^48, so a million slots give a million distinct ids
-- shaped like uuid4().hex[:12]. The audit and fulfilment rows name the run of the slot they fall in.
CREATE OR REPLACE FUNCTION pg_temp.history_run_id(slot bigint) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT lpad(to_hex(mod(slot * 25214903917 + 173961102589770, 281474976710656)), 12, '0') $$

-- name: insert_artists
-- Every oauth_every-th artist sells through their own SumUp account (OAuth); the rest through the
-- platform's key, as the Seeder's artists do.
INSERT INTO artists_artist (id, name, email, sumup_merchant_code, sumup_access_token, sumup_refresh_token,
                            sumup_token_expires_at, created_at)
SELECT %(artist_base)s + a + 1, (%(artist_names)s::text[])[a + 1], 'artist' || (a + 1) || '@artists.example',
       CASE WHEN o.oauth THEN 'M' || upper(substr(md5('merchant:' || a), 1, 8)) ELSE %(platform_merchant)s END,
       CASE WHEN o.oauth THEN 'at_' || md5('access:' || a) END,
       CASE WHEN o.oauth THEN 'rt_' || md5('refresh:' || a) END,
       CASE WHEN o.oauth THEN %(clock)s + interval '1 hour' END,
       %(start)s - interval '60 days'
FROM generate_series(0, cardinality(%(artist_names)s::text[]) - 1) a
CROSS JOIN LATERAL (SELECT mod(a + 1, %(oauth_every)s) = 0 AS oauth) o

-- name: insert_events
-- Evenly spaced from just after the history starts to months after it ends, at half past seven in the
-- evening, artists in turn; one in ten without an end time (the site allows it).
INSERT INTO events_event (id, title, venue, starts_at, ends_at, created_at, artist_id)
SELECT %(event_base)s + e + 1,
       (%(titles)s::text[])[mod(e, cardinality(%(titles)s::text[])) + 1],
       (%(venues)s::text[])[mod(e, cardinality(%(venues)s::text[])) + 1],
       s.starts_at, CASE WHEN mod(e, 10) <> 9 THEN s.starts_at + interval '3 hours' END,
       least(%(clock)s, s.starts_at - interval '150 days'),
       %(artist_base)s + mod(e, cardinality(%(artist_names)s::text[])) + 1
FROM generate_series(0, %(events)s - 1) e
CROSS JOIN LATERAL (SELECT date_trunc('day', %(first_day)s + e * %(event_step)s) + interval '19 hours 30 minutes'
                    AS starts_at) s

-- name: insert_ticket_types
-- Two per event: Standing at one of seven prices, Seated 12.50 more.
INSERT INTO events_tickettype (id, name, price, event_id)
SELECT %(ticket_type_base)s + 2 * e + t.seated + 1, t.name, 10.00 + mod(e, 7) * 2.50 + t.seated * 12.50,
       %(event_base)s + e + 1
FROM generate_series(0, %(events)s - 1) e
CROSS JOIN (VALUES (0, 'Standing'), (1, 'Seated')) t(seated, name)

-- name: create_plan
-- One row per historical order with everything the other statements need of it, drawn once.
-- Orders are created in id order across the history; each is for one of the next 30 events (about two
-- months ahead). Status from the mix; one completed order in a hundred was a late payment (failed,
-- then paid within the rescue window). 1.5 admissions per order on average: a first item of 1-4 and,
-- for one order in seven, one more ticket of the event's other type. Times: paid within minutes
-- (late: hours); failed after the 30 min grace; expired after the 2 h maximum age; a cancelled order
-- went to review when paid and staff cancelled it later; refunded days after payment; nothing later
-- than a day ago. attempts and mails: payverify's audit and outbox rows for the order; upto_*: the
-- running sums in id order, by which the newest payverify_rows of each are chosen.
CREATE TEMP TABLE history_plan ON COMMIT DROP AS
WITH drawn AS (
    SELECT g, %(start)s + (%(end)s - %(start)s) * ((g - 1 + random()) / %(orders)s) AS created_at,
           random() AS r_status, random() AS r_late, random() AS r_q1, random() AS r_seated, random() AS r_q2,
           random() AS r_event, random() AS r_pay, random() AS r_after, random() AS r_pending, random() AS r_mail
    FROM generate_series(1, %(orders)s) g
), typed AS (
    SELECT d.*, s.status, s.status = 'completed' AND d.r_late < 0.01 AS late,
           -- The first event at least a day after the order (its day starts one step after the order).
           least(%(events)s - 1, greatest(0, ceil(extract(epoch FROM d.created_at - %(first_day)s)
                                                   / %(event_step_seconds)s))::int
                                 + 1 + floor(d.r_event * 30)::int) AS e,
           CASE WHEN d.r_q1 < 0.70 THEN 1 WHEN d.r_q1 < 0.95 THEN 2 WHEN d.r_q1 < 0.99 THEN 3 ELSE 4 END AS q1,
           (d.r_seated < 0.35)::int AS seated1, (d.r_q2 < 0.14)::int AS q2
    FROM drawn d
    CROSS JOIN LATERAL (SELECT (%(statuses)s::text[])[width_bucket(d.r_status, %(status_cuts)s::float8[])]
                        AS status) s
), paid AS (
    SELECT t.*,
           CASE WHEN t.status IN ('completed', 'refunded')
                THEN t.created_at + CASE WHEN t.late THEN (1 + t.r_pay * 20) * interval '1 hour'
                                         ELSE (1 + t.r_pay * 9) * interval '1 minute' END END AS paid_at,
           CASE t.status WHEN 'failed' THEN t.created_at + (31 + t.r_pay * 60) * interval '1 minute'
                         WHEN 'expired' THEN t.created_at + (120 + t.r_pay * 10) * interval '1 minute'
                         WHEN 'cancelled' THEN t.created_at + (2 + t.r_pay * 8) * interval '1 minute' END AS not_paid_at
    FROM typed t
), shaped AS (
    SELECT p.g, %(order_base)s + p.g AS order_id, p.created_at, p.status, p.late, p.e,
           %(event_base)s + p.e + 1 AS event_id, mod(p.e, cardinality(%(artist_names)s::text[])) AS artist,
           p.q1, p.q2, %(ticket_type_base)s + 2 * p.e + p.seated1 + 1 AS tt1,
           %(ticket_type_base)s + 2 * p.e + (1 - p.seated1) + 1 AS tt2,
           10.00 + mod(p.e, 7) * 2.50 + p.seated1 * 12.50 AS price1,
           10.00 + mod(p.e, 7) * 2.50 + (1 - p.seated1) * 12.50 AS price2,
           -- Knuth's multiplier is odd, so this is a bijection modulo 2^32: unique numbers in the site's format.
           'JE-' || upper(lpad(to_hex(mod((%(order_base)s + p.g) * 2654435761, 4294967296)), 8, '0')) AS order_number,
           md5('checkout:' || (%(order_base)s + p.g))::uuid::text AS checkout_id,
           CASE WHEN p.paid_at IS NOT NULL THEN 'T' || upper(substr(md5('txn:' || (%(order_base)s + p.g)), 1, 9)) END
               AS transaction_code,
           (%(first_names)s::text[])[mod(p.g * 7, cardinality(%(first_names)s::text[])) + 1] AS first_name,
           (%(last_names)s::text[])[mod(p.g * 13, cardinality(%(last_names)s::text[])) + 1] AS last_name,
           p.paid_at, coalesce(p.paid_at, p.not_paid_at) AS decided_at,
           greatest(coalesce(p.paid_at, p.not_paid_at), least(%(clock)s - interval '1 day',
               CASE p.status WHEN 'refunded' THEN p.paid_at + p.r_after * interval '10 days'
                             WHEN 'cancelled' THEN p.not_paid_at + (1 + p.r_after * 47) * interval '1 hour'
                             ELSE coalesce(p.paid_at, p.not_paid_at) END)) AS updated_at,
           CASE WHEN p.late THEN 3 WHEN p.status = 'failed' OR (p.status = 'completed' AND p.r_pending < 0.3) THEN 2
                ELSE 1 END AS attempts,
           CASE WHEN p.late THEN 3 WHEN p.status = 'expired' THEN 0 ELSE 1 END AS mails,
           p.r_mail
    FROM paid p
)
-- The address from the name, without the spaces and accents that names have and addresses do not.
SELECT s.*, regexp_replace(lower(s.first_name || '.' || s.last_name), '[^a-z.]', '', 'g') || s.g || '@example.com'
                AS email,
       sum(s.attempts) OVER (ORDER BY s.g) AS upto_attempts, sum(s.mails) OVER (ORDER BY s.g) AS upto_mails
FROM shaped s

-- name: plan_totals
SELECT coalesce(sum(attempts), 0) AS attempts, coalesce(sum(mails), 0) AS mails FROM history_plan

-- name: insert_orders
INSERT INTO orders_order (id, order_number, email, first_name, last_name, total, currency, status, sumup_checkout_id,
                          sumup_transaction_code, paid_at, created_at, updated_at, event_id)
SELECT order_id, order_number, email, first_name, last_name, q1 * price1 + q2 * price2, 'GBP', status, checkout_id,
       transaction_code, paid_at, created_at, updated_at, event_id
FROM history_plan

-- name: insert_order_items
-- Item ids 2g-1 and 2g: the second only for the orders that have one (ids have gaps, as they do).
INSERT INTO orders_orderitem (id, quantity, unit_price, order_id, ticket_type_id)
SELECT %(item_base)s + 2 * p.g - 1 + i.second, i.quantity, i.price, p.order_id, i.ticket_type
FROM history_plan p
CROSS JOIN LATERAL (VALUES (0, p.q1, p.price1, p.tt1), (1, p.q2, p.price2, p.tt2))
    i(second, quantity, price, ticket_type)
WHERE i.quantity > 0

-- name: insert_tickets
-- One per admission of the orders that were paid. Tickets of past events were mostly scanned at the door;
-- a refunded order's were cancelled. A code is 32 hex characters, as long as payverify's: the order id,
-- item and admission first (unique, and rising as the rows go in, so both indexes on the code grow at
-- their right edge: random codes would land on random pages of two 120 MB indexes, which on a small
-- shared_buffers made this statement twice as slow), then a digest of them.
INSERT INTO tickets_ticket (code, holder_name, status, created_at, checked_in_at, event_id, order_id, order_item_id,
                            ticket_type_id)
SELECT lpad(to_hex(p.order_id * 8 + i.second * 5 + k), 10, '0')
           || substr(md5('ticket:' || p.order_id || ':' || i.second || ':' || k), 1, 22),
       p.first_name || ' ' || p.last_name,
       CASE WHEN p.status = 'refunded' THEN 'cancelled' WHEN d.used THEN 'used' ELSE 'valid' END,
       p.paid_at, CASE WHEN d.used THEN greatest(p.paid_at, d.starts_at - random() * interval '90 minutes') END,
       p.event_id, p.order_id, %(item_base)s + 2 * p.g - 1 + i.second, i.ticket_type
FROM history_plan p
CROSS JOIN LATERAL (VALUES (0, p.q1, p.tt1), (1, p.q2, p.tt2)) i(second, quantity, ticket_type)
CROSS JOIN LATERAL generate_series(1, i.quantity) k
CROSS JOIN LATERAL (SELECT date_trunc('day', %(first_day)s + p.e * %(event_step)s) + interval '19 hours 30 minutes'
                    AS starts_at) s
CROSS JOIN LATERAL (SELECT p.status = 'completed' AND s.starts_at < %(clock)s AND random() < 0.9 AS used,
                           s.starts_at) d
WHERE p.status IN ('completed', 'refunded')

-- name: create_attempts
-- What payverify said at each attempt on an order of a status, the last (step 0) deciding it.
CREATE TEMP TABLE history_attempts (status text, late boolean, step int, sumup_status text, outcome text,
                                    reason text) ON COMMIT DROP;
INSERT INTO history_attempts VALUES
    ('completed', false, 0, 'PAID', 'completed', 'SumUp says PAID and amount, currency, merchant and reference match'),
    ('completed', false, -1, 'PENDING', 'unchanged',
     'SumUp says PENDING; the order is 1 min old (expires unpaid after 2 h)'),
    ('completed', true, 0, 'PAID', 'completed', 'SumUp says PAID after the order was marked failed: late payment'),
    ('completed', true, -1, 'FAILED', 'failed', 'SumUp says FAILED and the 30 min grace has passed'),
    ('completed', true, -2, 'FAILED', 'unchanged',
     'SumUp says FAILED but the order is 5 min old; the customer may still retry (grace 30 min)'),
    ('refunded', false, 0, 'PAID', 'completed', 'SumUp says PAID and amount, currency, merchant and reference match'),
    ('failed', false, 0, 'FAILED', 'failed', 'SumUp says FAILED and the 30 min grace has passed'),
    ('failed', false, -1, 'FAILED', 'unchanged',
     'SumUp says FAILED but the order is 5 min old; the customer may still retry (grace 30 min)'),
    ('expired', false, 0, 'EXPIRED', 'expired', 'SumUp says the checkout EXPIRED'),
    ('cancelled', false, 0, 'PAID', 'requires_manual_review',
     'SumUp says PAID but no SUCCESSFUL transaction for the order''s amount')

-- name: insert_audit
-- The newest payverify_rows attempts (attempt_cut: how many older ones there are), spread between the
-- order's creation and its decision, each in the run of its five-minute slot.
INSERT INTO payverify_audit (run_id, host, command, order_id, order_number, checkout_id, http_status, sumup_status,
                             outcome, reason, duration_ms, created_at)
SELECT pg_temp.history_run_id(floor(extract(epoch FROM w.at) / 300)::bigint), %(host)s, 'sweep',
       p.order_id, p.order_number, p.checkout_id, 200, a.sumup_status, a.outcome, a.reason,
       60 + floor(random() * 400)::int, w.at
FROM history_plan p
CROSS JOIN LATERAL generate_series(1, p.attempts) n
JOIN history_attempts a ON a.status = p.status AND a.late = p.late AND a.step = n - p.attempts
CROSS JOIN LATERAL (SELECT p.created_at + (p.decided_at - p.created_at) * n / p.attempts AS at) w
WHERE p.upto_attempts - p.attempts + n > %(attempt_cut)s

-- name: insert_order_state
-- The newest `covered` orders, as their deciding attempt left them: no lease, no error streak.
INSERT INTO payverify_order_state (order_id, lease_owner, lease_expires_at, last_checked_at, checks, last_http_status,
                                   last_sumup_status, last_outcome, last_reason, consecutive_errors, first_error_at,
                                   last_error)
SELECT p.order_id, NULL, NULL, p.decided_at, p.attempts, 200, a.sumup_status, a.outcome, a.reason, 0, NULL, NULL
FROM history_plan p
JOIN history_attempts a ON a.status = p.status AND a.late = p.late AND a.step = 0
WHERE p.g > %(orders)s - %(covered)s

-- name: insert_fulfilment
INSERT INTO payverify_fulfilment (order_id, checkout_id, transaction_code, tickets_issued, run_id, created_at)
SELECT order_id, checkout_id, transaction_code, q1 + q2,
       pg_temp.history_run_id(floor(extract(epoch FROM paid_at) / 300)::bigint), paid_at
FROM history_plan
WHERE g > %(orders)s - %(covered)s AND status IN ('completed', 'refunded')

-- name: create_mails
-- The mail each order of a status got, in order: a late payment's "payment failed" was cancelled when
-- SumUp said PAID, and staff heard of the late payment; a cancelled order's review alert.
-- at: how far from the order's creation to its decision the row was queued.
CREATE TEMP TABLE history_mails (status text, late boolean, n int, kind text, to_customer boolean,
                                 mail_status text, at float8) ON COMMIT DROP;
INSERT INTO history_mails VALUES
    ('completed', false, 1, 'order_confirmation', true, 'sent', 1),
    ('completed', true, 1, 'payment_failed', true, 'cancelled', 0.667),
    ('completed', true, 2, 'order_confirmation', true, 'sent', 1),
    ('completed', true, 3, 'admin_alert_late_payment', false, 'sent', 1),
    ('refunded', false, 1, 'order_confirmation', true, 'sent', 1),
    ('failed', false, 1, 'payment_failed', true, 'sent', 1),
    ('cancelled', false, 1, 'admin_alert_amount_mismatch', false, 'sent', 1)

-- name: insert_outbox
-- The newest payverify_rows mails (mail_cut: how many older ones there are). Sent mail keeps only what
-- names it (as mark_outbox_sent leaves it); one customer mail in three hundred bounced for good.
INSERT INTO payverify_outbox (kind, dedup_key, order_id, recipients, context, message_id, status, attempts,
                              next_attempt_at, last_error, created_at, sent_at, ticket_clock_started_at,
                              time_to_ticket_seconds)
SELECT m.kind, m.kind || ':order:' || p.order_id, p.order_id,
       CASE WHEN m.to_customer THEN ARRAY[p.email] ELSE ARRAY[%(alert_email)s] END,
       jsonb_build_object('order_id', p.order_id, 'order_number', p.order_number,
                          'artist', jsonb_build_object('id', %(artist_base)s + p.artist + 1,
                                                       'name', (%(artist_names)s::text[])[p.artist + 1])),
       '<' || floor(extract(epoch FROM q.queued))::bigint || '.' || p.g || '.' || m.n || '.'
           || replace(m.kind, '_', '-') || '@tickets.example>',
       s.status, CASE WHEN s.status = 'failed' THEN 5 WHEN s.status = 'sent' THEN 1 ELSE 0 END,
       q.queued, CASE s.status WHEN 'failed' THEN '550 5.1.1 recipient address rejected'
                               WHEN 'cancelled' THEN 'no longer true: the order was paid' END,
       q.queued, CASE WHEN s.status = 'sent' THEN q.sent END, c.started,
       CASE WHEN s.status = 'sent' AND c.started IS NOT NULL THEN extract(epoch FROM q.sent - c.started) END
FROM history_plan p
CROSS JOIN LATERAL generate_series(1, p.mails) k
JOIN history_mails m ON m.status = p.status AND m.late = p.late AND m.n = k
CROSS JOIN LATERAL (SELECT p.created_at + (p.decided_at - p.created_at) * m.at AS queued,
                           p.created_at + (p.decided_at - p.created_at) * m.at
                               + (2 + p.r_mail * 20) * interval '1 second' AS sent) q
CROSS JOIN LATERAL (SELECT CASE WHEN m.mail_status = 'sent' AND m.to_customer AND p.r_mail < 1.0 / 300 THEN 'failed'
                                ELSE m.mail_status END AS status) s
-- Time to ticket starts when the customer came back from SumUp (here: as the payment went through).
CROSS JOIN LATERAL (SELECT CASE WHEN m.kind = 'order_confirmation' THEN least(q.queued, p.paid_at) END AS started) c
WHERE p.upto_mails - p.mails + k > %(mail_cut)s

-- name: insert_digests
-- When the orders had fewer mails than payverify_rows: stuck-orders digests make up the rest, hourly
-- back from the end of the history (they name no order and have no key).
INSERT INTO payverify_outbox (kind, dedup_key, order_id, recipients, context, message_id, status, attempts,
                              next_attempt_at, last_error, created_at, sent_at, ticket_clock_started_at,
                              time_to_ticket_seconds)
SELECT 'admin_alert_stuck_orders', NULL, NULL, ARRAY[%(alert_email)s], '{}'::jsonb,
       '<' || floor(extract(epoch FROM q.queued))::bigint || '.0.' || i || '.admin-alert-stuck-orders@tickets.example>',
       'sent', 1, q.queued, NULL, q.queued, q.queued + interval '3 seconds', NULL, NULL
FROM generate_series(1, %(digests)s) i
CROSS JOIN LATERAL (SELECT %(end)s - i * interval '1 hour' AS queued) q

-- name: insert_runs
-- A sweep every five minutes up to now (cron's, a moment after each mark), on this host: mostly fine;
-- one in three hundred SumUp did not answer (exit 7); one in five thousand was killed (never finished).
-- Counted in payverify_run_counts in the same statement, with the counting trigger off meanwhile (also
-- when skip_triggers did not apply): its upsert of one count row per run would update that row a
-- million times in one transaction, each time past every version before it (quadratic: many minutes).
-- The counts come out as the trigger would leave them.
ALTER TABLE payverify_runs DISABLE TRIGGER payverify_runs_counted;
WITH runs AS (
    INSERT INTO payverify_runs (run_id, host, command, started_at, finished_at, exit_status, verified, outcomes,
                                sumup_errors, mail_sent, mail_failed, order_errors)
    SELECT pg_temp.history_run_id(slot), %(host)s, 'sweep', x.started,
           CASE WHEN NOT x.killed THEN x.started + x.took END,
           CASE WHEN x.killed THEN NULL WHEN x.down THEN 7 ELSE 0 END,
           CASE WHEN NOT x.killed THEN x.verified END,
           CASE WHEN x.killed THEN NULL WHEN x.verified = 0 THEN '{}'::jsonb
                ELSE jsonb_build_object('completed', x.verified) END,
           CASE WHEN x.killed THEN NULL WHEN x.down THEN '{"timeout": 3}'::jsonb ELSE '{}'::jsonb END,
           CASE WHEN NOT x.killed THEN x.verified END, CASE WHEN NOT x.killed THEN 0 END,
           CASE WHEN NOT x.killed THEN 0 END
    FROM generate_series(%(latest_slot)s - %(rows)s + 1, %(latest_slot)s) slot  -- the oldest first, as ids go
    CROSS JOIN LATERAL (SELECT to_timestamp(slot * 300) + (0.2 + random()) * interval '1 second' AS started,
                               random() AS r, random() AS r2) d
    CROSS JOIN LATERAL (SELECT d.started, d.r < 0.0002 AS killed, d.r >= 0.0002 AND d.r < 0.0002 + 1.0 / 300 AS down,
                               floor(d.r2 * d.r2 * 4)::int AS verified,
                               (0.8 + d.r2 * 4) * interval '1 second' AS took) x
    RETURNING host, command, exit_status, order_errors
)
INSERT INTO payverify_run_counts AS c (host, command, exit_status, runs, order_errors)
SELECT host, command, exit_status, count(*), coalesce(sum(order_errors), 0)
FROM runs GROUP BY host, command, exit_status
ON CONFLICT (host, command, (coalesce(exit_status, -1)))
DO UPDATE SET runs = c.runs + EXCLUDED.runs, order_errors = c.order_errors + EXCLUDED.order_errors;
ALTER TABLE payverify_runs ENABLE TRIGGER payverify_runs_counted

-- name: insert_reconcile
-- A little reconciliation: where each OAuth account's sync stands, and a few refunds SumUp showed after
-- the order was completed (the newest refunded orders of those accounts).
INSERT INTO payverify_reconcile_cursor (merchant_code, changes_since, updated_at)
SELECT sumup_merchant_code, %(clock)s - interval '1 day', %(clock)s - interval '1 day'
FROM artists_artist
WHERE id > %(artist_base)s AND sumup_access_token IS NOT NULL
ON CONFLICT (merchant_code) DO NOTHING;
INSERT INTO payverify_reconcile_reported (key, kind, merchant_code, transaction_code, order_number, amount, currency,
                                          detail, run_id, reported_at)
SELECT 'refunded_after_completion:' || a.sumup_merchant_code || ':' || p.transaction_code, 'refunded_after_completion',
       a.sumup_merchant_code, p.transaction_code, p.order_number, p.q1 * p.price1 + p.q2 * p.price2, 'GBP',
       'SumUp shows the payment REFUNDED after the order was completed',
       pg_temp.history_run_id(floor(extract(epoch FROM p.updated_at) / 300)::bigint), p.updated_at
FROM history_plan p
JOIN artists_artist a ON a.id = %(artist_base)s + p.artist + 1
WHERE p.status = 'refunded' AND a.sumup_access_token IS NOT NULL
ORDER BY p.g DESC
LIMIT %(reconcile_reported)s

-- name: insert_housekeeping
-- Retention's hourly pass as if it had just run: the first sweep on the history is an ordinary one,
-- not one that starts on years of rows older than PAYVERIFY_RETENTION_DAYS.
INSERT INTO payverify_housekeeping (task, last_run_at, host, run_id)
VALUES ('retention', %(clock)s, %(host)s, pg_temp.history_run_id(%(latest_slot)s))
ON CONFLICT (task) DO UPDATE SET last_run_at = EXCLUDED.last_run_at, host = EXCLUDED.host, run_id = EXCLUDED.run_id

-- name: move_identities
-- Past the ids given above, so the site's next row (and the Seeder's) gets a fresh one.
SELECT setval(pg_get_serial_sequence('artists_artist', 'id'), (SELECT max(id) FROM artists_artist)),
       setval(pg_get_serial_sequence('events_event', 'id'), (SELECT max(id) FROM events_event)),
       setval(pg_get_serial_sequence('events_tickettype', 'id'), (SELECT max(id) FROM events_tickettype)),
       setval(pg_get_serial_sequence('orders_order', 'id'), (SELECT max(id) FROM orders_order)),
       setval(pg_get_serial_sequence('orders_orderitem', 'id'), (SELECT max(id) FROM orders_orderitem))

-- name: vacuum
-- After the load, as autovacuum would have left a database in use for years: statistics for the
-- planner, hint bits set and pages all-visible (index-only scans), so the first run on it does not pay
-- for that. A few seconds for a million orders: nothing is dead.
VACUUM (ANALYZE) artists_artist, events_event, events_tickettype, orders_order, orders_orderitem, tickets_ticket,
       payverify_order_state, payverify_fulfilment, payverify_outbox, payverify_audit, payverify_runs,
       payverify_run_counts, payverify_reconcile_cursor, payverify_reconcile_reported, payverify_housekeeping

-- name: due_ticket_types
-- For orders a sweep must settle: ticket types of events a day or more ahead, of artists selling
-- through the platform's key (the simulator knows that key, not the artists' own tokens).
SELECT t.id, t.event_id
FROM events_tickettype t
JOIN events_event e ON e.id = t.event_id
JOIN artists_artist a ON a.id = e.artist_id
WHERE e.starts_at > now() + interval '1 day' AND a.sumup_merchant_code = %(platform_merchant)s
  AND a.sumup_access_token IS NULL AND a.sumup_refresh_token IS NULL
ORDER BY e.starts_at, t.id
LIMIT 40

-- name: taken_order_numbers
SELECT order_number FROM orders_order WHERE order_number = ANY(%(numbers)s)

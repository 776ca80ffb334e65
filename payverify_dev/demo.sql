-- The demo's own queries (payverify_dev/demo.py): whole-table counts, fine on a demo's few rows.

-- name: outbox_summary
-- The outbox by kind and status, for the demo's closing summary.
SELECT kind, status, count(*) AS n FROM payverify_outbox GROUP BY kind, status ORDER BY kind, status

-- name: ticket_count
-- How many tickets the demo issued.
SELECT count(*) AS n FROM tickets_ticket

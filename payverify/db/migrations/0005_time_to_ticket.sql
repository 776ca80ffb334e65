-- Time to ticket, per order confirmation: from when the customer started waiting (the order entering
-- pending_verification, or SumUp's payment for an order still pending) to the SMTP server accepting
-- the mail. The start is written with the row in the settle transaction; the seconds when the row is
-- marked sent. Both stay NULL when no start is known (a resend, a timestamp that cannot be right).
ALTER TABLE payverify_outbox
    ADD COLUMN ticket_clock_started_at timestamptz,
    ADD COLUMN time_to_ticket_seconds double precision;
-- The metrics' histogram reads the confirmations sent in a recent window from this index alone, never
-- the whole outbox (which keeps every message ever sent). Only rows with a time recorded are in it.
CREATE INDEX payverify_outbox_time_to_ticket_idx ON payverify_outbox (kind, sent_at)
    INCLUDE (time_to_ticket_seconds) WHERE time_to_ticket_seconds IS NOT NULL;

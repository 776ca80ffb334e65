-- Adapter views: the contract's names over a site whose tables name things their own way.
--
-- This site keeps its tables in `public` but calls the order number `reference` and the total
-- `amount_total`. Each view below is a simple view (one table, plain columns), which Postgres makes
-- updatable, insertable and lockable with FOR UPDATE, so payverify works through them unchanged.
-- Run it once as the owner of the site's tables, then set PAYVERIFY_SITE_SCHEMA=payverify_site.
-- payverify's own tables (payverify_*) are created in the connection's own schema, never here.
-- A column that is already called as the contract says is simply listed.

CREATE SCHEMA payverify_site;

CREATE VIEW payverify_site.artists_artist AS
    SELECT id, name, email, sumup_merchant_code, sumup_access_token, sumup_refresh_token,
           sumup_token_expires_at, created_at
    FROM public.artists_artist;

CREATE VIEW payverify_site.events_event AS
    SELECT id, artist_id, title, venue, starts_at, ends_at, created_at
    FROM public.events_event;

CREATE VIEW payverify_site.events_tickettype AS
    SELECT id, event_id, name, price
    FROM public.events_tickettype;

CREATE VIEW payverify_site.orders_order AS
    SELECT id, reference AS order_number, event_id, email, first_name, last_name,
           amount_total AS total, currency, status, sumup_checkout_id, sumup_transaction_code,
           paid_at, created_at, updated_at
    FROM public.orders_order;

CREATE VIEW payverify_site.orders_orderitem AS
    SELECT id, order_id, ticket_type_id, quantity, unit_price
    FROM public.orders_orderitem;

CREATE VIEW payverify_site.tickets_ticket AS
    SELECT id, order_id, order_item_id, event_id, ticket_type_id, code, holder_name, status,
           created_at, checked_in_at
    FROM public.tickets_ticket;

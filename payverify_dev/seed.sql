-- Inserts into the site's tables, for tests, the demo and benchmarks only.
-- Like Django, every NOT NULL column is written: the site's tables have no database defaults.

-- name: insert_artist
INSERT INTO artists_artist (name, email, sumup_merchant_code, sumup_access_token, sumup_refresh_token,
                            sumup_token_expires_at, created_at)
VALUES (%(name)s, %(email)s, %(merchant_code)s, %(access_token)s, %(refresh_token)s, %(expires_at)s, now())
RETURNING id

-- name: insert_event
INSERT INTO events_event (artist_id, title, venue, starts_at, ends_at, created_at)
VALUES (%(artist_id)s, %(title)s, %(venue)s, %(starts_at)s, %(ends_at)s, now())
RETURNING id

-- name: insert_ticket_type
INSERT INTO events_tickettype (event_id, name, price) VALUES (%(event_id)s, %(name)s, %(price)s) RETURNING id

-- name: ticket_type_price
SELECT price FROM events_tickettype WHERE id = %(id)s

-- name: insert_order
INSERT INTO orders_order (order_number, event_id, email, first_name, last_name, total, currency, status,
                          sumup_checkout_id, created_at, updated_at)
VALUES (%(order_number)s, %(event_id)s, %(email)s, %(first_name)s, %(last_name)s, %(total)s, %(currency)s,
        %(status)s, %(checkout_id)s, now() - make_interval(secs => %(age_seconds)s),
        now() - make_interval(secs => %(age_seconds)s))
RETURNING id

-- name: insert_order_item
INSERT INTO orders_orderitem (order_id, ticket_type_id, quantity, unit_price)
VALUES (%(order_id)s, %(ticket_type_id)s, %(quantity)s, %(unit_price)s)

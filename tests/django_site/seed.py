"""Seeding the site through Django's ORM, the way the site itself creates its rows, with each
order's checkout registered in the SumUp simulator (as payverify_dev/seed.py does in SQL)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from payverify_dev.seed import PLATFORM_KEY, PLATFORM_MERCHANT
from payverify_dev.sumup_server import FakeSumUp, checkout_body
from tests.django_site.artists.models import Artist
from tests.django_site.events.models import Event, TicketType
from tests.django_site.orders.models import Order, OrderItem


def saved(obj):
    """full_clean() then save(): the seed itself must be valid, so any invalid row later is payverify's."""
    obj.full_clean()
    obj.save()
    return obj


class OrmSeeder:
    def __init__(self, sumup: FakeSumUp) -> None:
        self.sumup = sumup
        sumup.add_api_key(PLATFORM_KEY, PLATFORM_MERCHANT)

    def artist(self, name: str = "Lua Verde", *, oauth: bool = False,
               token_expires_in: timedelta = timedelta(hours=1)) -> Artist:
        """An artist on the platform key, or with `oauth` tokens of its own (known to the simulator)."""
        if not oauth:
            return saved(Artist(name=name, email=f"{uuid.uuid4().hex[:8]}@artists.example",
                                sumup_merchant_code=PLATFORM_MERCHANT))
        merchant = f"M{secrets.token_hex(4).upper()}"
        access, refresh = f"at_{secrets.token_urlsafe(16)}", f"rt_{secrets.token_urlsafe(16)}"
        self.sumup.add_access_token(access, merchant)
        self.sumup.add_refresh_token(refresh, merchant)
        return saved(Artist(name=name, email=f"{uuid.uuid4().hex[:8]}@artists.example",
                            sumup_merchant_code=merchant, sumup_access_token=access, sumup_refresh_token=refresh,
                            sumup_token_expires_at=timezone.now() + token_expires_in))

    def event(self, artist: Artist, title: str = "Harbour Lights", *, starts_in: timedelta = timedelta(days=30),
              duration: timedelta = timedelta(hours=3)) -> Event:
        starts = timezone.now() + starts_in
        return saved(Event(artist=artist, title=title, venue="Fort Regent", starts_at=starts,
                           ends_at=starts + duration))

    def ticket_type(self, event: Event, name: str = "Standing", price: str = "12.50") -> TicketType:
        return saved(TicketType(event=event, name=name, price=Decimal(price)))

    def order(self, items: list[tuple[TicketType, int]], *, status: str = Order.Status.PENDING_VERIFICATION,
              age: timedelta = timedelta(minutes=5), sumup_status: str | None = "PAID",
              sumup_amount: str | None = None, email: str | None = None) -> Order:
        """An order of (ticket type, quantity) items for their event, `age` old; its checkout at SumUp
        says `sumup_status` (None: SumUp has never heard of it). A status outside the site's choices
        is saved as is, as a newer version of the site might."""
        event = items[0][0].event
        order = Order(order_number=f"JE-{secrets.token_hex(4).upper()}", event=event,
                      email=email or f"fan-{uuid.uuid4().hex[:8]}@example.com", first_name="Zoë",
                      last_name="Morgan", total=sum((tt.price * qty for tt, qty in items), Decimal("0.00")),
                      currency="GBP", status=status, sumup_checkout_id=str(uuid.uuid4()))
        if status in Order.Status.values:
            order.full_clean()
        order.save()
        for tt, qty in items:
            saved(OrderItem(order=order, ticket_type=tt, quantity=qty, unit_price=tt.price))
        # auto_now_add/auto_now stamp the present; update() writes the past without them.
        created = timezone.now() - age
        Order.objects.filter(pk=order.pk).update(created_at=created, updated_at=created)
        order.refresh_from_db()
        if sumup_status:
            amount = Decimal(sumup_amount) if sumup_amount is not None else order.total
            self.sumup.add_checkout(checkout_body(order.sumup_checkout_id, order.order_number, amount, order.currency,
                                                  event.artist.sumup_merchant_code, sumup_status),
                                    owner=event.artist.sumup_merchant_code)
        return order

from django.db import models


class Ticket(models.Model):
    class Status(models.TextChoices):
        VALID = "valid"
        USED = "used"
        CANCELLED = "cancelled"

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="tickets")
    order_item = models.ForeignKey("orders.OrderItem", on_delete=models.CASCADE, related_name="tickets")
    event = models.ForeignKey("events.Event", on_delete=models.PROTECT, related_name="tickets")
    ticket_type = models.ForeignKey("events.TicketType", on_delete=models.PROTECT, related_name="tickets")
    code = models.CharField(max_length=64, unique=True)  # scanned at the door: unguessable
    holder_name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.VALID)
    created_at = models.DateTimeField(auto_now_add=True)
    checked_in_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.code

from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PENDING_VERIFICATION = "pending_verification"
        COMPLETED = "completed"
        FAILED = "failed"
        EXPIRED = "expired"
        REQUIRES_MANUAL_REVIEW = "requires_manual_review"
        CANCELLED = "cancelled"
        REFUNDED = "refunded"

    order_number = models.CharField(max_length=32, unique=True)
    event = models.ForeignKey("events.Event", on_delete=models.PROTECT, related_name="orders")
    email = models.EmailField()
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    total = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="GBP")
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING, db_index=True)
    sumup_checkout_id = models.CharField(max_length=64, null=True, blank=True)
    sumup_transaction_code = models.CharField(max_length=64, null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.order_number


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    ticket_type = models.ForeignKey("events.TicketType", on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

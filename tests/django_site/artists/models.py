from django.db import models


class Artist(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField()
    sumup_merchant_code = models.CharField(max_length=32, null=True, blank=True)
    # All three NULL: the artist's checkouts are created with the platform API key.
    sumup_access_token = models.TextField(null=True, blank=True)
    sumup_refresh_token = models.TextField(null=True, blank=True)
    sumup_token_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

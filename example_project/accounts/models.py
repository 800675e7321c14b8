from django.conf import settings
from django.db import models


class Organization(models.Model):
    """A team that pays: each one is an Autumn customer (``organization_<pk>``), created in
    Autumn when the organisation is created."""

    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="organizations", blank=True)

    def __str__(self) -> str:
        return self.name

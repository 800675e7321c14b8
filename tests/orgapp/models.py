from django.conf import settings
from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=254, blank=True, default="")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="organizations", blank=True)

    def __str__(self) -> str:
        return self.name

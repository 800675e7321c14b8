from django.apps import AppConfig


class AutumnDjangoConfig(AppConfig):
    name = "autumn_django"
    label = "autumn_django"
    verbose_name = "Autumn billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_save

        from . import checks  # noqa: F401  (registers the system checks)
        from .conf import owner_model_label
        from .receivers import owner_post_save, owner_pre_save

        # The owner model (AUTUMN_CUSTOMER_OWNER_MODEL, default the user model): creating
        # one creates its Autumn customer. A label, resolved when that model is loaded.
        owner = owner_model_label()
        post_save.connect(owner_post_save, sender=owner, dispatch_uid="autumn_django.owner_post_save")
        pre_save.connect(owner_pre_save, sender=owner, dispatch_uid="autumn_django.owner_pre_save")

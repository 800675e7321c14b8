from django.apps import AppConfig


class AutumnDjangoConfig(AppConfig):
    name = "autumn_django"
    label = "autumn_django"
    verbose_name = "Autumn billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.db.models.signals import post_save, pre_save

        from . import checks  # noqa: F401  (registers the system checks)
        from .receivers import user_post_save, user_pre_save

        post_save.connect(user_post_save, sender=settings.AUTH_USER_MODEL,
                          dispatch_uid="autumn_django.user_post_save")
        pre_save.connect(user_pre_save, sender=settings.AUTH_USER_MODEL,
                         dispatch_uid="autumn_django.user_pre_save")

from django.apps import AppConfig


class AutumnDjangoConfig(AppConfig):
    name = "autumn_django"
    label = "autumn_django"
    verbose_name = "Autumn billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

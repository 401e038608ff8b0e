from django.apps import AppConfig


class AppConfig_(AppConfig):  # noqa: N801 - "AppConfig" is taken by the base class
    name = "app"
    label = "app"
    verbose_name = "Accounts, tokens and conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from app import schema  # noqa: F401 - registers the OpenAPI auth extension
        from app.auth_events import connect_signals
        from app.sso import connect_signals as connect_sso_signals

        connect_signals()
        connect_sso_signals()

from typing import Any

from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Model broker"

    def ready(self) -> None:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
        from django.core.signals import setting_changed

        from broker.config import ProviderConfigError, load_providers_file

        setting_changed.connect(_forget_providers, dispatch_uid="broker-providers")
        # A bad providers file stops the process at start-up, naming the field.
        if settings.LLM_PROVIDERS_FILE:
            try:
                load_providers_file(settings.LLM_PROVIDERS_FILE)
            except ProviderConfigError as exc:
                raise ImproperlyConfigured(str(exc)) from None


def _forget_providers(*, setting: str, **kwargs: Any) -> None:
    """Providers are built once from settings; rebuild them when those settings change."""
    if setting in {"LOCAL_PROVIDER_MAX_TIER", "SECRET_KEY", "LLM_PROVIDERS_FILE"}:
        from broker.services import configured_providers

        configured_providers.cache_clear()

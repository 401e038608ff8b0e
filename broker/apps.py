from typing import Any

from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Model broker"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        setting_changed.connect(_forget_providers, dispatch_uid="broker-providers")


def _forget_providers(*, setting: str, **kwargs: Any) -> None:
    """Providers are built once from settings; rebuild them when those settings change."""
    if setting in {"LOCAL_PROVIDER_MAX_TIER", "SECRET_KEY"}:
        from broker.services import configured_providers

        configured_providers.cache_clear()

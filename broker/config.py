"""Provider configuration: the `LLM_PROVIDERS_FILE` YAML, validated at start-up.

Each entry names one provider (CONTRACT.md "Providers"). A bad file fails fast with a
message naming the entry and the field; API keys are secret references, never keys.
With no file the offline local provider serves alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.identity import Tier

KINDS = frozenset({"openai", "anthropic", "openai_compatible", "local"})
_FIELDS = frozenset(
    {
        "name",
        "kind",
        "model",
        "base_url",
        "api_key_ref",
        "max_tier",
        "zero_retention",
        "priority",
        "timeout_s",
        "connect_timeout_s",
        "redact_pii",
        "allowed_groups",
        "embedding_model",
    }
)
_SECRET_SCHEMES = ("env:", "file:", "vault:")


class ProviderConfigError(ValueError):
    """The providers file is invalid; the message names the entry and field."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    model: str
    max_tier: Tier
    zero_retention: bool
    priority: int
    timeout_s: float
    connect_timeout_s: float
    redact_pii: bool
    base_url: str | None = None
    api_key_ref: str | None = None
    # Empty: every authenticated user may use it; else only members of these groups.
    allowed_groups: tuple[str, ...] = ()
    embedding_model: str | None = None


def local_default(max_tier: Tier) -> ProviderConfig:
    return ProviderConfig(
        name="local",
        kind="local",
        model="extractive-v1",
        max_tier=max_tier,
        zero_retention=True,
        priority=1000,
        timeout_s=30.0,
        connect_timeout_s=1.0,
        redact_pii=False,
    )


def _field(entry: dict[str, Any], where: str, key: str, types: type | tuple[type, ...]) -> Any:
    value = entry.get(key)
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        wanted = " or ".join(t.__name__ for t in _as_tuple(types))
        raise ProviderConfigError(f"{where}: field '{key}' must be {wanted}, got {value!r}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def parse_provider(entry: Any, index: int) -> ProviderConfig:
    """One YAML entry → ProviderConfig, or ProviderConfigError naming the field."""
    where = f"providers[{index}]"
    if not isinstance(entry, dict):
        raise ProviderConfigError(f"{where}: must be a mapping of fields")
    if isinstance(entry.get("name"), str):
        where = f"providers[{index}] ({entry['name']})"
    if "api_key" in entry:
        raise ProviderConfigError(f"{where}: field 'api_key' is not allowed; use api_key_ref")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ProviderConfigError(f"{where}: unknown field '{unknown[0]}'")
    name = _field(entry, where, "name", str).strip()
    if not name:
        raise ProviderConfigError(f"{where}: field 'name' must not be empty")
    kind = _field(entry, where, "kind", str)
    if kind not in KINDS:
        raise ProviderConfigError(
            f"{where}: field 'kind' must be one of {', '.join(sorted(KINDS))}, got {kind!r}"
        )
    model = _field(entry, where, "model", str) if kind != "local" or "model" in entry else ""
    try:
        max_tier = Tier.parse(_field(entry, where, "max_tier", str))
    except ValueError as exc:
        raise ProviderConfigError(f"{where}: field 'max_tier': {exc}") from None
    base_url = entry.get("base_url")
    if base_url is not None:
        base_url = _field(entry, where, "base_url", str)
        if not base_url.startswith(("http://", "https://")):
            raise ProviderConfigError(f"{where}: field 'base_url' must be an http(s) URL")
    if kind == "openai_compatible" and not base_url:
        raise ProviderConfigError(f"{where}: field 'base_url' is required for openai_compatible")
    api_key_ref = entry.get("api_key_ref")
    if api_key_ref is not None:
        api_key_ref = _field(entry, where, "api_key_ref", str)
        if not api_key_ref.startswith(_SECRET_SCHEMES):
            raise ProviderConfigError(
                f"{where}: field 'api_key_ref' must be a secret reference "
                "(env:NAME, file:/path or vault:mount/path#key), never the key itself"
            )
    elif kind in {"openai", "anthropic"}:
        raise ProviderConfigError(f"{where}: field 'api_key_ref' is required for kind {kind}")
    timeout_s = (
        float(_field(entry, where, "timeout_s", (int, float))) if "timeout_s" in entry else 30.0
    )
    connect_s = (
        float(_field(entry, where, "connect_timeout_s", (int, float)))
        if "connect_timeout_s" in entry
        else min(3.0, timeout_s)
    )
    if timeout_s <= 0 or connect_s <= 0:
        raise ProviderConfigError(f"{where}: field 'timeout_s' must be positive")
    groups = entry.get("allowed_groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise ProviderConfigError(f"{where}: field 'allowed_groups' must be a list of group names")
    embedding_model = entry.get("embedding_model")
    if embedding_model is not None:
        embedding_model = _field(entry, where, "embedding_model", str)
    return ProviderConfig(
        name=name,
        kind=kind,
        model=model or "extractive-v1",
        max_tier=max_tier,
        zero_retention=_field(entry, where, "zero_retention", bool)
        if "zero_retention" in entry
        else False,
        priority=_field(entry, where, "priority", int) if "priority" in entry else 100,
        timeout_s=timeout_s,
        connect_timeout_s=connect_s,
        redact_pii=_field(entry, where, "redact_pii", bool)
        if "redact_pii" in entry
        else kind != "local",
        base_url=base_url,
        api_key_ref=api_key_ref,
        allowed_groups=tuple(groups),
        embedding_model=embedding_model,
    )


def parse_providers(document: Any) -> tuple[ProviderConfig, ...]:
    """The parsed YAML document (`providers: [...]`) → configs sorted by priority."""
    if not isinstance(document, dict) or not isinstance(document.get("providers"), list):
        raise ProviderConfigError("the file must be a mapping with a 'providers' list")
    extra = sorted(set(document) - {"providers"})
    if extra:
        raise ProviderConfigError(f"unknown top-level field '{extra[0]}'")
    configs = [parse_provider(entry, i) for i, entry in enumerate(document["providers"])]
    if not configs:
        raise ProviderConfigError("field 'providers' must list at least one provider")
    seen: set[str] = set()
    for i, config in enumerate(configs):
        if config.name in seen:
            raise ProviderConfigError(f"providers[{i}]: field 'name' {config.name!r} is repeated")
        seen.add(config.name)
    return tuple(sorted(configs, key=lambda c: (c.priority, c.name)))


def load_providers_file(path: str | Path) -> tuple[ProviderConfig, ...]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ProviderConfigError(f"LLM_PROVIDERS_FILE {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProviderConfigError(f"LLM_PROVIDERS_FILE {path}: not valid YAML ({exc})") from None
    try:
        return parse_providers(document)
    except ProviderConfigError as exc:
        raise ProviderConfigError(f"LLM_PROVIDERS_FILE {path}: {exc}") from None

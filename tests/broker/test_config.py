"""The providers file: validated at start-up, every error naming the entry and the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.identity import Tier
from broker import services as broker
from broker.config import ProviderConfigError, load_providers_file, parse_providers

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "providers.example.yaml"

GOOD = {
    "name": "primary",
    "kind": "openai",
    "model": "gpt-x",
    "api_key_ref": "env:OPENAI_API_KEY",
    "max_tier": "internal",
}


def _parse(**changes: object) -> None:
    entry = {**GOOD, **changes}
    parse_providers({"providers": [{k: v for k, v in entry.items() if v is not None}]})


def test_without_a_file_the_local_provider_serves_alone(settings):
    settings.LLM_PROVIDERS_FILE = ""
    assert [(p.name, p.config.kind) for p in broker.configured_providers()] == [("local", "local")]


def test_the_example_file_is_valid_and_sorted_by_priority():
    configs = load_providers_file(EXAMPLE)
    assert [c.name for c in configs] == ["self-hosted", "anthropic", "openai", "local"]
    by_name = {c.name: c for c in configs}
    assert by_name["anthropic"].redact_pii is True  # the default for every kind but local
    assert by_name["local"].redact_pii is False
    assert by_name["openai"].allowed_groups == ("engineering", "finance")
    assert by_name["self-hosted"].max_tier is Tier.RESTRICTED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "gemini"}, "'kind'"),
        ({"kind": None}, "'kind'"),
        ({"model": None}, "'model'"),
        ({"max_tier": "secret"}, "'max_tier'"),
        ({"api_key_ref": "sk-live-1234"}, "'api_key_ref'"),
        ({"api_key_ref": None}, "'api_key_ref'"),
        ({"api_key": "sk-live-1234"}, "'api_key'"),
        ({"kind": "openai_compatible"}, "'base_url'"),
        ({"base_url": "ftp://models"}, "'base_url'"),
        ({"timeout_s": -1}, "'timeout_s'"),
        ({"timeout_s": "slow"}, "'timeout_s'"),
        ({"priority": True}, "'priority'"),
        ({"zero_retention": "yes"}, "'zero_retention'"),
        ({"allowed_groups": "finance"}, "'allowed_groups'"),
    ],
)
def test_a_bad_entry_fails_naming_the_field(changes, field):
    with pytest.raises(ProviderConfigError, match=field) as info:
        _parse(**changes)
    assert "providers[0] (primary)" in str(info.value)


def test_a_repeated_name_and_an_empty_list_are_refused():
    with pytest.raises(ProviderConfigError, match="'name'.*repeated"):
        parse_providers({"providers": [GOOD, GOOD]})
    with pytest.raises(ProviderConfigError, match="at least one"):
        parse_providers({"providers": []})


def test_a_bad_file_stops_start_up_with_the_field_named(tmp_path):
    bad = tmp_path / "providers.yaml"
    bad.write_text(yaml.safe_dump({"providers": [{**GOOD, "max_tier": "top-secret"}]}))
    env = {**os.environ, "LLM_PROVIDERS_FILE": str(bad)}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "field 'max_tier'" in result.stderr
    assert "providers[0] (primary)" in result.stderr

"""Production settings refuse to start when unsafe; secret references resolve or fail loudly."""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.secrets import SecretUnavailable, get_mandatory_secret, resolve_secret

ROOT = Path(__file__).resolve().parents[2]
_ALPHABET = string.ascii_letters + string.digits


def _random_key(length: int = 64) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


SANE_KEY = _random_key()


@pytest.fixture(scope="module")
def check_production_settings() -> Callable[..., list[str]]:
    from app.settings.checks import check_production_settings as checker

    return checker


def _sane(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "debug": False,
        "secret_key": SANE_KEY,
        "allowed_hosts": ["chat.example.com"],
        "using_embedded_database": False,
        "allow_embedded_database": False,
        "local_provider_max_tier": "internal",
        "allow_local_above_internal": False,
    }
    values.update(overrides)
    return values


def test_sane_production_settings_have_no_problems(check_production_settings):
    assert check_production_settings(**_sane()) == []
    assert check_production_settings(**_sane(local_provider_max_tier="public")) == []
    assert (
        check_production_settings(**_sane(allowed_hosts=["a.example.com", "b.example.com"])) == []
    )


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        pytest.param({"debug": True}, "DJANGO_DEBUG", id="debug-on"),
        pytest.param({"secret_key": ""}, "DJANGO_SECRET_KEY", id="key-empty"),
        pytest.param({"secret_key": _random_key(49)}, "DJANGO_SECRET_KEY", id="key-short"),
        pytest.param({"secret_key": "ab" * 40}, "DJANGO_SECRET_KEY", id="key-few-distinct-chars"),
        pytest.param(
            {"secret_key": "django-insecure-" + _random_key(50)},
            "DJANGO_SECRET_KEY",
            id="key-django-insecure",
        ),
        pytest.param(
            {"secret_key": "dev-insecure-key-do-not-use-in-production-7f3a9c1e5b"},
            "DJANGO_SECRET_KEY",
            id="key-is-the-dev-key",
        ),
        pytest.param({"allowed_hosts": ["*"]}, "DJANGO_ALLOWED_HOSTS", id="host-wildcard"),
        pytest.param(
            {"allowed_hosts": ["chat.example.com", "*"]},
            "DJANGO_ALLOWED_HOSTS",
            id="host-wildcard-among-others",
        ),
        pytest.param(
            {"allowed_hosts": ["*.example.com"]}, "DJANGO_ALLOWED_HOSTS", id="host-star-prefix"
        ),
        pytest.param(
            {"allowed_hosts": [".example.com"]}, "DJANGO_ALLOWED_HOSTS", id="host-dot-subdomains"
        ),
        pytest.param({"allowed_hosts": []}, "DJANGO_ALLOWED_HOSTS", id="hosts-empty"),
        pytest.param(
            {"local_provider_max_tier": "secret"}, "LOCAL_PROVIDER_MAX_TIER", id="unknown-tier"
        ),
        pytest.param(
            {"using_embedded_database": True}, "DATABASE_URL", id="embedded-db-without-flag"
        ),
        pytest.param(
            {"local_provider_max_tier": "confidential"},
            "LOCAL_PROVIDER_MAX_TIER",
            id="local-provider-confidential-without-flag",
        ),
        pytest.param(
            {"local_provider_max_tier": "restricted"},
            "LOCAL_PROVIDER_MAX_TIER",
            id="local-provider-restricted-without-flag",
        ),
    ],
)
def test_each_unsafe_production_setting_is_refused_naming_it(
    check_production_settings, overrides, names
):
    problems = check_production_settings(**_sane(**overrides))
    assert len(problems) == 1, problems
    assert names in problems[0]


def test_every_unsafe_setting_is_reported_at_once(check_production_settings):
    problems = check_production_settings(
        debug=True,
        secret_key="short",
        allowed_hosts=["*"],
        using_embedded_database=True,
        allow_embedded_database=False,
        local_provider_max_tier="restricted",
        allow_local_above_internal=False,
    )
    text = "\n".join(problems)
    assert len(problems) == 5
    for name in (
        "DJANGO_DEBUG",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "DATABASE_URL",
        "LOCAL_PROVIDER_MAX_TIER",
    ):
        assert name in text


def test_explicit_escape_hatches_allow_embedded_db_and_local_provider_above_internal(
    check_production_settings,
):
    assert (
        check_production_settings(
            **_sane(using_embedded_database=True, allow_embedded_database=True)
        )
        == []
    )
    assert (
        check_production_settings(
            **_sane(local_provider_max_tier="restricted", allow_local_above_internal=True)
        )
        == []
    )


# --- manage.py check --deploy under app.settings.prod ------------------------------------

_STRIP_PREFIXES = (
    "DJANGO_",
    "CONVERSATION_KEK_",
    "ALLOW_",
    "LOCAL_PROVIDER_",
    "DATABASE_URL",
    "REDIS_URL",
    "ADMIN_MFA_",
)


def _prod_env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="app.settings.prod",
        DJANGO_SECRET_KEY=_random_key(),
        DJANGO_ALLOWED_HOSTS="chat.example.com",
        DATABASE_URL="postgres://u:p@db.example.com/app",
        LOCAL_PROVIDER_MAX_TIER="internal",
        CONVERSATION_KEK_LOCAL_REF="file:/run/secrets/conversation-keks",
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def deploy_checks(tmp_path_factory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every `check --deploy` run of this module, run concurrently (each is ~3 s)."""
    key_file = tmp_path_factory.mktemp("secrets") / "django-key"
    key_file.write_text(_random_key() + "\n")
    envs = {
        "sane": _prod_env(),
        "debug": _prod_env(DJANGO_DEBUG="1"),
        "no_key": _prod_env(DJANGO_SECRET_KEY=None),
        "key_ref": _prod_env(DJANGO_SECRET_KEY=None, DJANGO_SECRET_KEY_REF=f"file:{key_file}"),
        "wildcard": _prod_env(DJANGO_ALLOWED_HOSTS="*"),
        "no_admin_mfa": _prod_env(ADMIN_MFA_REQUIRED="0"),
        "no_kek": _prod_env(CONVERSATION_KEK_LOCAL_REF=None),
        "vault_kek": _prod_env(CONVERSATION_KEK_LOCAL_REF=None, CONVERSATION_KEK_BACKEND="vault"),
    }
    with ThreadPoolExecutor(max_workers=len(envs)) as pool:
        futures = {name: pool.submit(_check_deploy, env) for name, env in envs.items()}
        return {name: future.result() for name, future in futures.items()}


def test_deploy_check_passes_with_sane_production_env(deploy_checks):
    result = deploy_checks["sane"]
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "ImproperlyConfigured" not in output
    # None of Django's deployment (security.*) checks fire under the prod settings.
    assert "security.W" not in output
    assert "security.E" not in output


def test_deploy_check_reports_no_issues_with_sane_production_env(deploy_checks):
    result = deploy_checks["sane"]
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout + result.stderr, result.stderr


def test_deploy_check_accepts_secret_key_from_file_reference(deploy_checks):
    result = deploy_checks["key_ref"]
    assert result.returncode == 0, result.stderr
    assert "ImproperlyConfigured" not in result.stderr


def test_prod_refuses_to_start_without_a_conversation_kek(deploy_checks):
    result = deploy_checks["no_kek"]
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "CONVERSATION_KEK_LOCAL_REF" in result.stderr
    assert deploy_checks["vault_kek"].returncode == 0, deploy_checks["vault_kek"].stderr


def test_prod_refuses_to_start_with_debug_on(deploy_checks):
    result = deploy_checks["debug"]
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_DEBUG" in result.stderr


def test_prod_refuses_to_start_without_a_secret_key(deploy_checks):
    result = deploy_checks["no_key"]
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_prod_refuses_to_start_with_wildcard_allowed_hosts(deploy_checks):
    result = deploy_checks["wildcard"]
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS" in result.stderr


def test_prod_refuses_to_start_with_admin_mfa_switched_off(deploy_checks):
    result = deploy_checks["no_admin_mfa"]
    assert result.returncode != 0
    assert "ADMIN_MFA_REQUIRED" in result.stderr


# --- app.secrets --------------------------------------------------------------------------


def test_resolve_secret_reads_env_reference(monkeypatch):
    monkeypatch.setenv("SGR_TEST_SECRET", "s3cret-value")
    assert resolve_secret("env:SGR_TEST_SECRET") == "s3cret-value"


@pytest.mark.parametrize("value", [None, ""])
def test_resolve_secret_refuses_missing_or_empty_env_variable(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("SGR_TEST_SECRET", raising=False)
    else:
        monkeypatch.setenv("SGR_TEST_SECRET", value)
    with pytest.raises(SecretUnavailable, match="SGR_TEST_SECRET is not set"):
        resolve_secret("env:SGR_TEST_SECRET")


def test_resolve_secret_reads_file_reference_stripped(tmp_path):
    path = tmp_path / "secret"
    path.write_text("  file-secret-value\n")
    assert resolve_secret(f"file:{path}") == "file-secret-value"


def test_resolve_secret_refuses_missing_file(tmp_path):
    with pytest.raises(SecretUnavailable, match="cannot read secret file"):
        resolve_secret(f"file:{tmp_path / 'absent'}")


def test_resolve_secret_refuses_empty_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text("\n  \n")
    with pytest.raises(SecretUnavailable, match="is empty"):
        resolve_secret(f"file:{path}")


@pytest.mark.parametrize("ref", ["", "plain-value", "env:", "file:", "env"])
def test_resolve_secret_refuses_malformed_reference(ref):
    with pytest.raises(SecretUnavailable, match="malformed secret reference"):
        resolve_secret(ref)


def test_resolve_secret_refuses_unknown_scheme_and_unconfigured_vault():
    with pytest.raises(SecretUnavailable, match="unknown secret reference scheme"):
        resolve_secret("https://example.com/key")
    with pytest.raises(SecretUnavailable, match="vault"):
        resolve_secret("vault:secret/app#key")


def test_get_mandatory_secret_prefers_reference_and_names_missing_secret(monkeypatch, tmp_path):
    path = tmp_path / "key"
    path.write_text("from-file")
    monkeypatch.setenv("SGR_TEST_KEY", "from-env")
    monkeypatch.setenv("SGR_TEST_KEY_REF", f"file:{path}")
    assert get_mandatory_secret("SGR_TEST_KEY") == "from-file"

    monkeypatch.delenv("SGR_TEST_KEY_REF")
    assert get_mandatory_secret("SGR_TEST_KEY") == "from-env"

    monkeypatch.delenv("SGR_TEST_KEY")
    with pytest.raises(SecretUnavailable, match="SGR_TEST_KEY is not set"):
        get_mandatory_secret("SGR_TEST_KEY")

"""Render the gateway configuration under var/ and run nginx with it.

    python -m infra.gateway serve   # nginx in front of `make run` (make gateway)

The gateway needs Debian's nginx, libnginx-mod-http-modsecurity and modsecurity-crs
(infra/gateway/ensure-nginx.sh installs them where it may)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.gateway.tls import TlsFiles, ensure_dev_tls

HERE = Path(__file__).resolve().parent
MODSEC_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
UNICODE_MAPPING = Path("/etc/nginx/unicode.mapping")


class GatewayUnavailable(RuntimeError):
    """nginx, its ModSecurity module or the CRS is not installed."""


def missing_parts() -> list[str]:
    """What this machine lacks to run the gateway (empty when it has everything)."""
    missing = []
    if shutil.which("nginx") is None:
        missing.append("nginx")
    if not MODSEC_MODULE.exists():
        missing.append(f"libnginx-mod-http-modsecurity ({MODSEC_MODULE})")
    if not CRS_RULES.is_dir() or not CRS_SETUP.exists():
        missing.append(f"modsecurity-crs ({CRS_RULES})")
    if not UNICODE_MAPPING.exists():
        missing.append(f"ModSecurity unicode.mapping ({UNICODE_MAPPING})")
    return missing


@dataclass(frozen=True)
class GatewayConfig:
    var_dir: Path
    upstream: str  # host:port of the app server
    https_port: int = 8443
    http_port: int = 8080
    listen_host: str = "127.0.0.1"
    rate_general: str = "20r/s"
    burst_general: int = 40
    rate_login: str = "10r/m"
    burst_login: int = 5
    rate_chat: str = "1r/s"
    burst_chat: int = 10
    hosts: tuple[str, ...] = field(default=("localhost", "127.0.0.1"))

    @property
    def https_url(self) -> str:
        return f"https://{self.listen_host}:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.listen_host}:{self.http_port}"


def render(config: GatewayConfig) -> tuple[Path, TlsFiles]:
    """Write nginx.conf and modsecurity.conf under var_dir; return nginx.conf's path."""
    var = config.var_dir
    for sub in ("logs", "tmp", "modsec-tmp", "modsec-data"):
        (var / sub).mkdir(parents=True, exist_ok=True)
    tls = ensure_dev_tls(var / "tls", config.hosts)
    values = {
        "@VAR@": str(var),
        "@HERE@": str(HERE),
        "@TLS_DIR@": str(tls.server_cert.parent),
        "@MODSEC_MODULE@": str(MODSEC_MODULE),
        "@CRS_SETUP@": str(CRS_SETUP),
        "@CRS_RULES@": str(CRS_RULES),
        "@UNICODE_MAPPING@": str(UNICODE_MAPPING),
        "@UPSTREAM@": config.upstream,
        "@LISTEN_HOST@": config.listen_host,
        "@HTTPS_PORT@": str(config.https_port),
        "@HTTP_PORT@": str(config.http_port),
        "@RATE_GENERAL@": config.rate_general,
        "@BURST_GENERAL@": str(config.burst_general),
        "@RATE_LOGIN@": config.rate_login,
        "@BURST_LOGIN@": str(config.burst_login),
        "@RATE_CHAT@": config.rate_chat,
        "@BURST_CHAT@": str(config.burst_chat),
        # As root, workers drop to nobody (who may then only write the temp/log dirs).
        "@USER@": "user nobody nogroup;" if os.geteuid() == 0 else "",
    }
    for name, template in (
        ("nginx.conf", "nginx.conf.tmpl"),
        ("modsecurity.conf", "modsecurity.conf"),
    ):
        text = (HERE / template).read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        (var / name).write_text(text)
    if os.geteuid() == 0:
        for sub in ("logs", "tmp", "modsec-tmp", "modsec-data"):
            shutil.chown(var / sub, "nobody", "nogroup")
    return var / "nginx.conf", tls


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GatewayUnavailable(f"nginx exited with status {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise GatewayUnavailable(f"nginx is not listening on {host}:{port}")


def start(config: GatewayConfig) -> tuple[subprocess.Popen[bytes], TlsFiles]:
    """Check the configuration, then run nginx in the foreground as a child process."""
    missing = missing_parts()
    if missing:
        raise GatewayUnavailable("missing: " + ", ".join(missing))
    conf, tls = render(config)
    base = ["nginx", "-p", str(config.var_dir), "-e", str(config.var_dir / "logs" / "error.log")]
    check = subprocess.run(  # noqa: S603
        [*base, "-t", "-q", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise GatewayUnavailable(f"nginx -t failed:\n{check.stderr}")
    proc = subprocess.Popen([*base, "-c", str(conf), "-g", "daemon off;"])  # noqa: S603
    try:
        _wait_listening(config.listen_host, config.https_port, proc, timeout=30)
    except GatewayUnavailable:
        stop(proc)
        raise
    return proc, tls


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the nginx this process started (graceful quit, then kill)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)

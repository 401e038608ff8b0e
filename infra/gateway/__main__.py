"""`make gateway`: nginx (TLS, WAF, limits) in front of `make run`'s server.

    python -m infra.gateway serve

Starts nginx on https://127.0.0.1:$GATEWAY_HTTPS_PORT (default 8443; HTTP on
$GATEWAY_HTTP_PORT, default 8080, redirects) proxying to the app on $PORT (default 8000),
then runs `make run`'s stack with TRUSTED_PROXIES=127.0.0.1 so the app believes the
gateway's forwarded headers. Ctrl-C stops both."""

from __future__ import annotations

import os
import sys

from infra import run
from infra.gateway import nginx
from infra.services import ROOT


def serve() -> int:
    port = os.environ.get("PORT", "8000")
    config = nginx.GatewayConfig(
        var_dir=ROOT / "var" / "gateway",
        upstream=f"127.0.0.1:{port}",
        https_port=int(os.environ.get("GATEWAY_HTTPS_PORT", "8443")),
        http_port=int(os.environ.get("GATEWAY_HTTP_PORT", "8080")),
    )
    try:
        proc, tls = nginx.start(config)
    except nginx.GatewayUnavailable as exc:
        print(f"==> gateway unavailable: {exc}", file=sys.stderr)
        print("==> run `bash infra/gateway/ensure-nginx.sh` as root to install it", file=sys.stderr)
        return 1
    print(f"==> gateway: {config.https_url}/ (trust {tls.ca_cert} as a CA)", flush=True)
    os.environ.setdefault("TRUSTED_PROXIES", "127.0.0.1")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
    try:
        return run.serve()
    finally:
        nginx.stop(proc)
        print("==> gateway stopped", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        print("usage: python -m infra.gateway serve", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve())

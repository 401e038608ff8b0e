"""Conversation encryption at rest: what reading a conversation costs.

    make bench-crypto

Measures, for the two KEK backends (local keyring; OpenBao Transit via `bao server -dev`
started here on a loopback port):
- a conversation page: unwrap its data key once + decrypt the title and 50 messages;
- a sidebar of 50 conversation titles: one batch unwrap + 50 decryptions, against 50
  single unwraps (what a decrypting model field would do);
- sealing one message (AES-256-GCM).
No database: the keyring and the AEAD are what encryption adds to a read.

Results: bench/results/crypto.json and bench/results/crypto.md.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")
RESULTS = ROOT / "bench" / "results"
RUNS = int(os.environ.get("RUNS", "200"))
MESSAGE = "How many days of annual leave carry over into next year, and who approves it? " * 4


def _timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # warm up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 3),
        "runs": runs,
    }


def _start_bao() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = Path(sys.executable).parent / "bao"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    home = tempfile.mkdtemp(prefix="bench-bao-")
    proc = subprocess.Popen(  # noqa: S603
        [str(binary), "server", "-dev", f"-dev-root-token-id={token}",
         f"-dev-listen-address=127.0.0.1:{port}"],
        env={"HOME": home, "PATH": os.environ.get("PATH", "")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import hvac

    addr = f"http://127.0.0.1:{port}"
    client = hvac.Client(url=addr, token=token, timeout=2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if client.sys.is_initialized() and not client.sys.is_sealed():
                break
        except Exception:  # noqa: BLE001, S110 - not listening yet
            pass
        time.sleep(0.1)
    client.sys.enable_secrets_engine("transit")
    client.secrets.transit.create_key(name="conversations", derived=True)
    return proc, addr, token


def measure(ring: Any) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from app.conversation_crypto import content_aad, key_context, seal, title_aad, unseal

    # One conversation of 50 messages, and 50 conversations for a sidebar.
    key = AESGCM.generate_key(bit_length=256)
    wrapped = ring.wrap(key, context=key_context(1))
    title = seal(key, "Annual leave", title_aad(1))
    messages = [(i, seal(key, MESSAGE, content_aad(i))) for i in range(50)]
    sidebar = []
    for cid in range(100, 150):
        k = AESGCM.generate_key(bit_length=256)
        sidebar.append((cid, ring.wrap(k, context=key_context(cid)), seal(k, "t", title_aad(cid))))

    def page() -> None:
        (k,) = ring.unwrap_many([(wrapped, key_context(1))])
        unseal(k, title, title_aad(1))
        for mid, blob in messages:
            unseal(k, blob, content_aad(mid))

    def titles_batched() -> None:
        keys = ring.unwrap_many([(w, key_context(cid)) for cid, w, _ in sidebar])
        for (cid, _, blob), k in zip(sidebar, keys, strict=True):
            unseal(k, blob, title_aad(cid))

    def titles_one_by_one() -> None:
        for cid, w, blob in sidebar:
            (k,) = ring.unwrap_many([(w, key_context(cid))])
            unseal(k, blob, title_aad(cid))

    runs_slow = max(RUNS // 10, 10)
    return {
        "page_50_messages": _timed(page, RUNS),
        "sidebar_50_titles_batched": _timed(titles_batched, RUNS),
        "sidebar_50_titles_one_unwrap_each": _timed(titles_one_by_one, runs_slow),
        "seal_one_message": _timed(lambda: seal(key, MESSAGE, content_aad(7)), RUNS),
    }


def main() -> None:
    import django

    django.setup()
    from app.keyring import LocalKeyring, TransitKeyring

    results: dict[str, Any] = {
        "local": measure(LocalKeyring(current="k1", keys={"k1": os.urandom(32)}))
    }
    proc, addr, token = _start_bao()
    try:
        os.environ.update(VAULT_ADDR=addr, VAULT_TOKEN=token)
        results["vault_transit"] = measure(TransitKeyring(mount="transit", name="conversations"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crypto.json").write_text(json.dumps(results, indent=2))
    lines = [
        "| backend | measure | p50 ms | p95 ms | runs |",
        "|---|---|---|---|---|",
    ]
    for backend, rows in results.items():
        for name, row in rows.items():
            lines.append(
                f"| {backend} | {name} | {row['p50_ms']} | {row['p95_ms']} | {row['runs']} |"
            )
    table = "\n".join(lines) + "\n"
    (RESULTS / "crypto.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

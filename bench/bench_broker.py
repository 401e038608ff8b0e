"""The model broker's cost and its recovery from a failing provider.

    make bench-broker               # ITERATIONS=400 by default

Against the loopback provider server (zero added latency), in one process and one run:

1. Added latency: the same streamed chat call made directly with the official SDK and
   through `broker.complete_stream` (tier routing, rate + budget checks and breaker in
   Redis, failover loop), interleaved call by call; p50/p99 of each, the paired
   difference and the ratio; time to first token likewise. For the OpenAI and the
   Anthropic SDK.
2. Failover recovery: the primary (OpenAI SDK) starts answering 503 on every call; turns
   keep coming. Reported: the first turn's latency (it retries the primary once, with
   jittered backoff, then fails over), the turns until the breaker opens, steady-state
   latency with the breaker open, and failed turns (target: zero while a provider is healthy).

Results: bench/results/broker.json and bench/results/broker.md.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")
os.environ["LOOPBACK_PROVIDER_ENABLED"] = "1"  # dev settings; prod refuses it
os.environ.setdefault("LOOPBACK_PROVIDER_KEY", "sk-loopback-bench")

ITERATIONS = int(os.environ.get("ITERATIONS", "400"))
WARMUP = 40
FAILOVER_TURNS = int(os.environ.get("FAILOVER_TURNS", "60"))
RESULTS = ROOT / "bench" / "results"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _timed(events: Iterator[Any], is_token: Callable[[Any], bool]) -> tuple[float, float]:
    """(time to first token, total time) of consuming a stream, in seconds."""
    start = time.perf_counter()
    first = 0.0
    for event in events:
        if not first and is_token(event):
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def _summary(direct: list[tuple[float, float]], brokered: list[tuple[float, float]]) -> dict:
    out: dict[str, Any] = {}
    for label, index in (("total", 1), ("ttft", 0)):
        d = [x[index] for x in direct]
        b = [x[index] for x in brokered]
        diff = [bb - dd for bb, dd in zip(b, d, strict=True)]
        out[label] = {
            "direct_p50_ms": _ms(_pct(d, 0.5)),
            "direct_p99_ms": _ms(_pct(d, 0.99)),
            "broker_p50_ms": _ms(_pct(b, 0.5)),
            "broker_p99_ms": _ms(_pct(b, 0.99)),
            "added_p50_ms": _ms(_pct(diff, 0.5)),
            "added_p99_ms": _ms(_pct(diff, 0.99)),
            "ratio_p50": round(_pct(b, 0.5) / _pct(d, 0.5), 3),
        }
    return out


def main() -> int:
    import django

    django.setup()
    import anthropic
    import openai
    import yaml
    from django.conf import settings
    from django.core.management import call_command

    from app.identity import Tier
    from broker import services as broker
    from broker.loopback import Fault, LoopbackServer
    from broker.types import CompletionRequest, TokenDelta

    call_command("migrate", verbosity=0)  # audit events are written on failover
    settings.BROKER_REDIS_PREFIX = f"bench-broker-{os.getpid()}"
    settings.BROKER_USER_REQUESTS_PER_MINUTE = 10**9  # checked on every call, never hit
    settings.BROKER_USER_DAILY_TOKENS = 10**12
    workdir = Path(tempfile.mkdtemp(prefix="bench-broker-"))

    def use(entries: list[dict]) -> None:
        path = workdir / f"providers-{len(list(workdir.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump({"providers": entries}))
        settings.LLM_PROVIDERS_FILE = str(path)
        broker.configured_providers.cache_clear()

    def entry(name: str, kind: str, server: LoopbackServer, priority: int) -> dict:
        return {
            "name": name,
            "kind": kind,
            "model": f"model-{name}",
            "base_url": server.url if kind == "anthropic" else server.openai_base_url,
            "api_key_ref": "env:LOOPBACK_PROVIDER_KEY",
            "max_tier": "internal",
            "priority": priority,
            "timeout_s": 10,
            "redact_pii": False,
        }

    request = CompletionRequest(
        system="Answer only from the passages.\n[1] (Memo) The answer is 42.",
        user_message="What is the answer?",
        context=(),
        sensitivity=Tier.INTERNAL,
        user_hash=broker.user_hash(1),
        request_id="bench-broker",
        actor_id=None,
    )
    is_delta: Callable[[Any], bool] = lambda e: isinstance(e, TokenDelta)  # noqa: E731
    results: dict[str, Any] = {"iterations": ITERATIONS, "overhead": {}}

    with LoopbackServer() as primary, LoopbackServer() as secondary:
        # 1. Added latency, per SDK ---------------------------------------------------------
        oa = openai.OpenAI(api_key="k", base_url=primary.openai_base_url, max_retries=0)
        an = anthropic.Anthropic(api_key="k", base_url=primary.url, max_retries=0)

        def direct_openai() -> Iterator[Any]:
            stream = oa.chat.completions.create(
                model="model-p",
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.user_message},
                ],
                stream=True,
                user=request.user_hash,
                stream_options={"include_usage": True},
                max_completion_tokens=800,
            )
            with stream:
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content

        def direct_anthropic() -> Iterator[Any]:
            stream = an.messages.create(
                model="model-p",
                max_tokens=800,
                system=request.system,
                messages=[{"role": "user", "content": request.user_message}],
                metadata={"user_id": request.user_hash},
                stream=True,
            )
            with stream:
                for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text

        for kind, direct in (("openai", direct_openai), ("anthropic", direct_anthropic)):
            use([entry("p", kind, primary, 1)])
            direct_times: list[tuple[float, float]] = []
            broker_times: list[tuple[float, float]] = []
            for i in range(WARMUP + ITERATIONS):
                d = _timed(direct(), lambda e: bool(e))
                b = _timed(broker.complete_stream(request), is_delta)
                if i >= WARMUP:
                    direct_times.append(d)
                    broker_times.append(b)
            primary.reset()
            results["overhead"][kind] = _summary(direct_times, broker_times)

        # 2. Failover recovery --------------------------------------------------------------
        use([entry("primary", "openai", primary, 1), entry("secondary", "anthropic", secondary, 2)])
        healthy = [_timed(broker.complete_stream(request), is_delta)[1] for _ in range(WARMUP)]
        primary.reset()
        primary.set_scenario(Fault("status", status=503))
        turns: list[dict[str, Any]] = []
        failed = 0
        for _ in range(FAILOVER_TURNS):
            start = time.perf_counter()
            try:
                final = list(broker.complete_stream(request))[-1]
                provider = getattr(final, "provider", "?")
            except Exception as exc:  # noqa: BLE001 - counted, the bench goes on
                failed += 1
                provider = type(exc).__name__
            turns.append({"ms": _ms(time.perf_counter() - start), "provider": provider})
        primary_calls = len(primary.recorded)
        steady = [t["ms"] for t in turns[int(settings.BROKER_BREAKER_FAILURES) + 2 :]]
        results["failover"] = {
            "healthy_p50_ms": _ms(statistics.median(healthy)),
            "first_failover_turn_ms": turns[0]["ms"],
            "first_turn_provider": turns[0]["provider"],
            "primary_calls_before_breaker_open": primary_calls,
            "breaker_threshold": int(settings.BROKER_BREAKER_FAILURES),
            "max_attempts_per_provider": int(settings.BROKER_MAX_ATTEMPTS),
            "steady_open_p50_ms": round(statistics.median(steady), 3),
            "steady_open_p99_ms": round(_pct(steady, 0.99), 3),
            "turns": FAILOVER_TURNS,
            "failed_turns": failed,
            "first_turns": turns[:5],
        }

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "broker.json").write_text(json.dumps(results, indent=2))
    md = _markdown(results)
    (RESULTS / "broker.md").write_text(md)
    print(md)
    return 0


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Added latency over a direct SDK call ({results['iterations']} interleaved streamed "
        "calls each, loopback server, zero added latency):",
        "",
        "| SDK | metric | direct p50 / p99 ms | broker p50 / p99 ms | added p50 / p99 ms "
        "| ratio p50 |",
        "|---|---|---|---|---|---|",
    ]
    for kind, by_metric in results["overhead"].items():
        for metric, r in by_metric.items():
            lines.append(
                f"| {kind} | {metric} | {r['direct_p50_ms']} / {r['direct_p99_ms']} "
                f"| {r['broker_p50_ms']} / {r['broker_p99_ms']} "
                f"| {r['added_p50_ms']} / {r['added_p99_ms']} | {r['ratio_p50']} |"
            )
    f = results["failover"]
    lines += [
        "",
        "Failover when the primary starts answering 503 on every call:",
        "",
        "| measure | value |",
        "|---|---|",
        f"| healthy turn p50 | {f['healthy_p50_ms']} ms |",
        f"| first turn after the fault (retry + backoff, then failover) "
        f"| {f['first_failover_turn_ms']} ms ({f['first_turn_provider']}) |",
        f"| calls to the primary before its breaker opened | "
        f"{f['primary_calls_before_breaker_open']} (threshold {f['breaker_threshold']}, "
        f"{f['max_attempts_per_provider']} attempts per turn) |",
        f"| steady state, breaker open, p50 / p99 | {f['steady_open_p50_ms']} / "
        f"{f['steady_open_p99_ms']} ms |",
        f"| failed turns | {f['failed_turns']} of {f['turns']} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

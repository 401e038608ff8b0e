"""The nginx gateway: TLS 1.2+ only with HSTS and an HTTP redirect, SSE passed through
unbuffered, the WAF (ModSecurity + OWASP CRS, paranoia level 1) blocking classic SQLi/XSS
probes while the app's own traffic passes, request limits, bot deny-list and floods."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.test import Client

from app.models import BreakGlassGrant, User
from app.services import token_issue

QUESTIONS = (
    "What is the per diem for hotels in London?",
    "How do I fail over the primary database (step by step)?",
    "What's on the deploy checklist; what comes first?",
    "Who approves vendor payments over 10,000 EUR & how long does it take?",
)


def _bearer(username: str, scopes: frozenset[str] = frozenset({"chat", "search", "documents"})):
    raw, _ = token_issue(user=User.objects.get(username=username), scopes=scopes, ttl_s=300)
    return {"Authorization": f"Bearer {raw}"}


def _tls_context(gateway, *, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(gateway.ca_cert))
    context.minimum_version = minimum
    context.maximum_version = maximum
    if maximum < ssl.TLSVersion.TLSv1_2:
        # Let this client offer the old protocol at all: only the server may refuse it.
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def _handshake(gateway, context: ssl.SSLContext) -> str:
    port = gateway.config.https_port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())


# --- TLS ----------------------------------------------------------------------------------


def test_tls_1_2_and_1_3_work_and_https_replies_carry_hsts_and_permissions_policy(stub_gateway):
    v12 = ssl.TLSVersion.TLSv1_2
    v13 = ssl.TLSVersion.TLSv1_3
    assert (
        _handshake(stub_gateway, _tls_context(stub_gateway, minimum=v12, maximum=v12)) == "TLSv1.2"
    )
    assert (
        _handshake(stub_gateway, _tls_context(stub_gateway, minimum=v13, maximum=v13)) == "TLSv1.3"
    )
    with stub_gateway.client() as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=63072000")
    assert "camera=()" in response.headers["permissions-policy"]
    assert "nginx/" not in response.headers.get("server", "")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_protocols_are_refused(stub_gateway, version):
    context = _tls_context(stub_gateway, minimum=ssl.TLSVersion.MINIMUM_SUPPORTED, maximum=version)
    with pytest.raises(ssl.SSLError):
        _handshake(stub_gateway, context)


def test_plain_http_is_redirected_to_https(stub_gateway):
    response = httpx.get(f"{stub_gateway.config.http_url}/accounts/login/?next=/", timeout=10)
    assert response.status_code == 301
    assert response.headers["location"] == (
        f"https://127.0.0.1:{stub_gateway.config.https_port}/accounts/login/?next=/"
    )


# --- SSE ----------------------------------------------------------------------------------


class _Upstream(BaseHTTPRequestHandler):
    """A stand-in app for the gateway tests that need no database: GET answers 200 "ok";
    POST sends one SSE event, then holds the stream open until the test says it has
    received that event through the gateway (or 20 s pass), then sends the last one."""

    protocol_version = "HTTP/1.0"
    received_first = threading.Event()
    sent_second = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/api/v1/chat":
            self.do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")  # and no X-Accel-Buffering header
        self.end_headers()
        self.wfile.write(b'event: token\ndata: {"text": "first"}\n\n')
        self.wfile.flush()
        self.received_first.wait(timeout=20)
        self.sent_second.set()
        self.wfile.write(b'event: done\ndata: {"text": "last"}\n\n')
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@pytest.fixture
def upstream() -> Any:
    _Upstream.received_first.clear()
    _Upstream.sent_second.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    _Upstream.received_first.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def stub_gateway(start_gateway, upstream):
    return start_gateway(upstream)


def test_sse_passes_the_gateway_unbuffered(stub_gateway):
    gateway = stub_gateway
    received = b""
    with gateway.client() as client:
        with client.stream(
            "POST",
            "/api/v1/chat",
            json={"message": "hello"},
            headers={"Accept": "text/event-stream"},
        ) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            while b"first" not in received:
                received += next(chunks)
            # The first event arrived while the upstream was still holding the stream open.
            assert not _Upstream.sent_second.is_set()
            _Upstream.received_first.set()
            for chunk in chunks:
                received += chunk
    assert b"last" in received


@pytest.mark.django_db(transaction=True)
def test_the_apps_sse_chat_streams_through_the_gateway_and_waf(app_gateway):
    events = []
    with app_gateway.client() as client:
        with client.stream(
            "POST",
            "/api/v1/chat",
            json={"message": QUESTIONS[0]},
            headers={"Accept": "text/event-stream", **_bearer("alice")},
        ) as response:
            assert response.status_code == 200, app_gateway.log_tail()
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line for line in response.iter_lines() if line.startswith("event:")]
    assert events[0] == "event: token"
    assert events[-1] == "event: done"


# --- WAF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/search?q=1%27%20UNION%20SELECT%20password%20FROM%20app_user--", None),
        ("GET", "/?next=%22%3E%3Cscript%3Ealert(document.cookie)%3C/script%3E", None),
        ("POST", "/api/v1/chat", {"message": "<script>alert(document.cookie)</script>"}),
        ("POST", "/api/v1/chat", {"message": "x' OR '1'='1' UNION SELECT * FROM app_user --"}),
    ],
)
def test_waf_blocks_classic_sqli_and_xss_probes(stub_gateway, method, path, body):
    with stub_gateway.client() as client:
        response = client.request(method, path, json=body)
    assert response.status_code == 403
    assert "ModSecurity: Access denied" in stub_gateway.log_tail()


@pytest.mark.django_db(transaction=True)
def test_the_apps_own_traffic_passes_the_waf(app_gateway):
    with app_gateway.client() as client:
        for question in QUESTIONS:
            response = client.post(
                "/api/v1/chat", json={"message": question}, headers=_bearer("alice")
            )
            assert response.status_code == 200, (question, app_gateway.log_tail())
            assert response.json()["blocked"] is False
        search = client.get("/api/v1/search", params={"q": "per diem"}, headers=_bearer("bob"))
        assert search.status_code == 200

        upload = client.post(
            "/api/v1/documents",
            headers=_bearer("admin"),
            data={"title": "Gateway notes", "classification": "internal", "allow_groups": "hr"},
            files={"file": ("notes.md", b"# Notes\n\nSELECT is a keyword; <b>bold</b>.\n")},
        )
        assert upload.status_code == 202, app_gateway.log_tail()


@pytest.mark.django_db(transaction=True)
def test_login_form_and_admin_forms_pass_the_waf(app_gateway):
    with app_gateway.client() as client:
        page = client.get("/accounts/login/")
        assert page.status_code == 200
        token = client.cookies["csrftoken"]
        login = client.post(
            "/accounts/login/",
            data={"login": "bob", "password": "bob-demo-pass-2026", "csrfmiddlewaretoken": token},
            # Over HTTPS Django's CSRF check wants the Referer a browser sends.
            headers={"Referer": f"{app_gateway.url}/accounts/login/"},
        )
        assert login.status_code == 302, (login.text[:800], app_gateway.log_tail())
        assert login.headers["location"] == "/"

    # An admin session (MFA passed), used through the gateway for a real admin form.
    django_client = Client()
    django_client.force_login(User.objects.get(username="admin"))
    session = django_client.cookies["sessionid"].value
    alice = User.objects.get(username="alice")
    with app_gateway.client(cookies={"sessionid": session}) as client:
        form = client.get("/admin/app/breakglassgrant/add/")
        assert form.status_code == 200, app_gateway.log_tail()
        response = client.post(
            "/admin/app/breakglassgrant/add/",
            data={
                "subject": str(alice.pk),
                "reason": "Investigating ticket SEC-1234: user's report of a wrong answer",
                "minutes": "10",
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": f"{app_gateway.url}/admin/app/breakglassgrant/add/"},
        )
        assert response.status_code == 302, app_gateway.log_tail()
    assert BreakGlassGrant.objects.filter(subject=alice).exists()


# --- limits, bots, floods -----------------------------------------------------------------


def test_known_scanner_user_agents_are_refused(stub_gateway):
    with stub_gateway.client(headers={"User-Agent": "sqlmap/1.7.2#stable"}) as client:
        assert client.get("/healthz").status_code == 403
    with stub_gateway.client(headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}) as client:
        assert client.get("/healthz").status_code == 200


def test_oversized_bodies_and_headers_are_refused(stub_gateway):
    with stub_gateway.client() as client:
        big = client.post(
            "/api/v1/chat",
            content=json.dumps({"message": "a" * 100_000}),
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413
        huge_header = client.get("/healthz", headers={"X-Filler": "h" * 16_000})
        assert huge_header.status_code in (400, 431, 494)


def test_login_flood_gets_429_from_the_gateway(stub_gateway):
    statuses = []
    with stub_gateway.client() as client:
        for _ in range(20):
            response = client.post("/accounts/login/", data={"login": "x", "password": "y"})
            statuses.append(response.status_code)
        assert client.get("/accounts/login/").status_code == 200  # reading is not limited
    assert 429 in statuses
    assert statuses.index(429) <= 7  # burst 5 (+1) then refused


def test_general_flood_gets_429_from_the_gateway(start_gateway, upstream):
    gateway = start_gateway(upstream, rate_general="2r/s", burst_general=5)
    with gateway.client() as client:
        statuses = [client.get("/healthz").status_code for _ in range(30)]
    assert 429 in statuses
    assert statuses[0] == 200

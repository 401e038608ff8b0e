"""A small OpenID Connect identity provider on a loopback port, for the SSO tests: discovery
document, JWKS, authorize (auto-approves the next identity), token (client secret + PKCE
S256 checked; RS256-signed ID token via pyjwt) and userinfo endpoints. No internet."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    claims: dict[str, Any]


@dataclass
class OidcProvider:
    client_id: str
    client_secret: str
    base_url: str = ""
    kid: str = field(default_factory=lambda: secrets.token_hex(4))
    key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    # The identity the next authorization issues, and claims to override in its ID token.
    identity: dict[str, Any] = field(default_factory=dict)
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.base_url,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "userinfo_endpoint": f"{self.base_url}/userinfo",
            "jwks_uri": f"{self.base_url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, claims: dict[str, Any], client_id: str) -> str:
        now = int(time.time())
        payload = {
            "iss": self.base_url,
            "aud": client_id,
            "iat": now,
            "exp": now + 300,
            **claims,
            **self.id_token_overrides,
        }
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._json(200, provider.discovery())
            elif url.path == "/jwks":
                self._json(200, provider.jwks())
            elif url.path == "/authorize":
                if query.get("client_id") != provider.client_id:
                    self._json(400, {"error": "unauthorized_client"})
                    return
                if query.get("code_challenge_method") != "S256":
                    self._json(400, {"error": "invalid_request", "detail": "PKCE required"})
                    return
                code = secrets.token_urlsafe(16)
                provider.grants[code] = Grant(
                    client_id=query["client_id"],
                    redirect_uri=query["redirect_uri"],
                    code_challenge=query["code_challenge"],
                    claims=dict(provider.identity),
                )
                target = (
                    query["redirect_uri"]
                    + "?"
                    + urlencode({"code": code, "state": query.get("state", "")})
                )
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
            elif url.path == "/userinfo":
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                claims = provider.access_tokens.get(token)
                if claims is None:
                    self._json(401, {"error": "invalid_token"})
                else:
                    self._json(200, claims)
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            provider.token_requests.append(form)
            if urlsplit(self.path).path != "/token":
                self._json(404, {"error": "not_found"})
                return
            grant = provider.grants.pop(form.get("code", ""), None)
            if (
                form.get("client_id") != provider.client_id
                or form.get("client_secret") != provider.client_secret
            ):
                self._json(401, {"error": "invalid_client"})
                return
            if grant is None or grant.redirect_uri != form.get("redirect_uri"):
                self._json(400, {"error": "invalid_grant"})
                return
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if challenge != grant.code_challenge:
                self._json(400, {"error": "invalid_grant", "detail": "PKCE verifier"})
                return
            access = secrets.token_urlsafe(24)
            provider.access_tokens[access] = grant.claims
            self._json(
                200,
                {
                    "access_token": access,
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": provider.id_token(grant.claims, grant.client_id),
                },
            )

    return Handler


def start(provider: OidcProvider) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread

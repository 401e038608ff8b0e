"""OpenAPI description of our authentication (drf-spectacular extension)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PrincipalAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "app.api_auth.PrincipalAuthentication"
    name = ["bearerAuth", "sessionAuth"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "bearer", "description": "short-lived API token"},
            {"type": "apiKey", "in": "cookie", "name": "sessionid"},
        ]

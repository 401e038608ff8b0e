"""ASGI entry point (uvicorn app.asgi:application)."""

import os
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

django_application = get_asgi_application()

# uvicorn serves no static files: in dev and tests Django's own handler does; in
# production the gateway serves the collected files.
application: Any = (
    ASGIStaticFilesHandler(django_application) if settings.SERVE_STATIC else django_application
)

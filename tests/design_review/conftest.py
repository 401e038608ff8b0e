"""Connections as the owner and superuser roles, for changing what only they may change."""

from tests.audit.conftest import owner_db, superuser_db

__all__ = ["owner_db", "superuser_db"]

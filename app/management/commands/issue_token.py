from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from app.identity import ALL_SCOPES
from app.models import User
from app.services import TokenError, token_issue


class Command(BaseCommand):
    help = "Print a short-lived, scoped bearer token for the API."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--scopes",
            default=",".join(sorted(ALL_SCOPES)),
            help="comma-separated: chat,search,documents",
        )
        parser.add_argument(
            "--ttl",
            type=int,
            default=None,
            help=f"lifetime in seconds (default {settings.API_TOKEN_DEFAULT_TTL_S})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = User.objects.get(username=options["username"])
        except User.DoesNotExist:
            raise CommandError(f"no such user: {options['username']}") from None
        scopes = frozenset(s.strip() for s in options["scopes"].split(",") if s.strip())
        try:
            raw, token = token_issue(user=user, scopes=scopes, ttl_s=options["ttl"])
        except TokenError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"token {token.id} for {user.username}, scopes {','.join(token.scopes)}, "
            f"expires {token.expires_at.isoformat()}"
        )
        self.stdout.write(raw)

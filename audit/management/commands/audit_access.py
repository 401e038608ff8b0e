from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from audit.selectors import events_touching_document


class Command(BaseCommand):
    help = "Who could have seen document D, and when: every event that showed or changed it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--document", type=int, required=True)

    @staticmethod
    def _actor(names: dict[int, str], actor_id: int | None) -> str:
        if actor_id is None:
            return "-"
        return names.get(actor_id, str(actor_id))

    def handle(self, *args: Any, **options: Any) -> None:
        document_id = options["document"]
        events = list(events_touching_document(document_id))
        names = dict(
            get_user_model()
            .objects.filter(pk__in={e.actor_id for e in events if e.actor_id})
            .values_list("pk", "username")
        )
        if not events:
            self.stdout.write(f"no recorded access to document {document_id}")
            return
        for event in events:
            meta = event.metadata
            versions = sorted(
                {c["version"] for c in meta.get("context", []) if c.get("document") == document_id}
            )
            acl = meta.get("acl", {})
            self.stdout.write(
                "  ".join(
                    [
                        event.created_at.isoformat(timespec="seconds"),
                        f"{event.event_type:<18}",
                        f"actor={self._actor(names, event.actor_id)}",
                        f"decision={event.decision or '-'}",
                        f"versions={','.join(map(str, versions)) or '-'}",
                        f"clearance={acl.get('clearance', '-')}",
                        f"groups={','.join(acl.get('groups', [])) or '-'}",
                        f"request={event.request_id or '-'}",
                        f"event={event.pk}",
                    ]
                )
            )

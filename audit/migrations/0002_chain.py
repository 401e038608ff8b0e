"""Hash-chain the audit trail and make it append-only at the database level.

TRUNCATE is left to privileges (the application role gets no TRUNCATE on this table once
roles are split): a statement trigger would also block the test runner's table flush.
"""

import django.utils.timezone
from django.db import migrations, models

from audit.chain import GENESIS_HASH, canonical_payload, chain_hash


def chain_existing_rows(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    prev = GENESIS_HASH
    for event in AuditEvent.objects.order_by("id").iterator():
        payload = canonical_payload(
            created_at=event.created_at,
            request_id=event.request_id,
            actor_id=event.actor_id,
            token_id=event.token_id,
            event_type=event.event_type,
            subject=event.subject,
            decision=event.decision,
            reason=event.reason,
            metadata=event.metadata,
        )
        event.prev_hash = prev
        event.row_hash = chain_hash(prev, payload)
        event.save(update_fields=["prev_hash", "row_hash"])
        prev = event.row_hash


APPEND_ONLY = """
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_append_only_rows BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
"""

DROP_APPEND_ONLY = """
DROP TRIGGER IF EXISTS audit_append_only_rows ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="created_at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="row_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(chain_existing_rows, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="row_hash",
            field=models.CharField(max_length=64, unique=True),
        ),
        migrations.RunSQL(APPEND_ONLY, DROP_APPEND_ONLY),
    ]

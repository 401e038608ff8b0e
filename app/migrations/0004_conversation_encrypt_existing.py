"""Encryption at rest, step 2 of 3: encrypt the rows written before it under the configured
KEK (app/keyring.py). Needs the KEK only when there are rows to encrypt."""

from typing import Any

from django.db import migrations


def encrypt_existing(apps: Any, schema_editor: Any) -> None:
    from app.conversation_crypto import legacy_rows_encrypt

    legacy_rows_encrypt(apps.get_model("app", "Conversation"), apps.get_model("app", "Message"))


class Migration(migrations.Migration):
    dependencies = [
        ("app", "0003_conversation_encryption_fields"),
    ]

    operations = [
        migrations.RunPython(encrypt_existing, migrations.RunPython.noop),
    ]

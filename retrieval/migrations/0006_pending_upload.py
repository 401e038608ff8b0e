"""Uploaded files wait here for the ingestion worker, which extracts and indexes them.

Row-level security, forced: the raw bytes of a document are never readable through a
principal's scope, only through the privileged path that ingestion and admin use."""

import django.db.models.deletion
from django.db import migrations, models

MODE = "current_setting('app.rls_mode', true)"

ENABLE = f"""
ALTER TABLE retrieval_pendingupload ENABLE ROW LEVEL SECURITY;
ALTER TABLE retrieval_pendingupload FORCE ROW LEVEL SECURITY;
CREATE POLICY pendingupload_privileged ON retrieval_pendingupload FOR ALL
    USING ({MODE} = 'privileged') WITH CHECK ({MODE} = 'privileged');
"""

DISABLE = """
DROP POLICY pendingupload_privileged ON retrieval_pendingupload;
ALTER TABLE retrieval_pendingupload NO FORCE ROW LEVEL SECURITY;
ALTER TABLE retrieval_pendingupload DISABLE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0005_document_pii_scan"),
    ]

    operations = [
        migrations.CreateModel(
            name="PendingUpload",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("source_name", models.CharField(max_length=300)),
                ("data", models.BinaryField()),
                ("sha256", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "document",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="pending",
                        to="retrieval.document",
                    ),
                ),
            ],
        ),
        migrations.RunSQL(ENABLE, DISABLE),
    ]

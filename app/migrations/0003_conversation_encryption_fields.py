"""Encryption at rest, step 1 of 3: ciphertext and wrapped-key columns next to the
plaintext ones."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("app", "0002_break_glass"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="title_ct",
            field=models.BinaryField(null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="data_key",
            field=models.BinaryField(null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="kek_id",
            field=models.CharField(db_index=True, default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="message",
            name="content_ct",
            field=models.BinaryField(null=True),
        ),
    ]

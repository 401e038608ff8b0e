"""Encryption at rest, step 3 of 3: the plaintext columns go; ciphertext is mandatory."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("app", "0004_conversation_encrypt_existing"),
    ]

    operations = [
        migrations.RemoveField(model_name="conversation", name="title"),
        migrations.RemoveField(model_name="message", name="content"),
        migrations.AlterField(
            model_name="conversation", name="title_ct", field=models.BinaryField()
        ),
        migrations.AlterField(
            model_name="conversation", name="data_key", field=models.BinaryField()
        ),
        migrations.AlterField(
            model_name="message", name="content_ct", field=models.BinaryField()
        ),
    ]

"""Copy each document's tier and ACL onto its chunks, kept in step by triggers, and make
the chunk read policy a predicate on the chunk row (so a filtered HNSW scan can apply it)."""

import django.contrib.postgres.fields
import django.contrib.postgres.indexes
from django.db import migrations, models


MODE = "current_setting('app.rls_mode', true)"

# Fill a chunk's access columns from its document; run on insert and on any write to them,
# so the copy cannot be set to anything but the document's real tier and ACL.
# If the document is not visible (no privileged scope), the NOT NULL columns make it fail.
FILL = """
CREATE FUNCTION retrieval_chunk_access_fill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT d.classification, d.all_authenticated,
           coalesce((SELECT array_agg(u.user_id ORDER BY u.user_id)
                     FROM retrieval_document_allowed_users u WHERE u.document_id = d.id), '{}'),
           coalesce((SELECT array_agg(g.group_id ORDER BY g.group_id)
                     FROM retrieval_document_allowed_groups g WHERE g.document_id = d.id), '{}')
      INTO NEW.tier, NEW.all_authenticated, NEW.readable_user_ids, NEW.readable_group_ids
      FROM retrieval_document d WHERE d.id = NEW.document_id;
    RETURN NEW;
END $$;

CREATE TRIGGER chunk_access_fill
    BEFORE INSERT OR UPDATE OF document_id, tier, all_authenticated, readable_user_ids,
        readable_group_ids ON retrieval_chunk
    FOR EACH ROW EXECUTE FUNCTION retrieval_chunk_access_fill();

-- A change of a document's tier or all-authenticated flag: refresh its chunks.
CREATE FUNCTION retrieval_document_access_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE retrieval_chunk SET tier = NEW.classification WHERE document_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER document_access_sync
    AFTER UPDATE OF classification, all_authenticated ON retrieval_document
    FOR EACH ROW
    WHEN (OLD.classification IS DISTINCT FROM NEW.classification
          OR OLD.all_authenticated IS DISTINCT FROM NEW.all_authenticated)
    EXECUTE FUNCTION retrieval_document_access_sync();

-- Grants added or removed (one statement per ACL edit): refresh the documents touched.
CREATE FUNCTION retrieval_grant_access_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE retrieval_chunk SET tier = tier
     WHERE document_id IN (SELECT DISTINCT document_id FROM changed);
    RETURN NULL;
END $$;

CREATE FUNCTION retrieval_grant_access_sync_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE retrieval_chunk SET tier = tier
     WHERE document_id IN (OLD.document_id, NEW.document_id);
    RETURN NULL;
END $$;
"""

GRANT_TRIGGERS = "".join(
    f"""
CREATE TRIGGER {table}_ins_sync AFTER INSERT ON retrieval_document_{table}
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION retrieval_grant_access_sync();
CREATE TRIGGER {table}_del_sync AFTER DELETE ON retrieval_document_{table}
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION retrieval_grant_access_sync();
CREATE TRIGGER {table}_upd_sync AFTER UPDATE ON retrieval_document_{table}
    FOR EACH ROW EXECUTE FUNCTION retrieval_grant_access_sync_row();
"""
    for table in ("allowed_users", "allowed_groups")
)

# Existing chunks (the migration runs outside any principal: lift RLS for this transaction).
BACKFILL = """
SELECT set_config('app.rls_mode', 'privileged', true),
       set_config('app.privileged_ceiling', '3', true);
UPDATE retrieval_chunk SET tier = tier;
"""

# One SELECT policy on chunks, written as an OR of arms that each carry an indexable
# predicate on the row, so the planner can answer a narrow principal with a BitmapOr over
# the GIN and tier indexes (a separate FOR ALL privileged policy would be OR-ed in as an
# arm no index can serve, forcing a scan of every chunk). Each setting is set only by its
# own kind of scope (retrieval/rls.py) and is NULL otherwise, so the principal arms match
# nothing in a privileged scope and the privileged arm nothing in a principal scope; no
# `app.rls_mode` test is needed here, and leaving it out keeps the planner's row estimate
# sane (it cannot estimate a comparison with a setting, and guesses 0.5% per test).
CLEARANCE = "nullif(current_setting('app.clearance', true), '')::int"
CEILING = "nullif(current_setting('app.privileged_ceiling', true), '')::int"
USER_ID = "nullif(current_setting('app.user_id', true), '')::bigint"
GROUP_IDS = "string_to_array(nullif(current_setting('app.group_ids', true), ''), ',')::int[]"

POLICY = f"""
DROP POLICY chunk_principal_read ON retrieval_chunk;
DROP POLICY chunk_privileged ON retrieval_chunk;
CREATE POLICY chunk_read ON retrieval_chunk FOR SELECT USING (
    (all_authenticated AND tier <= {CLEARANCE})
    OR (readable_user_ids @> ARRAY[{USER_ID}] AND tier <= {CLEARANCE})
    OR (readable_group_ids && {GROUP_IDS} AND tier <= {CLEARANCE})
    OR (tier <= {CEILING})
);
CREATE POLICY chunk_privileged_insert ON retrieval_chunk FOR INSERT
    WITH CHECK ({MODE} = 'privileged');
CREATE POLICY chunk_privileged_update ON retrieval_chunk FOR UPDATE
    USING ({MODE} = 'privileged') WITH CHECK ({MODE} = 'privileged');
CREATE POLICY chunk_privileged_delete ON retrieval_chunk FOR DELETE
    USING ({MODE} = 'privileged');
"""

UNDO = f"""
DROP POLICY chunk_read ON retrieval_chunk;
DROP POLICY chunk_privileged_insert ON retrieval_chunk;
DROP POLICY chunk_privileged_update ON retrieval_chunk;
DROP POLICY chunk_privileged_delete ON retrieval_chunk;
CREATE POLICY chunk_privileged ON retrieval_chunk FOR ALL
    USING ({MODE} = 'privileged') WITH CHECK ({MODE} = 'privileged');
CREATE POLICY chunk_principal_read ON retrieval_chunk FOR SELECT USING (
    {MODE} = 'principal'
    AND EXISTS (SELECT 1 FROM retrieval_document d WHERE d.id = retrieval_chunk.document_id)
);
DROP TRIGGER allowed_users_ins_sync ON retrieval_document_allowed_users;
DROP TRIGGER allowed_users_del_sync ON retrieval_document_allowed_users;
DROP TRIGGER allowed_users_upd_sync ON retrieval_document_allowed_users;
DROP TRIGGER allowed_groups_ins_sync ON retrieval_document_allowed_groups;
DROP TRIGGER allowed_groups_del_sync ON retrieval_document_allowed_groups;
DROP TRIGGER allowed_groups_upd_sync ON retrieval_document_allowed_groups;
DROP TRIGGER document_access_sync ON retrieval_document;
DROP TRIGGER chunk_access_fill ON retrieval_chunk;
DROP FUNCTION retrieval_grant_access_sync_row();
DROP FUNCTION retrieval_grant_access_sync();
DROP FUNCTION retrieval_document_access_sync();
DROP FUNCTION retrieval_chunk_access_fill();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0003_row_level_security"),
    ]

    operations = [
        migrations.AddField(
            model_name="chunk",
            name="all_authenticated",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="chunk",
            name="readable_group_ids",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.IntegerField(), default=list, editable=False, size=None
            ),
        ),
        migrations.AddField(
            model_name="chunk",
            name="readable_user_ids",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.BigIntegerField(), default=list, editable=False, size=None
            ),
        ),
        migrations.AddField(
            model_name="chunk",
            name="tier",
            field=models.PositiveSmallIntegerField(default=3, editable=False),
        ),
        migrations.AddIndex(
            model_name="chunk",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["readable_group_ids"], name="chunk_readable_groups_gin"
            ),
        ),
        migrations.AddIndex(
            model_name="chunk",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["readable_user_ids"], name="chunk_readable_users_gin"
            ),
        ),
        migrations.AddIndex(
            model_name="chunk",
            index=models.Index(fields=["tier"], name="chunk_tier"),
        ),
        migrations.AddIndex(
            model_name="chunk",
            index=models.Index(
                condition=models.Q(("all_authenticated", True)),
                fields=["tier"],
                name="chunk_public_tier",
            ),
        ),
        migrations.AddIndex(
            model_name="document",
            index=models.Index(
                condition=models.Q(("all_authenticated", True)),
                fields=["classification"],
                name="document_open_tier",
            ),
        ),
        migrations.RunSQL(FILL + GRANT_TRIGGERS + BACKFILL + POLICY, UNDO),
    ]

"""Row-level security on documents and chunks, forced (the owning role is subject too).

The rule mirrors retrieval.selectors.documents_visible_to; the settings it reads are set per
transaction by retrieval.rls. Without a scope nothing is visible and nothing is writable.
"""

from django.db import migrations

MODE = "current_setting('app.rls_mode', true)"

ENABLE = f"""
ALTER TABLE retrieval_document ENABLE ROW LEVEL SECURITY;
ALTER TABLE retrieval_document FORCE ROW LEVEL SECURITY;
ALTER TABLE retrieval_chunk ENABLE ROW LEVEL SECURITY;
ALTER TABLE retrieval_chunk FORCE ROW LEVEL SECURITY;

CREATE POLICY document_privileged ON retrieval_document FOR ALL
    USING ({MODE} = 'privileged') WITH CHECK ({MODE} = 'privileged');
CREATE POLICY document_principal_read ON retrieval_document FOR SELECT USING (
    {MODE} = 'principal'
    AND classification <= nullif(current_setting('app.clearance', true), '')::int
    AND (
        all_authenticated
        OR EXISTS (
            SELECT 1 FROM retrieval_document_allowed_users u
            WHERE u.document_id = retrieval_document.id
              AND u.user_id = nullif(current_setting('app.user_id', true), '')::bigint)
        OR EXISTS (
            SELECT 1 FROM retrieval_document_allowed_groups g
            WHERE g.document_id = retrieval_document.id
              AND g.group_id = ANY (string_to_array(
                    nullif(current_setting('app.group_ids', true), ''), ',')::int[]))
    )
);

CREATE POLICY chunk_privileged ON retrieval_chunk FOR ALL
    USING ({MODE} = 'privileged') WITH CHECK ({MODE} = 'privileged');
-- The subquery is itself filtered by the document policies above.
CREATE POLICY chunk_principal_read ON retrieval_chunk FOR SELECT USING (
    {MODE} = 'principal'
    AND EXISTS (SELECT 1 FROM retrieval_document d WHERE d.id = retrieval_chunk.document_id)
);
"""

DISABLE = """
DROP POLICY IF EXISTS chunk_principal_read ON retrieval_chunk;
DROP POLICY IF EXISTS chunk_privileged ON retrieval_chunk;
DROP POLICY IF EXISTS document_principal_read ON retrieval_document;
DROP POLICY IF EXISTS document_privileged ON retrieval_document;
ALTER TABLE retrieval_chunk NO FORCE ROW LEVEL SECURITY;
ALTER TABLE retrieval_chunk DISABLE ROW LEVEL SECURITY;
ALTER TABLE retrieval_document NO FORCE ROW LEVEL SECURITY;
ALTER TABLE retrieval_document DISABLE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):
    dependencies = [("retrieval", "0002_ingestion_job")]

    operations = [migrations.RunSQL(ENABLE, DISABLE)]

"""Embeddings move from chunks to passages: one row per distinct chunk text, which the HNSW
graph indexes once however many documents hold the text.

On 100k chunks of installed documentation, 21,605 chunks repeated a text held elsewhere (354
texts at least ten times, one 529 times). Identical vectors link only to each other, so a
search that walked into such a clique returned ten copies of one text and never reached
the true neighbours: recall@10 0.979 over the whole corpus, and no ef_search fixed it
(docs/BENCHMARKS.md, "a trap made of duplicates").

A passage's `access` column is the union of its chunks' access as tokens that carry their
tier, kept by triggers here, so visibility is one array overlap on the passage row. Row-level
security on passages could not be a join to the chunks: PostgreSQL plans a correlated
EXISTS in a policy as a hashed subplan over every visible chunk (130-160 ms per search on
100k chunks, against about 15 for the graph scan itself).
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import migrations, models
import django.db.models.deletion
import pgvector.django
import pgvector.django.indexes
import retrieval.models

MODE = "current_setting('app.rls_mode', true)"
PRIVILEGED = (
    "SELECT set_config('app.rls_mode', 'privileged', true),"
    " set_config('app.privileged_ceiling', '3', true),"
    " set_config('app.access_tokens', '*', true);"
)
# retrieval.services.passage_digest, in SQL.
DIGEST = "encode(sha256(convert_to(%s || E'\\n' || {text}, 'UTF8')), 'hex')"

BACKFILL = (
    PRIVILEGED
    + "INSERT INTO retrieval_passage (digest, embedding, access)"
    " SELECT DISTINCT ON (digest) digest, embedding, '{*}'"
    f" FROM (SELECT {DIGEST.format(text='text')} AS digest, embedding, id"
    "  FROM retrieval_chunk) AS c ORDER BY digest, id;"
    " UPDATE retrieval_chunk c SET passage_id = p.id FROM retrieval_passage p"
    f" WHERE p.digest = {DIGEST.format(text='c.text')};"
)

TRIGGERS = f"""
-- A chunk's access as tokens that carry the tier: 'a@T' (everyone signed in), 'u<id>@T',
-- 'g<id>@T'. retrieval.rls.access_tokens builds the principal's side.
CREATE FUNCTION retrieval_access_tokens(tier int, everyone boolean, users bigint[], groups int[])
RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN everyone THEN ARRAY['a@' || tier] ELSE '{{}}'::text[] END
        || ARRAY(SELECT 'u' || u || '@' || tier FROM unnest(users) AS u)
        || ARRAY(SELECT 'g' || g || '@' || tier FROM unnest(groups) AS g)
$$;

-- Recompute the passages' access from their chunks. Chunks are only written in a
-- privileged scope, so the chunks read here are all of them. Every passage also carries
-- '*', the token of a privileged scope (no principal's tokens include it).
CREATE FUNCTION retrieval_passage_refresh(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE retrieval_passage p SET access = ARRAY['*'] || coalesce((
        SELECT array_agg(DISTINCT t ORDER BY t)
          FROM retrieval_chunk c,
               unnest(retrieval_access_tokens(c.tier, c.all_authenticated,
                                              c.readable_user_ids, c.readable_group_ids)) AS t
         WHERE c.passage_id = p.id), '{{}}')
     WHERE p.id = ANY (ids);
END $$;

-- At commit, delete the passages that no chunk holds any more: a deleted document leaves
-- no embedding of its text behind. Deferred, so that re-indexing a document (its old
-- chunks deleted, then the new ones inserted) keeps the passages it still uses. By then the
-- scope that deleted the chunks has put its settings back, so this lifts row-level
-- security for its own statement only; it fires only where a privileged scope deleted a
-- chunk. (Should another transaction have committed a chunk of the same text meanwhile,
-- the foreign key refuses the delete and this transaction fails: retry it.)
CREATE FUNCTION retrieval_passage_collect() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mode text := current_setting('app.rls_mode', true);
    ceiling text := current_setting('app.privileged_ceiling', true);
    tokens text := current_setting('app.access_tokens', true);
BEGIN
    PERFORM set_config('app.rls_mode', 'privileged', true),
            set_config('app.privileged_ceiling', '3', true),
            set_config('app.access_tokens', '*', true);
    DELETE FROM retrieval_passage p
     WHERE p.id = OLD.passage_id
       AND NOT EXISTS (SELECT 1 FROM retrieval_chunk c WHERE c.passage_id = p.id);
    PERFORM set_config('app.rls_mode', coalesce(mode, ''), true),
            set_config('app.privileged_ceiling', coalesce(ceiling, ''), true),
            set_config('app.access_tokens', coalesce(tokens, ''), true);
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER chunk_passage_collect
    AFTER DELETE OR UPDATE OF passage_id ON retrieval_chunk
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION retrieval_passage_collect();

CREATE FUNCTION retrieval_chunk_passage_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM retrieval_passage_refresh(ARRAY(SELECT DISTINCT passage_id FROM changed));
    RETURN NULL;
END $$;

CREATE FUNCTION retrieval_chunk_passage_sync_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM retrieval_passage_refresh(ARRAY(
        SELECT passage_id FROM before_update UNION SELECT passage_id FROM after_update));
    RETURN NULL;
END $$;

CREATE TRIGGER chunk_passage_ins AFTER INSERT ON retrieval_chunk
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION retrieval_chunk_passage_sync();
CREATE TRIGGER chunk_passage_del AFTER DELETE ON retrieval_chunk
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION retrieval_chunk_passage_sync();
CREATE TRIGGER chunk_passage_upd AFTER UPDATE ON retrieval_chunk
    REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update
    FOR EACH STATEMENT EXECUTE FUNCTION retrieval_chunk_passage_sync_update();

-- The same overlap as retrieval.selectors._visible_passages; a privileged scope's token is
-- '*'. One indexable predicate and nothing OR-ed to it: PostgreSQL may not use the query's
-- own copy of it for an index scan (the array operator is not leakproof, so it runs after
-- the policy), so the policy's must be able to use the GIN index by itself.
ALTER TABLE retrieval_passage ENABLE ROW LEVEL SECURITY;
ALTER TABLE retrieval_passage FORCE ROW LEVEL SECURITY;
CREATE POLICY passage_read ON retrieval_passage FOR SELECT USING (
    access && string_to_array(nullif(current_setting('app.access_tokens', true), ''), ',')
);
CREATE POLICY passage_privileged_insert ON retrieval_passage FOR INSERT
    WITH CHECK ({MODE} = 'privileged');
CREATE POLICY passage_privileged_update ON retrieval_passage FOR UPDATE
    USING ({MODE} = 'privileged') WITH CHECK ({MODE} = 'privileged');
CREATE POLICY passage_privileged_delete ON retrieval_passage FOR DELETE
    USING ({MODE} = 'privileged');
"""

ACCESS_BACKFILL = (
    PRIVILEGED
    + "SELECT retrieval_passage_refresh(ARRAY(SELECT id FROM retrieval_passage));"
)

UNDO_TRIGGERS = """
DROP POLICY passage_read ON retrieval_passage;
DROP POLICY passage_privileged_insert ON retrieval_passage;
DROP POLICY passage_privileged_update ON retrieval_passage;
DROP POLICY passage_privileged_delete ON retrieval_passage;
ALTER TABLE retrieval_passage NO FORCE ROW LEVEL SECURITY;
ALTER TABLE retrieval_passage DISABLE ROW LEVEL SECURITY;
DROP TRIGGER chunk_passage_ins ON retrieval_chunk;
DROP TRIGGER chunk_passage_del ON retrieval_chunk;
DROP TRIGGER chunk_passage_upd ON retrieval_chunk;
DROP TRIGGER chunk_passage_collect ON retrieval_chunk;
DROP FUNCTION retrieval_passage_collect();
DROP FUNCTION retrieval_chunk_passage_sync_update();
DROP FUNCTION retrieval_chunk_passage_sync();
DROP FUNCTION retrieval_passage_refresh(bigint[]);
DROP FUNCTION retrieval_access_tokens(int, boolean, bigint[], int[]);
"""


def _model_key() -> str:
    return settings.EMBEDDING_MODEL_SHA256


class Migration(migrations.Migration):
    dependencies = [("retrieval", "0008_denser_hnsw_graph")]

    operations = [
        migrations.CreateModel(
            name="Passage",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("digest", models.CharField(editable=False, max_length=64, unique=True)),
                ("embedding", pgvector.django.VectorField(dimensions=384)),
                ("access", ArrayField(base_field=models.TextField(), default=retrieval.models.privileged_only, editable=False, size=None)),
            ],
        ),
        migrations.AddField(
            model_name="chunk",
            name="passage",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="chunks",
                to="retrieval.passage",
            ),
        ),
        migrations.RunSQL(
            [(BACKFILL, [_model_key(), _model_key()])], migrations.RunSQL.noop
        ),
        migrations.AlterField(
            model_name="chunk",
            name="passage",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="chunks",
                to="retrieval.passage",
            ),
        ),
        migrations.RemoveIndex(model_name="chunk", name="chunk_embedding_hnsw"),
        migrations.RemoveField(model_name="chunk", name="embedding"),
        migrations.AddIndex(
            model_name="passage",
            index=pgvector.django.indexes.HnswIndex(
                ef_construction=128,
                fields=["embedding"],
                m=24,
                name="passage_embedding_hnsw",
                opclasses=["vector_cosine_ops"],
            ),
        ),
        migrations.AddIndex(
            model_name="passage",
            index=GinIndex(fastupdate=False, fields=["access"], name="passage_access_gin"),
        ),
        migrations.RunSQL(TRIGGERS, UNDO_TRIGGERS),
        migrations.RunSQL(ACCESS_BACKFILL, migrations.RunSQL.noop),
    ]

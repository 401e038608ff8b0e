"""A denser passage graph (m 32, ef_construction 128). With m 24, a million clustered
passages left some queries in a pocket of the graph that no search effort got out of:
recall@10 0.978 when a tenth of the corpus is visible, against 0.993 with m 32 on the same
passages and queries (docs/BENCHMARKS.md, "Filtered search at a million passages").

Dropping the old index locks the passage table until the new one is built; on a large
deployment, build the new one beside the old first (docs/operations.md), and give the build
enough maintenance_work_mem for the whole graph (about 8 KiB per passage)."""

import pgvector.django.indexes
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0009_passages"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="passage", name="passage_embedding_hnsw"),
        migrations.AddIndex(
            model_name="passage",
            index=pgvector.django.indexes.HnswIndex(
                ef_construction=128,
                fields=["embedding"],
                m=32,
                name="passage_embedding_hnsw",
                opclasses=["vector_cosine_ops"],
            ),
        ),
    ]

"""On PostgreSQL, scalar points move from a row each (MetricPoint) to blocks of 64 consecutive
seqs (PointBlock; runs/points.py). The points already stored are regrouped in SQL, one series
at a time, and their rows deleted. SQLite keeps its rows: the new table stays empty there."""

import django.db.models.deletion
from django.db import migrations, models

import runs.models

BLOCK = 64  # runs.points.BLOCK, frozen here


def points_to_blocks(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    rows = apps.get_model("runs", "MetricPoint")._meta.db_table
    blocks = apps.get_model("runs", "PointBlock")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT series_id FROM {rows}")
        for (series_id,) in cursor.fetchall():
            cursor.execute(
                f"INSERT INTO {blocks} (series_id, block, steps, vals, times) "
                f"SELECT series_id, seq / {BLOCK}, array_agg(step ORDER BY seq), "
                "array_agg(value ORDER BY seq), array_agg(time ORDER BY seq) "
                f"FROM {rows} WHERE series_id = %s GROUP BY series_id, seq / {BLOCK}",
                [series_id],
            )
            cursor.execute(f"DELETE FROM {rows} WHERE series_id = %s", [series_id])


def blocks_to_points(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    rows = apps.get_model("runs", "MetricPoint")._meta.db_table
    blocks = apps.get_model("runs", "PointBlock")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {rows} (series_id, seq, step, value, time) "
            f"SELECT b.series_id, b.block * {BLOCK} + o.i - 1, o.step, o.value, o.time "
            f"FROM {blocks} b CROSS JOIN LATERAL unnest(b.steps, b.vals, b.times) "
            "WITH ORDINALITY AS o(step, value, time, i)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0017_pyramid_finite_extremes"),
    ]

    operations = [
        migrations.CreateModel(
            name="PointBlock",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "series",
                        "block",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("block", models.BigIntegerField()),
                ("steps", runs.models.PointArrayField(element="int8")),
                ("vals", runs.models.PointArrayField(element="float8")),
                ("times", runs.models.PointArrayField(element="float8")),
                (
                    "series",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        to="runs.metricseries",
                    ),
                ),
            ],
        ),
        migrations.RunPython(points_to_blocks, blocks_to_points),
    ]

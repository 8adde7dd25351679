"""The chart pyramid: MetricSummary blocks and the series' ordering flags.

Existing series keep NULL flags (not summarized): charts scan their points as before until
`manage.py metrics_summarize` builds their pyramid.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0012_run_activity"),
    ]

    operations = [
        migrations.AddField(
            model_name="metricseries",
            name="last_time",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="metricseries",
            name="steps_sorted",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="metricseries",
            name="times_sorted",
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="MetricSummary",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "series",
                        "level",
                        "bucket",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("level", models.SmallIntegerField()),
                ("bucket", models.BigIntegerField()),
                ("count", models.IntegerField()),
                ("non_nan", models.IntegerField()),
                ("min_value", models.FloatField(null=True)),
                ("max_value", models.FloatField(null=True)),
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
    ]

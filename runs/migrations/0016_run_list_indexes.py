"""Indexes the run list walks at a million runs (runs/selectors/run_pages.py): a metric's
last/min/max by name, and tags and properties by (key, value) with the run, so a filter's run
ids come from the index alone. series_name is covered by the new (name, …) indexes.

Numbered 0014 (assigned) but applied after 0018: parallel work numbered its migrations ahead."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0015_run_inputs"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="runtag", name="tag_key_value"),
        migrations.AddIndex(
            model_name="runtag",
            index=models.Index(fields=["key", "value", "run"], name="tag_key_value_run"),
        ),
        migrations.RemoveIndex(model_name="runproperty", name="property_key_value"),
        migrations.AddIndex(
            model_name="runproperty",
            index=models.Index(fields=["key", "value", "run"], name="property_key_value_run"),
        ),
        migrations.RemoveIndex(model_name="metricseries", name="series_name"),
        migrations.AddIndex(
            model_name="metricseries",
            index=models.Index(fields=["name", "last_value", "run"], name="series_name_last"),
        ),
        migrations.AddIndex(
            model_name="metricseries",
            index=models.Index(fields=["name", "min_value", "run"], name="series_name_min"),
        ),
        migrations.AddIndex(
            model_name="metricseries",
            index=models.Index(fields=["name", "max_value", "run"], name="series_name_max"),
        ),
    ]

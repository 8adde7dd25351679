"""The chart pyramid's blocks now keep the min and max of their finite values and count only
those (runs/summary.py): a block holding ±inf used to keep it as its extreme, which hid the
bucket's finite spike and left the infinity unmarked. Series with such a block go back to "not
summarized" (steps_sorted NULL): charts read their points until `manage.py metrics_summarize`
rebuilds them, as for series logged before the pyramid. Series without ±inf are untouched."""

import math

from django.db import migrations


def unsummarize_series_with_infinite_blocks(apps, schema_editor):
    series = apps.get_model("runs", "MetricSeries")._meta.db_table
    blocks = apps.get_model("runs", "MetricSummary")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {series} SET steps_sorted = NULL, times_sorted = NULL WHERE id IN "
            f"(SELECT DISTINCT series_id FROM {blocks} WHERE min_value = %s OR max_value = %s)",
            [-math.inf, math.inf],
        )


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0016_run_list_indexes"),
    ]

    operations = [
        migrations.RunPython(unsummarize_series_with_infinite_blocks, migrations.RunPython.noop),
    ]

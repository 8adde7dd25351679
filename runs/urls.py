from django.urls import path

from runs.views import alerts, charts, compute, lists, run_detail, run_management

app_name = "runs"

urlpatterns = [
    path("", lists.home, name="home"),
    # Studio lists, search and custom views (runs/views/lists.py)
    path("w/<str:workspace>/", lists.experiments_page, name="workspace"),
    path("w/<str:workspace>/runs/", lists.run_list_page, name="run-list"),
    path("w/<str:workspace>/runs.csv", lists.run_list_csv, name="run-list-csv"),
    path("w/<str:workspace>/run-statuses/", lists.run_statuses, name="run-statuses"),
    # Run management: archive, restore, delete, tag, untag, cancel (runs/views/run_management.py)
    path("w/<str:workspace>/archived/", run_management.archived_page, name="archived"),
    path("w/<str:workspace>/runs-manage/", run_management.run_manage, name="run-manage"),
    path(
        "w/<str:workspace>/experiments/<str:experiment>/",
        lists.experiment_page,
        name="experiment",
    ),
    path("w/<str:workspace>/views/", lists.views_page, name="view-list"),
    path("w/<str:workspace>/views/new/", lists.view_create, name="view-create"),
    path("w/<str:workspace>/views/<int:view_id>/", lists.view_page, name="view"),
    path("w/<str:workspace>/views/<int:view_id>/update/", lists.view_edit, name="view-update"),
    path("w/<str:workspace>/views/<int:view_id>/delete/", lists.view_remove, name="view-delete"),
    path("w/<str:workspace>/views/<int:view_id>/copy/", lists.view_duplicate, name="view-copy"),
    # One run's page, its writes and downloads (runs/views/run_detail.py)
    path("w/<str:workspace>/runs/<str:run_id>/", run_detail.run_page, name="run-page"),
    path("w/<str:workspace>/runs/<str:run_id>/edit/", run_detail.run_edit, name="run-edit"),
    path("w/<str:workspace>/runs/<str:run_id>/tags/", run_detail.run_tags_edit, name="run-tags"),
    path("w/<str:workspace>/runs/<str:run_id>/cancel/", run_detail.run_cancel, name="run-cancel"),
    path(
        "w/<str:workspace>/runs/<str:run_id>/preview/",
        run_detail.description_preview,
        name="run-preview",
    ),
    path(
        "w/<str:workspace>/runs/<str:run_id>/files/<path:path>",
        run_detail.run_file,
        name="run-file",
    ),
    path(
        "w/<str:workspace>/runs/<str:run_id>/download/",
        run_detail.run_download_all,
        name="run-download-all",
    ),
    # Charts: the compare page and the figures static/js/charts.js draws (runs/views/charts.py)
    path("w/<str:workspace>/compare/", charts.compare_page, name="compare"),
    path("charts/metric/", charts.metric_figure, name="chart-metric"),
    path("charts/children/", charts.children_figure, name="chart-children"),
    # Compute targets: workers, running and queued runs (runs/views/compute.py)
    path("w/<str:workspace>/compute/", compute.compute_page, name="compute"),
    path("w/<str:workspace>/compute/live/", compute.compute_live, name="compute-live"),
    path("w/<str:workspace>/compute/new/", compute.target_create, name="compute-target-create"),
    path("w/<str:workspace>/compute/<str:name>/", compute.target_update, name="compute-target"),
    path(
        "w/<str:workspace>/compute/<str:name>/delete/",
        compute.target_delete,
        name="compute-target-delete",
    ),
    path(
        "w/<str:workspace>/compute/<str:name>/worker-key/",
        compute.target_worker_key,
        name="compute-target-worker-key",
    ),
    # Alert rules and their deliveries (runs/views/alerts.py)
    path("w/<str:workspace>/alerts/", alerts.alerts_page, name="alerts"),
    path("w/<str:workspace>/alerts/new/", alerts.alert_create, name="alert-create"),
    path("w/<str:workspace>/alerts/<int:rule_id>/", alerts.alert_edit, name="alert-edit"),
    path(
        "w/<str:workspace>/alerts/<int:rule_id>/delete/",
        alerts.alert_delete,
        name="alert-delete",
    ),
    path(
        "w/<str:workspace>/alerts/<int:rule_id>/secret/",
        alerts.alert_rotate_secret,
        name="alert-secret",
    ),
]

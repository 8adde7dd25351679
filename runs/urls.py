from django.urls import path

from runs.views import lists, run_detail

app_name = "runs"

urlpatterns = [
    path("", lists.home, name="home"),
    path("w/<str:workspace>/", lists.workspace_runs, name="workspace"),
    path("w/<str:workspace>/runs/<str:run_id>/", run_detail.run_page, name="run-page"),
]

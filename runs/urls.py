from django.urls import path

from runs import views

app_name = "runs"

urlpatterns = [
    path("", views.home, name="home"),
    path("w/<str:workspace>/", views.workspace_runs, name="workspace"),
    path("w/<str:workspace>/runs/<str:run_id>/", views.run_page, name="run-page"),
]

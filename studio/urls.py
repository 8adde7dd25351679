from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from runs.api.views.index import api_index

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", api_index, name="api-index"),
    path("api/v1/", include("runs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("mlflow/", include("runs.mlflow.urls")),
    path("", include("runs.urls")),
]

# /api/ answers its errors as JSON even when Django, not a DRF view, answers (runs/api/errors.py).
handler400 = "runs.api.errors.bad_request"
handler404 = "runs.api.errors.page_not_found"
handler500 = "runs.api.errors.server_error"

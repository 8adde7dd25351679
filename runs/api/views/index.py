"""`GET /api/v1/`: where to go next, instead of a 404."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response


# Public, like the sign-in page: it holds links only, no data. Left out of the schema, which
# it points to.
@extend_schema(exclude=True)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def api_index(request):
    def url(name: str) -> str:
        return request.build_absolute_uri(reverse(name))

    return Response(
        {
            "name": "Runstudio REST API",
            "version": "v1",
            "schema": url("schema"),
            "docs": "The OpenAPI 3 schema above describes every endpoint (open it signed in, "
            "or with an `Authorization: Token …` header); docs/architecture.md, section "
            '"REST API", explains the conventions.',
            "authentication": {
                "token": url("api:token-create"),
                "how": "POST {username, password} to the token URL (or run `runstudio login "
                "--url URL --username NAME`), then send `Authorization: Token <key>`.",
                "sign_in": url("login"),
            },
            "start": {
                "me": url("api:me"),
                "workspaces": url("api:workspace-list"),
            },
        }
    )

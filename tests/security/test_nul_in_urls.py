"""A NUL in a URL's query string or path is a 400 that names where it is, on every door.

Found by schemathesis on PostgreSQL (tests/security/test_schemathesis.py): PostgreSQL refuses a
NUL in any string, so `GET …/runs?property=%00` and `GET …/metrics/values?name=%00` were 500s
there (SQLite took them). runs/middleware.py refuses them before any view reads them; a POST
search's body (`{"tag": ["k\x00"]}`, also a 500) is checked by the filter's own field.
"""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from runs.models import Run

pytestmark = pytest.mark.django_db


def api(member) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {member.token}")
    return client


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/workspaces/lab/runs?property=%00", "property"),
        ("/api/v1/workspaces/lab/runs?tag=a&experiment=x%00y", "experiment"),
        ("/api/v1/runs/{run}/metrics/values?name=loss&name=%00", "name"),
        ("/api/v1/runs/{run}/metrics/history?name=lo%00ss", "name"),
        ("/api/v1/workspaces/lab/compute/gpu%00", "path"),
    ],
)
def test_a_nul_in_an_api_url_is_a_400_naming_the_parameter(cast, make_run, url, field):
    run = make_run()

    response = api(cast.reader).get(url.format(run=run.run_id))

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == field
    assert "NUL" in error["message"]


@pytest.mark.parametrize("url", ["/w/lab/runs/?tag=%00", "/w/lab/runs.csv?q=a%00"])
def test_a_nul_in_a_page_url_is_a_400(cast, url):
    client = Client(raise_request_exception=False)
    client.force_login(cast.reader.user)

    response = client.get(url)

    assert response.status_code == 400
    assert "NUL" in response.content.decode()


@pytest.mark.parametrize("field", ["tag", "property", "experiment", "q"])
def test_a_nul_in_a_post_search_body_is_a_400_naming_the_field(cast, field):
    response = api(cast.reader).post(
        "/api/v1/workspaces/lab/runs/search", {field: ["k=\x00"]}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field


def test_urls_without_a_nul_are_untouched(cast, make_run):
    run = make_run()

    response = api(cast.reader).get("/api/v1/workspaces/lab/runs", {"property": "p=%00"})

    # A literal "%00" (sent encoded as %2500) is text, not a NUL.
    assert response.status_code == 200
    assert Run.objects.filter(pk=run.pk).exists()

"""The studio's 500 page: styled like the rest (stylesheets, dark mode, favicon) with a way
back, rendered without touching the database (it shows when the database is what failed)."""

from django.test import RequestFactory

from runs.api.errors import server_error


def test_a_page_500_is_the_styled_page_with_a_way_home_and_reads_no_database():
    # No django_db mark: pytest-django refuses every query, so rendering proves none is made.
    response = server_error(RequestFactory().get("/w/lab/runs/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert "<h1>The server failed</h1>" in html
    assert 'class="button primary" href="/"' in html  # "Your workspaces"
    for asset in ("css/studio.", "css/dark.", "js/studio.", "img/favicon."):
        assert asset in html
    assert 'class="error-page"' in html


def test_an_api_500_stays_json():
    response = server_error(RequestFactory().get("/api/v1/runs/"))
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")

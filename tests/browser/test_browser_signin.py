import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_member_signs_in_and_sees_their_workspace(page, live_server, cast, sign_in, screenshot):
    sign_in(page, cast.reader)
    assert page.locator("text=lab").first.is_visible()
    assert page.locator("text=elsewhere").count() == 0
    screenshot(page, "home")


def test_outsider_gets_404_for_a_workspace_page(page, live_server, cast, sign_in):
    sign_in(page, cast.outsider)
    response = page.goto(f"{live_server.url}/w/lab/")
    assert response.status == 404

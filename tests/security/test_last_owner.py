"""The last owner stays: no door leaves a workspace without an owner (issue 7, item 6)."""

import threading

import pytest
from django.db import connection

from runs import services
from runs.errors import Conflict
from runs.models import Membership, Role

MEMBERS = "/api/v1/workspaces/lab/members"


def _owners(workspace) -> set[str]:
    return set(
        Membership.objects.filter(workspace=workspace, role=Role.OWNER).values_list(
            "user__username", flat=True
        )
    )


@pytest.mark.parametrize("role", [Role.CONTRIBUTOR, Role.READER])
def test_the_sole_owner_cannot_demote_themselves(cast, role):
    response = cast.owner.client.post(MEMBERS, {"username": "olivia", "role": role}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "last_owner"
    assert error["field"] == "role"
    assert "last owner" in error["message"]
    assert _owners(cast.workspace) == {"olivia"}


def test_the_sole_owner_cannot_remove_themselves(cast):
    response = cast.owner.client.delete(MEMBERS + "/olivia")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"
    assert _owners(cast.workspace) == {"olivia"}


def test_an_owner_may_step_down_once_another_owner_exists(cast):
    promoted = cast.owner.client.post(MEMBERS, {"username": "carl", "role": "owner"}, format="json")
    stepped_down = cast.owner.client.post(
        MEMBERS, {"username": "olivia", "role": "reader"}, format="json"
    )
    # Carl is now the only owner; he cannot leave either.
    carl_leaves = cast.contributor.client.delete(MEMBERS + "/carl")

    assert promoted.status_code == 201
    assert stepped_down.status_code == 201
    assert carl_leaves.status_code == 409
    assert _owners(cast.workspace) == {"carl"}


def test_setting_the_last_owner_to_owner_again_is_not_a_demotion(cast):
    response = cast.owner.client.post(
        MEMBERS, {"username": "olivia", "role": "owner"}, format="json"
    )

    assert response.status_code == 201
    assert _owners(cast.workspace) == {"olivia"}


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner(cast):
    """Both requests race past the HTTP layer into the service; the workspace row lock makes
    the second one count the owners after the first one's change."""
    services.membership_set(workspace=cast.workspace, user=cast.contributor.user, role="owner")
    pairs = [(cast.owner.user, cast.contributor.user), (cast.contributor.user, cast.owner.user)]
    outcomes: list[str] = []
    start = threading.Barrier(len(pairs))

    def demote(target):
        try:
            start.wait()
            services.membership_set(workspace=cast.workspace, user=target, role="reader")
            outcomes.append("demoted")
        except Conflict:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(target,)) for _, target in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["demoted", "refused"]
    assert len(_owners(cast.workspace)) == 1


def test_the_service_refuses_demoting_and_removing_the_last_owner(cast):
    with pytest.raises(Conflict, match="last owner"):
        services.membership_set(workspace=cast.workspace, user=cast.owner.user, role="reader")
    with pytest.raises(Conflict, match="last owner"):
        services.membership_remove(workspace=cast.workspace, user=cast.owner.user)

    assert _owners(cast.workspace) == {"olivia"}

"""runs/prepared.py: the hot lookups compiled once give what the ORM's `.first()` gives."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import services
from runs.access import run_in_workspace, workspace_for
from runs.errors import NotFound
from runs.models import ApiToken, Membership, Role, Run
from runs.prepared import Prepared


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_a_prepared_lookup_gives_the_orm_row_with_its_related_row_in_one_query(cast):
    lookup = Prepared(
        lambda name, user: Membership.objects.select_related("workspace").filter(
            workspace__name=name, user_id=user
        ),
        name=str,
        user=int,
    )
    expected = Membership.objects.select_related("workspace").get(
        workspace__name="lab", user=cast.reader.user
    )
    for _ in range(2):  # compiled by the first call, reused by the second
        with CaptureQueriesContext(connection) as queries:
            found = lookup.first(name="lab", user=cast.reader.user.pk)
            workspace = found.workspace
        assert len(queries) == 1
        assert _fields(found) == _fields(expected)
        assert _fields(workspace) == _fields(expected.workspace)
        assert found.role == Role.READER and found.allows(Role.READER)


def test_a_prepared_lookup_binds_each_call_its_own_values(cast, make_run):
    runs = [make_run(experiment="e") for _ in range(3)]
    lookup = Prepared(
        lambda run_id, workspace: Run.objects.filter(run_id=run_id, workspace_id=workspace),
        run_id=str,
        workspace=int,
    )
    for run in runs:
        found = lookup.first(run_id=run.run_id, workspace=cast.workspace.pk)
        assert found.pk == run.pk and found.created_at == run.created_at
    other = Membership.objects.get(user=cast.outsider.user).workspace_id
    assert lookup.first(run_id=runs[0].run_id, workspace=other) is None
    assert lookup.first(run_id="no-such-run", workspace=cast.workspace.pk) is None


def test_a_filter_that_changes_its_value_is_refused_when_first_used(cast):
    lookup = Prepared(
        lambda name: Membership.objects.filter(workspace__name__iexact=name), name=str
    )
    with pytest.raises(ValueError, match="exact-match filters only"):
        lookup.first(name="LAB")


def test_a_revoked_token_is_refused_on_the_very_next_lookup(cast):
    token, key = services.token_create(user=cast.contributor.user, name="ci")
    assert services.token_authenticate(key=key).pk == token.pk
    services.token_revoke(token=ApiToken.objects.get(pk=token.pk))
    assert services.token_authenticate(key=key) is None


def test_a_member_removed_from_a_workspace_no_longer_reaches_it_or_its_runs(cast, make_run):
    run = make_run(experiment="e")
    _, membership = workspace_for(user=cast.contributor.user, name="lab")
    assert run_in_workspace(user=cast.contributor.user, membership=membership, run_id=run.run_id)
    services.membership_remove(workspace=cast.workspace, user=cast.contributor.user)
    with pytest.raises(NotFound):
        workspace_for(user=cast.contributor.user, name="lab")

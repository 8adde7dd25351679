from django.contrib.auth.models import AbstractBaseUser
from rest_framework import authentication, exceptions

from runs.access import scope_user
from runs.models import ApiToken
from runs.services import token_authenticate

# The only workspace-level door a run-scoped token may reach (runs/access.py checks that the
# submission is a child of a run in its tree); every other door it may reach is addressed to
# one run (its route has a run_id, which runs.access.run_for checks).
_SCOPED_WORKSPACE_VIEWS = frozenset({"api:run-submit"})


class TokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>` (or `Bearer <key>`, which the MLflow client sends)."""

    keywords = ("token", "bearer")

    def authenticate(self, request) -> tuple[AbstractBaseUser, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Authorization header: expected 'Token <key>' with no spaces in the key."
            )
        token = token_authenticate(key=header[1].decode(errors="replace"), run_scoped=True)
        if token is None:
            raise exceptions.AuthenticationFailed(
                "The API token is unknown or revoked; run `runstudio login` for a new one."
            )
        if token.run_id is not None:
            match = request._request.resolver_match
            if match is None or not (
                "run_id" in match.kwargs or match.view_name in _SCOPED_WORKSPACE_VIEWS
            ):
                # Tokens, members, workspace and run lists, compute, alerts, anything added
                # later: outside a run's scope, and as unknown to it as to an outsider.
                raise exceptions.NotFound("Not found.")
            scope_user(token.user, token.run_id)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return "Token"

from django.contrib.auth.models import AbstractBaseUser
from rest_framework import authentication, exceptions

from runs.models import ApiToken
from runs.services import token_authenticate


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
        token = token_authenticate(key=header[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed(
                "The API token is unknown or revoked; run `runstudio login` for a new one."
            )
        return token.user, token

    def authenticate_header(self, request) -> str:
        return "Token"

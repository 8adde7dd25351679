"""User accounts made from the command line (`runstudio user create`)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from runs.errors import Conflict, InvalidInput
from runs.validation import check_line


@transaction.atomic
def user_create(
    *, username: str, password: str, superuser: bool = False, email: str = ""
) -> AbstractBaseUser:
    """Creates a user who can sign in to the studio and get API tokens; a superuser is also
    staff (the admin site). The password passes the project's password validators."""
    user_model = get_user_model()
    username = check_line(username, field="username", max_length=150)
    if not username:
        raise InvalidInput("username: give a name to sign in with.", field="username")
    if user_model.objects.filter(username=username).exists():
        raise Conflict(
            f"username: a user named {username!r} exists already; change their password with "
            f"`python -m django changepassword {username}`.",
            field="username",
        )
    candidate = user_model(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as e:
        raise InvalidInput(f"password: {' '.join(e.messages)}", field="password") from None
    try:
        if superuser:
            return user_model.objects.create_superuser(username, email, password)
        return user_model.objects.create_user(username, email, password)
    except IntegrityError:  # created by a concurrent command
        raise Conflict(
            f"username: a user named {username!r} exists already.", field="username"
        ) from None

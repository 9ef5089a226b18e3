"""Request types for views, so type checking knows what middleware and decorators set."""

from django.contrib.auth.models import User
from django.http import HttpRequest


class AuthenticatedRequest(HttpRequest):
    """The request of a view behind `login_required`: `user` is a real account."""

    user: User  # type: ignore[assignment]  # narrower than HttpRequest's User | AnonymousUser

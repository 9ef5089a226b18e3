"""Token scopes, enforced per endpoint.

Each API view names its area with `scope_area = "runs"` (or "billing"): a read (GET, HEAD,
OPTIONS) needs `<area>:read`, anything else `<area>:write`. `scope_area = None` lets any valid
token in (the caller's own teams list). A view that names nothing refuses every token: a new
endpoint must say which scope it needs before a script can call it (tests/security checks
every URL under /api/v1/ names one).

A missing scope is 403 PERMISSION_DENIED naming the scope, before the view looks anything up,
so the answer says nothing about the object asked for.

A call with the login session instead of a token (portal.core.rest.authentication) has no
scopes: it is the person, as on the pages, and the views' team and role rules apply unchanged.
It may only read, and only an endpoint that names its area (checked here again, whatever
authentication a view might use).
"""

from rest_framework import exceptions, permissions

from portal.core.models import ApiToken
from portal.core.rest.authentication import SESSION_WRITE_REFUSED

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
UNDECLARED = object()


def required_scope(view, method: str) -> str | object | None:
    """The scope a call needs: a TokenScope value, None for any token, UNDECLARED if the view
    names none."""
    area = getattr(view, "scope_area", UNDECLARED)
    if area is UNDECLARED or area is None:
        return area
    return f"{area}:{'read' if method in SAFE_METHODS else 'write'}"


class TokenScopes(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        token = request.auth
        scope = required_scope(view, request.method)
        if not isinstance(token, ApiToken):
            if not request.user.is_authenticated:
                return True  # anonymous: IsAuthenticated answers 401
            if request.method not in SAFE_METHODS:
                raise exceptions.PermissionDenied(SESSION_WRITE_REFUSED)
            if scope is UNDECLARED:
                raise exceptions.PermissionDenied(
                    "This endpoint does not say which scope it needs, so it answers no one."
                )
            return True
        if scope is None:
            return True
        if scope is UNDECLARED:
            raise exceptions.PermissionDenied(
                "This endpoint does not say which token scope it needs, so no token may call it."
            )
        if not token.has_scope(str(scope)):
            raise exceptions.PermissionDenied(
                f"This API token lacks the {scope} scope. Make a token with it on the Account page."
            )
        return True

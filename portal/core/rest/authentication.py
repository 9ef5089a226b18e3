"""Who calls the API: `Authorization: Bearer <token>` with a person's API token
(portal.core.models.ApiToken), or, for reads only, the person logged in to the portal in this
browser (so the API docs' "Try it out" works without pasting a token).

Why the session reads and never writes: a write through a cookie would need Django's CSRF check
on every endpoint, and would let a page (or a browser extension) act as the person without the
scoped, revocable token the API is built around. A read changes nothing and shows only what the
person's pages already show them; the session cookie is `SameSite=Lax`, so another site's script
does not send it, and the API answers no CORS headers, so no other origin can read the answer.
"""

import re

from rest_framework import authentication, exceptions

from portal.core.selectors import api_token_for_secret
from portal.core.services import API_TOKEN_MARKER, api_token_mark_used

# What a token looks like: the marker and 43 URL-safe base64 characters (256 bits).
TOKEN_SHAPE = re.compile(re.escape(API_TOKEN_MARKER) + r"[A-Za-z0-9_-]{43}")


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SESSION_WRITE_REFUSED = (
    "The API takes changes only with an API token: send 'Authorization: Bearer <token>' "
    "(make one on the Account page). Being logged in to the portal lets the API docs read, "
    "not change anything."
)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """A request with no Authorization header is anonymous (and refused by the views' permission
    with 401); one with a malformed, unknown, revoked or expired bearer token is refused here
    with 401. What the token may do is its scopes' business (portal.core.rest.scopes)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed(
                "Send your API token as 'Authorization: Bearer <token>'."
            )
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <token>'."
            )
        try:
            presented = header[1].decode("ascii")
        except UnicodeDecodeError:
            presented = ""
        if not TOKEN_SHAPE.fullmatch(presented):
            raise exceptions.AuthenticationFailed("That is not a Coasty Portal API token.")
        token = api_token_for_secret(presented)
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown API token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"This API token was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC."
            )
        if token.is_expired:
            raise exceptions.AuthenticationFailed(
                f"This API token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC."
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The account this token belongs to is disabled.")
        api_token_mark_used(token=token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated requests, with this challenge.
        return f'{self.keyword} realm="api"'


class SessionReadAuthentication(authentication.BaseAuthentication):
    """The portal's login session, after the bearer token (a request with an Authorization
    header never gets here): a GET, HEAD or OPTIONS acts as the logged-in person, with their
    teams and roles and no token scopes (a session is the person, as on the pages); any other
    method is refused with 403 PERMISSION_DENIED saying a token is needed. No session: anonymous,
    and the views' permission answers 401 as before."""

    def authenticate(self, request):
        user = getattr(request._request, "user", None)  # AuthenticationMiddleware's
        if user is None or not user.is_authenticated or not user.is_active:
            return None
        if request.method not in SAFE_METHODS:
            raise exceptions.PermissionDenied(SESSION_WRITE_REFUSED)
        return user, None

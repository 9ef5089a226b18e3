"""`Authorization: Bearer <token>` with a person's API token (portal.core.models.ApiToken)."""

import re

from rest_framework import authentication, exceptions

from portal.core.selectors import api_token_for_secret
from portal.core.services import API_TOKEN_MARKER, api_token_mark_used

# What a token looks like: the marker and 43 URL-safe base64 characters (256 bits).
TOKEN_SHAPE = re.compile(re.escape(API_TOKEN_MARKER) + r"[A-Za-z0-9_-]{43}")


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

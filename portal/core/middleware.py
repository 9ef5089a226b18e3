import zoneinfo

from django.conf import settings
from django.utils import timezone

from portal.core.rest.errors import payload_too_large


class UserTimezoneMiddleware:
    """Show times in the browser's zone.

    The page's script stores the zone the browser reports (Intl API) in the `tz` cookie; an
    unknown or missing zone falls back to UTC.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get("tz", "")
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        return self.get_response(request)


class RequestSizeLimitMiddleware:
    """Refuse a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE up front, from its Content-Length,
    with 413 PAYLOAD_TOO_LARGE (the API's envelope, or a plain page), before anything reads it.

    Without this, Django raises RequestDataTooBig wherever the body is first read: the CSRF
    check turns it into a 400, a DRF view into a 500. The portal takes no file uploads, so the
    limit applies to every content type. A body without a Content-Length that turns out too
    large while being read is answered 413 by handler400 and the API's exception handler.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and declared > limit:
            return payload_too_large(request)
        return self.get_response(request)


class PermissionsPolicyMiddleware:
    """The Permissions-Policy header (settings.PERMISSIONS_POLICY) on every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = getattr(settings, "PERMISSIONS_POLICY", "")
        if policy:
            response.headers.setdefault("Permissions-Policy", policy)
        return response

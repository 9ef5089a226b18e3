import zoneinfo

from django.utils import timezone


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

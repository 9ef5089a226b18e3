"""Rate limits per person: one budget for reads, a smaller one for writes, shared by all of a
person's API tokens and their login session's reads (so making more tokens, or reading through
the API docs, buys no more requests).

Rates are `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_read" | "api_write"]` (from the
environment, see settings), read on every request so a settings change applies at once. Counts
live in the default cache: per process with the local-memory cache, shared once REDIS_URL is set.
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TokenRateThrottle(SimpleRateThrottle):
    def allow_request(self, request, view):
        self.scope = "api_read" if request.method in SAFE_METHODS else "api_write"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "api_read")

    def get_cache_key(self, request, view):
        if not request.user.is_authenticated:
            return None  # anonymous (refused before throttling anyway)
        return f"throttle:{self.scope}:user:{request.user.pk}"

    def wait(self):
        # Always a positive number, so every 429 carries Retry-After.
        return max(1.0, super().wait() or float(self.duration or 1))

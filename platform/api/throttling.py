"""Per-client rate limits: a DRF throttle keyed by the integration client (not by IP — a bank's
calls come from a few gateway addresses shared by all its systems). The rate is the client's
own ``throttle_rate`` or ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["integration_client"]``;
counts live in Redis, so every web worker shares them."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from platform.models import IntegrationClient


class ClientRateThrottle(SimpleRateThrottle):
    scope = "integration_client"

    def allow_request(self, request, view) -> bool:
        client = request.auth if isinstance(request.auth, IntegrationClient) else None
        if client is None:
            return True
        self.rate = client.throttle_rate or self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as error:  # Redis down: counts cannot be kept, so refuse politely
            from platform.api.auth import service_unavailable

            raise service_unavailable() from error

    def get_cache_key(self, request, view) -> str | None:
        client = request.auth
        return f"throttle:client:{client.pk}" if isinstance(client, IntegrationClient) else None

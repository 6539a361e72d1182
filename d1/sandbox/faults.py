"""Scripted failures for tests: make the next N calls of an endpoint fail or stall."""

from __future__ import annotations

from dataclasses import dataclass, field

# Endpoint names faults can target. "callback" makes the sandbox's notification deliveries
# fail (the request is not sent; the attempt is recorded with the scripted status).
ENDPOINTS = frozenset({"token", "productionStatus", "track", "order", "callback"})
_ALIASES = {"operations:production": "order", "orderCard": "order"}

DEFAULT_ERROR_CODES = {
    400: "FIELD_INVALID_VALUE",
    401: "AUTHORIZER_UNAUTHORIZED",
    403: "OPERATION_NOT_ALLOWED",
    404: "CARD_NOT_FOUND",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


@dataclass
class Failure:
    status: int
    error_code: str


@dataclass
class Faults:
    """`fail_next` / `delay_next` / `drop_next_notifications`, consumed in call order."""

    _failures: dict[str, list[Failure]] = field(default_factory=dict)
    _delays: dict[str, list[float]] = field(default_factory=dict)
    drop_notifications: int = 0

    @staticmethod
    def _name(endpoint: str) -> str:
        name = _ALIASES.get(endpoint, endpoint)
        if name not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {sorted(ENDPOINTS)}")
        return name

    def fail_next(
        self, endpoint: str, *, status: int = 503, count: int = 1, error_code: str | None = None
    ) -> None:
        """The next `count` calls of `endpoint` answer `status` with a D1 error body."""
        code = error_code or DEFAULT_ERROR_CODES.get(status, "INTERNAL_ERROR")
        self._failures.setdefault(self._name(endpoint), []).extend(
            Failure(status, code) for _ in range(count)
        )

    def delay_next(self, endpoint: str, *, seconds: float, count: int = 1) -> None:
        """The next `count` calls of `endpoint` wait `seconds` before answering."""
        self._delays.setdefault(self._name(endpoint), []).extend([seconds] * count)

    def drop_next_notifications(self, count: int = 1) -> None:
        """The next `count` emitted operations are never delivered (they still change state)."""
        self.drop_notifications += count

    def take_failure(self, endpoint: str) -> Failure | None:
        queue = self._failures.get(endpoint)
        return queue.pop(0) if queue else None

    def take_delay(self, endpoint: str) -> float:
        queue = self._delays.get(endpoint)
        return queue.pop(0) if queue else 0.0

    def take_drop(self) -> bool:
        if self.drop_notifications > 0:
            self.drop_notifications -= 1
            return True
        return False

    def clear(self) -> None:
        self._failures.clear()
        self._delays.clear()
        self.drop_notifications = 0

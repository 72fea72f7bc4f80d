"""Domain errors. The API maps each to one problem+json status (functions/api/errors.py)."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, title: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if title:
            self.title = title
        self.field = field


class InvalidRequest(DomainError):
    status = 400
    title = "Invalid request"


class Unauthenticated(DomainError):
    status = 401
    title = "Unauthenticated"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(DomainError):
    status = 413
    title = "Request entity too large"

    @classmethod
    def over(cls, what: str, limit: int) -> PayloadTooLarge:
        """`what` (a file, a bundle) over its limit of `limit` bytes, said in MiB."""
        return cls(f"The {what} is larger than the {limit // (1024 * 1024)} MiB limit.")


class Unprocessable(DomainError):
    status = 422
    title = "Unprocessable"


class Unavailable(DomainError):
    """The platform is stopping (or otherwise not taking new work): try again later."""

    status = 503
    title = "Service unavailable"


class InputValidationError(Unprocessable):
    """The input breaks the version's schema. `errors` lists every problem found."""

    title = "Input validation failed"

    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors
        detail = "; ".join(f"{e['field']}: {e['msg']}" if e.get("field") else e["msg"] for e in errors)
        super().__init__(detail, field=errors[0].get("field") if errors else None)


class RateLimited(DomainError):
    """Too many requests: answered 429 with Retry-After and the rate-limit headers."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, headers: dict[str, str]) -> None:
        super().__init__(detail)
        self.headers = headers

"""The one exception hierarchy of api_assets.

    ApiAssetsError
    ├── SourcesError            a sources file has mistakes (carries every problem found)
    ├── AuthError               the credential was refused or the token endpoint failed (not retried)
    ├── FetchError              a request failed for good (after retries), or a body was unusable
    │   ├── PaginationError     pagination cannot be trusted: a loop, no progress, a missing total
    │   ├── ConnectionSetupError  TLS or the proxy refused the connection as configured (not retried)
    │   ├── ResponseTooSlow     a response not read whole within `request_deadline_seconds` (retried)
    │   └── ServerWaitTooLong   the server asked for a wait over `rate_limit.max_pause_seconds` (not retried)
    ├── IncompleteError         the evidence shows records missing or duplicated
    └── WebhookError            a webhook request was refused (carries the HTTP status)

Every message names the source, the endpoint and the URL (secrets redacted) where it has them,
says what was expected, and what to do next.
"""

from dataclasses import dataclass


class ApiAssetsError(Exception):
    """Base class of every error api_assets raises on purpose."""


@dataclass(frozen=True)
class SourceProblem:
    """One mistake in a sources file, printed as `file:line: key.path: message`."""

    file: str
    line: int
    key_path: str
    message: str

    def __str__(self) -> str:
        path = self.key_path or "<root>"
        return f"{self.file}:{self.line}: {path}: {self.message}"


class SourcesError(ApiAssetsError):
    """A sources file (or folder) has one or more mistakes; `problems` lists all of them."""

    def __init__(self, problems: list[SourceProblem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.key_path))
        super().__init__("\n".join(str(p) for p in self.problems))


class AuthError(ApiAssetsError):
    """The API or its token endpoint refused the credential. Never retried."""


class FetchError(ApiAssetsError):
    """A request failed for good, or answered with a body that cannot be used."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None):
        self.status = status
        self.url = url
        super().__init__(message)


class ConnectionSetupError(FetchError):
    """A connection cannot be made as the source configures it, and trying again cannot help:
    the server's certificate could not be verified, the server refused the client certificate,
    the proxy refused the credentials, or the `tls` files could not be loaded."""


class ResponseTooSlow(FetchError):
    """A response that was still arriving when its `request_deadline_seconds` ran out (a server
    that trickles its body, each read just inside `timeout_seconds`). Retried like a timeout."""


class ServerWaitTooLong(FetchError):
    """The server asked every request to wait longer than the source's
    `rate_limit.max_pause_seconds` (`Retry-After`, a rate-limit reset or a declared refill):
    the run fails at once, naming the header and the wait, instead of sleeping. Not retried."""


class PaginationError(FetchError):
    """Pagination cannot be trusted: a loop, no progress, or a signal that contradicts itself."""


class IncompleteError(ApiAssetsError):
    """The evidence shows records missing or duplicated."""


class WebhookError(ApiAssetsError):
    """A webhook request is refused with `status` (401, 400, 404, 413; 408 and 503 from the
    receiver's limits)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)

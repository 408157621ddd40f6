"""Where a next page may be fetched from: the origin rules for next URLs and Link headers.

A next URL is the API's to choose, so it may point anywhere: another host that then receives
our requests, or, from a public API, an address inside our own network (SSRF). `NextOrigins`
answers, before the request is sent, whether a next URL may be followed:

- on the source's own origin (`base_url`'s scheme, host and port): always;
- on another origin: only when it is listed in the source's `allowed_origins`;
- when `base_url` is public, never to a host that is (or resolves, on this machine, to) a
  loopback, link-local, private or otherwise non-public address, `allowed_origins` or not.

Credentials are another matter, decided per request by the auth flow (`auth.ApiAuth`): the
`auth:` credential and every credential-looking static header go to the source's own origin
and its token URL's only, so a page from an allowed origin is fetched bare.
"""

import functools
import ipaddress
import socket

import httpx

from api_assets.config.models import SourceConfig
from api_assets.http.auth import Origin, origin_of

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def shown_origin(origin: Origin) -> str:
    """`scheme://host[:port]`, the default port left out (as `allowed_origins` is written)."""
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


class NextOrigins:
    """The origin rules of one source's next URLs (thread-safe; DNS answers are not cached,
    except whether `base_url` is public)."""

    def __init__(self, source: SourceConfig):
        self.base = origin_of(source.base_url)
        self.allowed = frozenset(origin_of(o) for o in source.allowed_origins)

    def refusal(self, url: str) -> str | None:
        """Why the next URL `url` must not be followed, or None when it may be."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:  # the request fails on it as it always did
            return None
        if parsed.is_relative_url:  # joined to `base_url`: the source's own origin
            return None
        origin = origin_of(parsed)
        if origin == self.base:
            return None
        shown = shown_origin(origin)
        if origin not in self.allowed:
            return (
                f"the next page is on another origin, {shown}, than `base_url` "
                f"({shown_origin(self.base)}): not followed. If the API serves its pages "
                f"there, add {shown} to the source's `allowed_origins` (the `auth:` credential "
                f"and credential-looking headers still go only to `base_url`'s origin and the "
                f"token URL's)"
            )
        if not self.base_is_public:
            return None
        private = _private_address(origin[1])
        if private is None:
            return None
        return (
            f"the next page is on {shown}, whose host is the non-public address {private}, "
            f"while `base_url` ({shown_origin(self.base)}) is public: not followed, whatever "
            f"`allowed_origins` says (a next link from a public API must not reach into this "
            f"network)"
        )

    @functools.cached_property
    def base_is_public(self) -> bool:
        """`base_url`'s host is a public address or resolves only to public ones (one that does
        not resolve here, because a proxy resolves it, counts as public: the strict side)."""
        return _private_address(self.base[1]) is None


def _private_address(host: str) -> IpAddress | None:
    """The first address of `host` (a literal, or its DNS answers here) that is not public, or
    None (also when the name does not resolve: the request then fails on its own)."""
    for address in _addresses(host):
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped or address
        if (
            not address.is_global  # e.g. 100.64.0.0/10, where some clouds serve metadata
            or address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_unspecified
            or address.is_reserved
            or address.is_multicast
        ):
            return address
    return None


def _addresses(host: str) -> list[IpAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    out: list[IpAddress] = []
    for info in infos:
        try:
            out.append(ipaddress.ip_address(str(info[4][0]).partition("%")[0]))
        except ValueError:
            continue
    return out

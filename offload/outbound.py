"""Requests to addresses a caller chose (webhooks), kept away from the inside of the network.

A caller who names a URL must not reach what only the API can: the instance metadata service
(169.254.169.254 hands out the role's credentials), the VPC's private services, or the API's
own host. So the host is resolved once, every address it resolves to must be public (or in
a network the configuration allows), and the connection goes to the address that was
checked: a DNS answer that changes between the check and the connection (DNS rebinding)
changes nothing. Redirects are not followed: the next hop would be unchecked.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from offload.errors import PermanentFailure

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# What is kept of a response body (for the job's error): enough to read, never a flood.
_RESPONSE_EXCERPT_BYTES = 2048


class DestinationRefused(PermanentFailure):
    """The URL is malformed, or its host is (or resolves to) an address not allowed."""


class DestinationUnreachable(Exception):
    """The host did not resolve, or no address of it took the connection: worth a retry."""


@dataclass(frozen=True)
class Answer:
    """A response: its status and the start of its body."""

    status: int
    excerpt: str


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (`127.0.0.0/8,::1/128`); ValueError names a bad one."""
    networks = []
    for entry in text.split(","):
        if entry.strip():
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"{entry.strip()!r} is not a network (CIDR): {exc}") from None
    return tuple(networks)


# IPv6 prefixes that carry an IPv4 address inside (NAT64), and the deprecated site-local
# range, which older `ipaddress` tables do not call private.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")


def refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why `address` may not be reached, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 is 127.0.0.1; a 6to4, Teredo or NAT64 address leads to the IPv4
        # address inside it, which must pass on its own.
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address.teredo is not None:
            inner = address.teredo[1]
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            if address.ipv4_mapped is not None:
                address = inner
            else:
                reason = refusal(inner, allowed)
                if reason is not None:
                    return f"{address} leads to {inner}: {reason}"
    if any(address.version == net.version and address in net for net in allowed):
        return None
    if address.version == 6 and address in _SITE_LOCAL:
        return f"{address} is a site-local address"
    for kind, test in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
    ):
        if test:
            return f"{address} is a {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    allowed: Sequence[IPNetwork] = (),
) -> Answer:
    """POST `body` to `url` at a checked address; the answer, whatever its status.

    `DestinationRefused` before any connection when the URL or its addresses are not
    allowed; `DestinationUnreachable` or `OSError` (timeouts included) when it cannot be
    reached."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused(f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("URLs with credentials in them are refused; use a header")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DestinationRefused(f"{url!r} has an invalid port") from None
    deadline = time.monotonic() + timeout_s  # for the whole call, the lookup included
    addresses = _resolve(parts.hostname, port, timeout_s)
    for address in addresses:
        reason = refusal(address, allowed)
        if reason is not None:
            raise DestinationRefused(
                f"{parts.hostname} is refused: {reason} (allow its network with "
                "OFFLOAD_WEBHOOK_ALLOWED_NETWORKS if it is meant to be reached)"
            )
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    last_error: OSError | None = None
    for address in addresses:
        left_s = max(0.1, deadline - time.monotonic())
        connection = _connection(parts.scheme, parts.hostname, port, address, left_s)
        try:
            try:
                connection.connect()
            except ssl.SSLCertVerificationError as exc:
                raise DestinationRefused(f"{parts.hostname}'s certificate: {exc}") from None
            except OSError as exc:
                last_error = exc  # nothing was sent: the next address may answer
                continue
            # However slowly the receiver trickles its answer, the whole exchange ends by
            # the deadline: the socket's own timeout restarts on every read.
            cut = threading.Event()
            watchdog = threading.Timer(
                max(0.0, deadline - time.monotonic()), _cut, [connection, cut]
            )
            watchdog.start()
            try:
                # Failures from here on are the caller's to retry: the body may have arrived.
                connection.request("POST", target, body=body, headers=dict(headers))
                response = connection.getresponse()
                excerpt = response.read(_RESPONSE_EXCERPT_BYTES).decode("utf-8", "replace")
            except OSError:
                if not cut.is_set():
                    raise
            finally:
                watchdog.cancel()
            if cut.is_set():
                # Cut off midway: whatever was read is not the whole answer.
                raise TimeoutError(f"no whole answer within {timeout_s:g} s")
            return Answer(response.status, excerpt)
        except (http.client.InvalidURL, ValueError) as exc:
            # A URL or header value http.client will not send: no retry sends it either.
            raise DestinationRefused(f"cannot be sent: {exc}") from None
        finally:
            connection.close()
    raise DestinationUnreachable(f"no address of {parts.hostname} answered: {last_error}")


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """Stop an exchange past its deadline: a blocked read returns at once."""
    cut.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def _resolve(host: str, port: int, timeout_s: float) -> list[IPAddress]:
    """The addresses of `host`, waiting at most `timeout_s` (getaddrinfo has no timeout of
    its own; a resolver that hangs leaves only a daemon thread behind)."""
    found: list[IPAddress] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
                if address not in found:
                    found.append(address)
        except (OSError, UnicodeError) as exc:
            failure.append(exc)

    resolver = threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True)
    resolver.start()
    resolver.join(timeout_s)
    if resolver.is_alive():
        raise DestinationUnreachable(f"{host} did not resolve within {timeout_s:g} s")
    if failure:
        if isinstance(failure[0], UnicodeError):
            raise DestinationRefused(f"{host!r} is not a valid host name")
        raise DestinationUnreachable(f"{host} does not resolve: {failure[0]}")
    return found


def _connection(
    scheme: str, host: str, port: int, address: IPAddress, timeout_s: float
) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPS(host, port, str(address), timeout_s)
    return _PinnedHTTP(host, port, str(address), timeout_s)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the checked address; the Host header still names the host."""

    def __init__(self, host: str, port: int, address: str, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address, verified against the host's name (SNI and certificate)."""

    def __init__(self, host: str, port: int, address: str, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]

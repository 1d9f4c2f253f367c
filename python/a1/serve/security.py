"""Who may talk to `a1 serve`, checked before any handler runs: the Host header (against DNS
rebinding: a web page whose name an attacker re-points at 127.0.0.1 reaches a loopback server with
its own name as Host), an API key (`Authorization: Bearer`, compared in constant time; /health
stays open), and JSON-only POSTs (a cross-origin `text/plain` or form POST is a "simple request"
that any web page can send without asking; `application/json` needs a CORS preflight, which this
server never grants)."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Awaitable, Callable, Iterable, Optional

from aiohttp import hdrs, web

from .errors import RequestError, brief

ENV_API_KEY = "A1_API_KEY"
OPEN_PATHS = ("/health",)  # answered without the API key (liveness probes); the Host check still applies


def host_name(value: str) -> str:
    """The host of a Host header (or of an --allowed-hosts entry): lower-case, without the port,
    IPv6 brackets or a final dot."""
    name = value.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        name = name.partition(":")[0]
    return name[:-1] if name.endswith(".") else name


def is_loopback(host: str) -> bool:
    """localhost, *.localhost (RFC 6761: never sent to DNS by browsers) or a loopback address."""
    name = host_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_allowed_hosts(entries: Iterable[str]) -> tuple[str, ...]:
    """--allowed-hosts entries, normalised: names or addresses (ports ignored), "*" for any host,
    ".example.com" for example.com and its subdomains. ValueError names a malformed entry."""
    hosts = []
    for entry in entries:
        text = entry.strip()
        name = "*" if text == "*" else host_name(text)
        if not name or name == "." or not text.isascii() or any(c.isspace() or c in "/@?#\\" for c in text):
            raise ValueError(f"allowed_hosts: {entry!r} is not a host name (give names like example.com, "
                             f"10.0.0.5, .example.com or *)")
        hosts.append(name)
    return tuple(hosts)


def check_api_key(key: str) -> str:
    """An API key must be sendable in a header as is: visible ASCII, no spaces."""
    if not key or not all("!" <= c <= "~" for c in key):
        raise ValueError("api_key must be a non-empty string of visible ASCII characters (no spaces)")
    return key


class AccessPolicy:
    """api_key: required as `Authorization: Bearer <key>` by every endpoint but /health (None:
    none required). allowed_hosts: Host names accepted besides the loopback names, which always
    pass (a rebinding page cannot send them); None: decided by bind(): loopback names only when
    bound to a loopback address, any host otherwise."""

    def __init__(self, api_key: Optional[str] = None, allowed_hosts: Optional[Iterable[str]] = None) -> None:
        self.has_key = api_key is not None
        # digests of equal length: compare_digest then reveals neither the key nor its length
        self._key_digest = hashlib.sha256(check_api_key(api_key).encode()).digest() if api_key is not None else b""
        self.allowed_hosts = None if allowed_hosts is None else check_allowed_hosts(allowed_hosts)
        self.any_host = self.allowed_hosts is not None and "*" in self.allowed_hosts

    def __repr__(self) -> str:  # never the key
        return f"AccessPolicy(api_key={'set' if self.has_key else None}, allowed_hosts={self.allowed_hosts})"

    def bind(self, host: str) -> None:
        """Settle the default for the address the server listens on."""
        if self.allowed_hosts is None:
            self.any_host = not is_loopback(host)

    def host_allowed(self, header: Optional[str]) -> bool:
        if header is None or self.any_host:  # no Host: HTTP/1.0 or a raw client, never a browser
            return True
        name = host_name(header)
        if is_loopback(name):
            return True
        return any(name == h or (h.startswith(".") and (name == h[1:] or name.endswith(h)))
                   for h in self.allowed_hosts or ())

    def authorized(self, header: Optional[str]) -> bool:
        if not self.has_key:
            return True
        scheme, _, token = (header or "").strip().partition(" ")
        # header octets that are no UTF-8 arrive as surrogates: surrogatepass encodes any of them
        digest = hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(digest, self._key_digest) and scheme.lower() == "bearer"

    def warnings(self, host: str) -> list[str]:
        """What `a1 serve` prints when it listens beyond loopback without protection."""
        if is_loopback(host):
            return []
        out = []
        if not self.has_key:
            out.append(f"listening on {host} without an API key: anyone who can reach this port can use the "
                       f"models; set --api-key or the {ENV_API_KEY} environment variable")
        if self.allowed_hosts is None or self.any_host:
            out.append("any Host header is accepted: pass --allowed-hosts with the names clients use, so that a "
                       "web page cannot reach this server through DNS rebinding")
        return out


def check_access(policy: AccessPolicy, request: web.BaseRequest) -> None:
    """The Host (403), then the key (401): RequestError for a request refused."""
    host = request.headers.get(hdrs.HOST)
    if not policy.host_allowed(host):
        raise RequestError(f"Host {brief(host)} is not allowed by this server (see a1 serve --allowed-hosts)",
                           None, 403)
    if request.path not in OPEN_PATHS and not policy.authorized(request.headers.get(hdrs.AUTHORIZATION)):
        raise RequestError("a valid API key is required: send the header 'Authorization: Bearer <key>'",
                           None, 401, {"WWW-Authenticate": 'Bearer realm="a1 serve"'})


def access_middleware(policy: AccessPolicy):
    @web.middleware
    async def access(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        check_access(policy, request)
        if request.method == "POST" and request.match_info.http_exception is None:  # a route that takes a body
            check_content_type(request)
        return await handler(request)

    return access


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def before_routing(policy: AccessPolicy, handler: Handler) -> Handler:
    """The application's handler (a runner's server.request_handler) behind the one check that
    must precede aiohttp's routing: an Expect header, which aiohttp answers before any middleware
    runs (100 Continue to anyone; a 500 when it cannot even quote an undecodable value in its 417).
    Here only `100-continue` is honoured, and only for a request that passes the Host and key checks:
    a body is not invited before the sender is known."""

    async def guarded(request: web.BaseRequest) -> web.StreamResponse:
        expect = request.headers.get(hdrs.EXPECT)
        if expect is not None:
            try:
                if expect.strip().lower() != "100-continue":
                    raise RequestError(f"Expect: {brief(expect)} is not supported (only 100-continue)", None, 417)
                check_access(policy, request)
            except RequestError as err:
                return err.response()
        return await handler(request)

    return guarded


def check_content_type(request: web.Request) -> None:
    """POST bodies are `application/json` (parameters allowed), in UTF-8 (RFC 8259)."""
    given = request.headers.get(hdrs.CONTENT_TYPE)
    if given is None or request.content_type != "application/json":
        raise RequestError(f"POST bodies must be sent as Content-Type: application/json (got {brief(given)})",
                           None, 415)
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise RequestError(f"JSON bodies must be UTF-8 (got charset={brief(charset)})", None, 415)

"""Outbound HTTP proxies: proxy URLs (HTTPS_PROXY, HTTP_PROXY, a provider's `proxy` key) and the NO_PROXY rules.

Parsed once (at Transport.open for the environment, at config load for a provider's key); the connections only
look at the parsed Proxy. A proxy is reached over plain TCP (http://); https origins are tunnelled through it with
CONNECT, http origins are sent to it in absolute form (lsd.providers.connections).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from lsd.config.reader import Table

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it listens and the Proxy-Authorization value from its URL's user and password.

    `shown` is the URL without its userinfo: the only form that appears in messages."""

    host: str
    port: int
    authorization: str | None
    shown: str

    @staticmethod
    def parse(url: str) -> Proxy:
        """`url` as a proxy (`http://[user:password@]host[:port]`; no scheme means http://). Raises ValueError,
        whose message never holds the password."""
        text = url.strip()
        if "://" not in text:
            text = f"http://{text}"
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            raise ValueError(f"not a proxy URL: {_masked(url)!r}") from None
        scheme = parts.scheme.lower()
        if scheme != "http":
            raise ValueError(
                f"unsupported proxy scheme {scheme!r} in {_masked(url)!r} (only http:// proxies are supported)"
            )
        if not parts.hostname:
            raise ValueError(f"no host in proxy URL {_masked(url)!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"a proxy URL is scheme, host and port only, got {_masked(url)!r}")
        authorization = None
        if parts.username is not None or parts.password is not None:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        host = parts.hostname
        port = port or 80
        shown_host = f"[{host}]" if ":" in host else host
        return Proxy(host, port, authorization, f"http://{shown_host}:{port}")


ProxyChoice = Proxy | Literal["direct"] | None
"""What a call asks for: this proxy, "direct" (no proxy, whatever the environment says), or None (the
environment's HTTPS_PROXY/HTTP_PROXY and NO_PROXY decide)."""


def proxy_option(options: Table) -> ProxyChoice:
    """A provider's `proxy` key: absent → None (the environment decides), "none" or "" → "direct", else a proxy
    URL (errors reported on the table, with the password masked)."""
    raw = options.str("proxy", None, env=True)
    if not isinstance(raw, str):
        return None
    if raw.strip().lower() in ("", "none"):
        return "direct"
    try:
        return Proxy.parse(raw)
    except ValueError as exc:
        options.error("proxy", str(exc))
        return None


@dataclass(frozen=True, slots=True)
class NoProxy:
    """The NO_PROXY rules, as curl reads them: comma-separated host names, each matching itself and its
    subdomains (a leading "." or "*." changes nothing), IP addresses and CIDR ranges matching literal IP hosts,
    an optional ":port" restricting an entry to that port, and "*" alone matching every host. Names are not
    resolved: an entry "10.0.0.0/8" does not match a host name that resolves into it."""

    everything: bool = False
    names: tuple[tuple[str, int | None], ...] = ()
    networks: tuple[tuple[IpNetwork, int | None], ...] = ()

    @staticmethod
    def parse(value: str) -> NoProxy:
        names: list[tuple[str, int | None]] = []
        networks: list[tuple[IpNetwork, int | None]] = []
        for raw in value.split(","):
            entry = raw.strip().lower()
            if entry == "*":
                return NoProxy(everything=True)
            host, port = _split_port(entry)
            if not host:
                continue
            try:
                networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                names.append((host.removeprefix("*").lstrip("."), port))
        return NoProxy(False, tuple(names), tuple(networks))

    def matches(self, host: str, port: int) -> bool:
        """Whether a request to `host`:`port` bypasses the proxy."""
        if self.everything:
            return True
        host = host.lower().rstrip(".")
        for name, only in self.names:
            if (only is None or only == port) and (host == name or host.endswith(f".{name}")):
                return True
        if self.networks:
            try:
                address = ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                return False
            return any((only is None or only == port) and address in net for net, only in self.networks)
        return False


@dataclass(frozen=True, slots=True)
class EnvironmentProxies:
    """HTTPS_PROXY, HTTP_PROXY and NO_PROXY (the lowercase names win over the uppercase ones, as in curl and
    requests)."""

    https: Proxy | None
    http: Proxy | None
    bypass: NoProxy

    @staticmethod
    def read(environ: Mapping[str, str]) -> EnvironmentProxies | None:
        """The proxies `environ` sets; None when it sets none (so direct calls check nothing more). Raises
        ValueError, naming the variable, for a proxy URL LSD cannot use."""
        proxies: dict[str, Proxy | None] = {}
        for scheme in ("https", "http"):
            name, value = _variable(environ, f"{scheme}_proxy")
            try:
                proxies[scheme] = Proxy.parse(value) if value.strip() else None
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if proxies["https"] is None and proxies["http"] is None:
            return None
        _, no_proxy = _variable(environ, "no_proxy")
        return EnvironmentProxies(proxies["https"], proxies["http"], NoProxy.parse(no_proxy))

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for an origin; None to connect directly."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self.bypass.matches(host, port):
            return None
        return proxy


def _variable(environ: Mapping[str, str], lower: str) -> tuple[str, str]:
    """The variable's name and value, the lowercase one first; ("", "") when neither is set."""
    for name in (lower, lower.upper()):
        if name in environ:
            return name, environ[name]
    return "", ""


def _split_port(entry: str) -> tuple[str, int | None]:
    """A NO_PROXY entry as host and port: "host", "host:443", "[::1]:443", "::1", "10.0.0.0/8"."""
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            return "", None
        host, rest = entry[1:close], entry[close + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return (host, int(port)) if port.isdigit() else ("", None)
    return entry, None


def _masked(url: str) -> str:
    """`url` with any password replaced by "***" (for messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}"

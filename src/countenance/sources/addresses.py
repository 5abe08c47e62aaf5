"""Which addresses countenance may connect to, and the system resolver (see
:mod:`countenance.sources.http` for how the checked address is then pinned).

Example::

    check_address("10.1.2.3")                      # raises FetchRefused(reason="private_address")
    check_address("10.1.2.3", allow_private=True)  # the operator's explicit choice
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from countenance.errors import FetchRefused

__all__ = ["Resolver", "check_address", "system_resolver"]

Resolver = Callable[[str, int], list[str]]
"""``resolve(host, port)`` -> the IP addresses (strings) the host resolves to."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"{host}: cannot resolve: {exc}", reason="dns") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_address(address: str, *, allow_private: bool = False) -> None:
    """Refuse an address countenance must not connect to (see the module docstring).

    Example: ``check_address("10.1.2.3")`` raises FetchRefused(reason="private_address").
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError as exc:
        raise FetchRefused(f"{address}: not an IP address", reason="private_address") from exc
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1 and 64:ff9b::10.0.0.1 reach IPv4 hosts: judge the IPv4 address
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in ipaddress.ip_network("64:ff9b::/96"):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            check_address(str(inner), allow_private=allow_private)
            return
    # ::1 counts as reserved (::/8) too: loopback is judged first
    never = ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved
    if never and not ip.is_loopback:
        raise FetchRefused(
            f"{ip}: link-local, multicast, unspecified or reserved address; never fetched",
            reason="private_address",
        )
    if (ip.is_loopback or ip.is_private or not ip.is_global) and not allow_private:
        raise FetchRefused(
            f"{ip}: loopback or private address; refused without --allow-private-addresses",
            reason="private_address",
        )

"""The address policy of outbound requests. Pure; no I/O.

Unless an adapter is told to allow them, requests to loopback, link-local,
private, multicast, reserved or unspecified addresses are refused, so a URL
stored through an API (a webhook endpoint) is no way into the operator's network.
"""

from __future__ import annotations

import ipaddress

__all__ = ["blocked_address"]


def blocked_address(address: str) -> bool:
    """Whether a resolved address is one the policy refuses by default."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified)

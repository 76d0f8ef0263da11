"""The address policy of every Outbound adapter (``roomlog.outbound.policy``)."""

from __future__ import annotations

import pytest

from roomlog.outbound.policy import blocked_address


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "172.16.5.5",
                                     "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1",
                                     "0.0.0.0", "224.0.0.1", "fd00::1"])
def test_blocked_addresses(address: str) -> None:
    assert blocked_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    assert not blocked_address(address)

"""Validate SS58 account addresses the way the chain's codec reads them."""

from __future__ import annotations

import bittensor_core

# Bittensor (finney) uses the generic Substrate address format 42.
SS58_FORMAT = 42


def is_valid_ss58(address: str) -> bool:
    """True when ``address`` decodes as a format-42 SS58 account with a good checksum."""
    try:
        public_key = bytes(bittensor_core.ss58_decode(address))
        return bittensor_core.ss58_encode(public_key, SS58_FORMAT) == address
    except (ValueError, TypeError):
        return False

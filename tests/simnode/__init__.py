"""A simulated subtensor node: real finney metadata, test-built chain state, real wire."""

from .state import ChainState
from .server import SimNode

__all__ = ["ChainState", "SimNode"]

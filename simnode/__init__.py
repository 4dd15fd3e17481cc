"""A simulated subtensor node: real finney metadata, test-built chain state, real wire."""

from simnode.state import ChainState
from simnode.server import SimNode

__all__ = ["ChainState", "SimNode"]

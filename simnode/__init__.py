"""A simulated subtensor node: real finney metadata, test-built chain state, real wire."""

from simnode.state import SIMNODE_GENESIS_HASH, ChainState
from simnode.server import SimNode
from simnode.epoch import advance_to, block_step, epoch_permits, next_epoch_block

__all__ = ["SIMNODE_GENESIS_HASH", "ChainState", "SimNode", "advance_to", "block_step", "epoch_permits", "next_epoch_block"]

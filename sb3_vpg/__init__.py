import os

from sb3_vpg.common.buffers import VPGDictRolloutBuffer, VPGRolloutBuffer, discounted_reward_to_go
from sb3_vpg.common.callbacks import AtomicCheckpointCallback, latest_checkpoint, load_checkpoint
from sb3_vpg.vpg import VPG

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "VPG",
    "AtomicCheckpointCallback",
    "VPGDictRolloutBuffer",
    "VPGRolloutBuffer",
    "__version__",
    "discounted_reward_to_go",
    "latest_checkpoint",
    "load_checkpoint",
]

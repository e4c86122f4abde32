"""
Vanilla Policy Gradient (REINFORCE) for Stable-Baselines3.

The names below are imported on first use (PEP 562 ``__getattr__``): importing the package, or one of its
``sb3_vpg.common`` modules, does not import the algorithm.
"""

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from sb3_vpg.common.buffers import VPGDictRolloutBuffer, VPGRolloutBuffer, discounted_reward_to_go
    from sb3_vpg.common.reliability import AtomicCheckpointCallback, latest_checkpoint
    from sb3_vpg.vpg import VPG

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

#: Where each exported name is defined.
_EXPORTS = {
    "VPG": "sb3_vpg.vpg",
    "AtomicCheckpointCallback": "sb3_vpg.common.reliability",
    "latest_checkpoint": "sb3_vpg.common.reliability",
    "VPGRolloutBuffer": "sb3_vpg.common.buffers",
    "VPGDictRolloutBuffer": "sb3_vpg.common.buffers",
    "discounted_reward_to_go": "sb3_vpg.common.buffers",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups find it without calling __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


def load_checkpoint(save_path: str, venv: "VecEnv", name_prefix: str = "rl_model", **load_kwargs: Any) -> "VPG":
    """
    Load the newest VPG checkpoint of ``AtomicCheckpointCallback(save_path=save_path, name_prefix=name_prefix)`` to
    resume training on ``venv``: :func:`sb3_vpg.common.reliability.load_checkpoint` with ``VPG`` (see it for the
    arguments); that one takes the algorithm class, for checkpoints of any SB3 algorithm.
    """
    from sb3_vpg.common.reliability import load_checkpoint as load_algorithm_checkpoint
    from sb3_vpg.vpg import VPG

    return load_algorithm_checkpoint(VPG, save_path, venv, name_prefix, **load_kwargs)


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

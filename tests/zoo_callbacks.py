"""Callbacks that the zoo's tests hand to ``python -m sb3_vpg.zoo train`` through an entry's ``callback`` key."""

import os
import signal

from stable_baselines3.common.callbacks import BaseCallback


class KillAt(BaseCallback):
    """SIGKILL this process at the first rollout that starts at or after ``steps``: a crash that nothing can catch."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.steps:
            os.kill(os.getpid(), signal.SIGKILL)

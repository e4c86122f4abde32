"""
A custom callback that reads VPG's Monte-Carlo returns after each rollout.

At the end of every rollout the buffer holds, with shape ``(n_steps, n_envs)``: ``returns`` (the discounted
reward-to-go G_t), ``advantages`` (the policy weights before normalization: G_t, or G_t - V(s_t) with a
baseline) and ``has_return`` (False for the steps of an episode the rollout did not see end, which pure
REINFORCE leaves out). This callback logs percentiles of G_t to TensorBoard under ``rollout/``.

    python examples/returns_callback.py
    tensorboard --logdir runs/
"""

import argparse

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from sb3_vpg import VPG


class ReturnStats(BaseCallback):
    """Logs the 10th, 50th and 90th percentiles of the rollout's returns, and the share of steps that have one."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        returns = buffer.returns[buffer.has_return]
        self.logger.record("rollout/used_fraction", float(buffer.has_return.mean()))
        if returns.size:
            for q in (10, 50, 90):
                self.logger.record(f"rollout/return_p{q}", float(np.percentile(returns, q)))
        if self.verbose:
            median = np.median(returns) if returns.size else float("nan")
            print(f"step {self.num_timesteps}: {returns.size} returns, median {median:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--logdir", default="runs/")
    parser.add_argument("--tiny", action="store_true", help="two rollouts, for a smoke test")
    args = parser.parse_args()

    model = VPG("MlpPolicy", "CartPole-v1", n_steps=1_000 if args.tiny else 2_048, tensorboard_log=args.logdir, seed=0)
    model.learn(total_timesteps=2_000 if args.tiny else args.steps, callback=ReturnStats(verbose=1))
    print(f"tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()

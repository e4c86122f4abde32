"""
Pure REINFORCE on Atari Pong: every point ends a rally, so ``reset_on_reward=True`` restarts the return there.

    python examples/pong.py --device cuda      # 10M steps, 16 envs
    tensorboard --logdir runs/
"""

import argparse

import ale_py
import gymnasium as gym
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_vpg import VPG

gym.register_envs(ale_py)  # registers the ALE ids (PongNoFrameskip-v4) with gymnasium 1.x

ENV_ID = "PongNoFrameskip-v4"
# A starting point for Pong, not tuned. Pure REINFORCE (no baseline): the return restarts at every point.
HYPERPARAMS = dict(
    n_steps=256,
    learning_rate=2.5e-4,
    gamma=0.99,
    reset_on_reward=True,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000_000, help="total env steps")
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs/", help="TensorBoard directory")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... or auto")
    parser.add_argument("--tiny", action="store_true", help="256 steps with 2 envs and n_steps 64, for a smoke test")
    args = parser.parse_args()

    hyperparams = dict(HYPERPARAMS)
    total_timesteps, n_envs = args.steps, args.n_envs
    if args.tiny:
        total_timesteps, n_envs, hyperparams["n_steps"] = 256, 2, 64

    env = make_atari_env(ENV_ID, n_envs=n_envs, seed=args.seed)
    env = VecFrameStack(env, n_stack=4)
    model = VPG("CnnPolicy", env, tensorboard_log=args.logdir, seed=args.seed, device=args.device, verbose=1, **hyperparams)
    model.learn(total_timesteps=total_timesteps)
    env.close()
    print(f"tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()

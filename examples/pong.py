"""
VPG on Atari Pong from pixels (CnnPolicy, 4 stacked frames). Settings: the ``atari`` entry of the packaged
``vpg.yml``: REINFORCE with a learned baseline over 5-step rollouts whose tails bootstrap with ``V`` (A2C's update),
measured to rise from -21 on Pong (benchmarks/RESULTS.md). ``--pure`` trains as the source tutorial does: no
baseline, and every point ends a rally, so ``reset_on_reward=True`` restarts the return there (the settings of
``sb3_vpg.hyperparams.ATARI_PURE``, not measured to learn Pong). ``--reset-on-reward`` restarts the return at each
point with the baseline too (measured: it kept the policy uniform for 4.8M steps).

    python examples/pong.py --device cuda      # 10M steps, 16 envs
    tensorboard --logdir runs/
"""

import argparse

import ale_py
import gymnasium as gym
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_vpg import VPG
from sb3_vpg.hyperparams import ATARI_PURE, load_hyperparams

gym.register_envs(ale_py)  # registers the ALE ids (PongNoFrameskip-v4) with gymnasium 1.x

ENV_ID = "PongNoFrameskip-v4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="total env steps (default: n_timesteps of vpg.yml)")
    parser.add_argument("--n-envs", type=int, default=None, help="default: n_envs of vpg.yml")
    parser.add_argument("--pure", action="store_true", help="pure REINFORCE, returns restarting at each point")
    parser.add_argument("--reset-on-reward", action="store_true", help="with the baseline: returns restart at each point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs/", help="TensorBoard directory")
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... or auto")
    parser.add_argument("--tiny", action="store_true", help="256 steps with 2 envs and n_steps 64, for a smoke test")
    args = parser.parse_args()

    run, hyperparams = load_hyperparams("atari")
    if args.pure:
        hyperparams.update(ATARI_PURE)
    if args.reset_on_reward:
        hyperparams.update(reset_on_reward=True)
    total_timesteps, n_envs = args.steps or run["n_timesteps"], args.n_envs or run["n_envs"]
    if args.tiny:
        total_timesteps, n_envs, hyperparams["n_steps"] = 256, 2, 64

    env = make_atari_env(ENV_ID, n_envs=n_envs, seed=args.seed)  # AtariWrapper, as the entry's env_wrapper
    env = VecFrameStack(env, n_stack=run["frame_stack"])
    model = VPG(run["policy"], env, tensorboard_log=args.logdir, seed=args.seed, device=args.device, verbose=1, **hyperparams)
    model.learn(total_timesteps=total_timesteps)
    env.close()
    print(f"tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()

"""
Continuous control from MuJoCo: VPG with a Gaussian policy on HalfCheetah-v5 (or Hopper-v5), with the
observation and reward normalization (``VecNormalize``) that the packaged ``vpg.yml`` entry asks for.

    pip install -e ".[mujoco]"
    python examples/continuous_control.py --env HalfCheetah-v5       # the entry's budget (1M steps)
    tensorboard --logdir runs/

The model and the normalization statistics are saved side by side; evaluation reuses the statistics, frozen,
and reports the unnormalized return.
"""

import argparse
import os

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_vpg import VPG
from sb3_vpg.hyperparams import load_hyperparams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5", choices=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--steps", type=int, default=None, help="total env steps (default: n_timesteps of vpg.yml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs/", help="TensorBoard directory")
    parser.add_argument("--save", default="models/", help="folder for the model and the VecNormalize statistics")
    parser.add_argument("--tiny", action="store_true", help="a few thousand steps, for a smoke test")
    args = parser.parse_args()

    run, hyperparams = load_hyperparams(args.env)
    if args.tiny:
        hyperparams.update(n_steps=256, batch_size=None)
    total_timesteps = 2 * 256 * run["n_envs"] if args.tiny else (args.steps or run["n_timesteps"])

    env = make_vec_env(args.env, n_envs=run["n_envs"], seed=args.seed)
    if run.get("normalize"):
        env = VecNormalize(env, gamma=hyperparams.get("gamma", 0.99))
    model = VPG(run["policy"], env, tensorboard_log=args.logdir, seed=args.seed, verbose=1, **hyperparams)
    model.learn(total_timesteps=total_timesteps)

    os.makedirs(args.save, exist_ok=True)
    model.save(os.path.join(args.save, f"vpg_{args.env}"))
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1_000)
    if isinstance(env, VecNormalize):
        env.save(os.path.join(args.save, f"vpg_{args.env}_vecnormalize.pkl"))
        eval_env = VecNormalize.load(os.path.join(args.save, f"vpg_{args.env}_vecnormalize.pkl"), eval_env)
        eval_env.training, eval_env.norm_reward = False, False  # frozen statistics, true returns
    episodes = 1 if args.tiny else 10
    mean_reward, std_reward = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    print(f"Evaluation over {episodes} episodes (deterministic): {mean_reward:.1f} +- {std_reward:.1f}")
    print(f"tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()

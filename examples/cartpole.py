"""
Main job: train VPG on CartPole-v1, log to TensorBoard, then evaluate the policy.

    python examples/cartpole.py            # hyperparameters from sb3_vpg/hyperparams/vpg.yml
    tensorboard --logdir runs/
"""

import argparse

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_vpg import VPG
from sb3_vpg.hyperparams import load_hyperparams

ENV_ID = "CartPole-v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="total env steps (default: n_timesteps of vpg.yml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs/", help="TensorBoard directory (runs are named VPG_1, VPG_2, ...)")
    parser.add_argument("--save", default=None, help="optional path to save the trained model (.zip)")
    parser.add_argument("--tiny", action="store_true", help="2_000 steps, for a smoke test")
    args = parser.parse_args()

    run, hyperparams = load_hyperparams(ENV_ID)
    total_timesteps = 2_000 if args.tiny else (args.steps or run["n_timesteps"])

    env = make_vec_env(ENV_ID, n_envs=run.get("n_envs", 1), seed=args.seed)
    model = VPG(run.get("policy", "MlpPolicy"), env, tensorboard_log=args.logdir, seed=args.seed, verbose=1, **hyperparams)
    model.learn(total_timesteps=total_timesteps)
    if args.save:
        model.save(args.save)
        print(f"Saved the model to {args.save}")

    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=args.seed + 1_000)
    mean_reward, std_reward = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True)
    print(f"Evaluation over 20 episodes (deterministic): {mean_reward:.1f} +- {std_reward:.1f}")
    print(f"tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()

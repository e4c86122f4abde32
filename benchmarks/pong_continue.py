"""
Continue a saved Atari run (an ``atari_curve.py`` model, VPG or A2C, told apart by ``_a2c`` in the file name as
``--probe`` does) with some hyperparameters changed, logging SB3's ``progress.csv`` (``--log-interval``) and, every
``--probe-every`` updates, the policy probe of ``atari_curve.py --probe`` (entropy, CNN feature scale) to
``probe.csv``. Made to test on CPU whether a setting keeps a policy from collapsing, starting from the same
checkpoint as the run that collapsed, and to take a run further than a GPU session did; ``--fresh`` starts a new
run the same way, with the settings of ``atari_curve.py --algo`` (and ``--set``).

Usage (the numbers of ``benchmarks/RESULTS.md``, 2 CPU cores, one torch thread each)::

    python benchmarks/pong_continue.py vpg_1068000.zip --out runs/lr1e-3 --steps 400000
    python benchmarks/pong_continue.py vpg_1068000.zip --out runs/lr2.5e-4 --steps 2000000 --set learning_rate=2.5e-4
    python benchmarks/pong_continue.py PongNoFrameskip-v4_a2c_seed0.zip --out runs/a2c --steps 4000000 --probe-every 1250
    python benchmarks/pong_continue.py vpg_1068000.zip --out runs/timing --steps 12288 --probe-every 1000  # update time
    python benchmarks/pong_continue.py vpg_1068000.zip --out runs/own_critic_cnn --steps 2000000 --separate-critic \
        --set learning_rate=1e-3 n_critic_updates=0
    python benchmarks/pong_continue.py vpg_1068000.zip --out runs/grad --steps 10240 --grad-split  # which loss trains the CNN
    python benchmarks/pong_continue.py --fresh --zoo-optimizer --out runs/vpg_short --steps 6000000 --seed 0 \
        --probe-every 1250 --log-interval 100 --set n_steps=5 batch_size=None learning_rate=7e-4 vf_coef=0.25 \
        n_critic_updates=0 normalize_returns=False   # a new run: VPG with A2C's step budget and optimizer
    python benchmarks/pong_continue.py --fresh a2c --out runs/a2c_new --steps 6000000 --seed 0 --probe-every 1250
    python benchmarks/pong_continue.py --fresh vpg --out runs/vpg_entry --steps 6000000 --seed 1 --probe-every 1250 \
        --log-interval 100   # the atari entry now: the --zoo-optimizer run above with reset_on_reward=False
    python benchmarks/pong_continue.py runs/vpg_entry/model.zip --evaluate 10 --out runs/vpg_entry  # evaluation.csv
    python benchmarks/pong_continue.py --plot runs/lr1e-3 runs/lr2.5e-4     # runs/continued.png
    python benchmarks/pong_continue.py --plot runs/a2c runs/vpg_short --png short.png
"""

import argparse
import csv
import os
import time
from typing import Any

import numpy as np
import torch as th
from atari_curve import ZOO_A2C_ATARI, _literal, probe_frames, probe_policy, run_settings, saved_model_class
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecFrameStack
from torch.nn import functional as F

from sb3_vpg import VPG


class ProbeLog(BaseCallback):
    """
    Appends the policy probe to ``{out}/probe.csv`` every ``every`` updates, saves the model every 100k steps, and
    adds up the time spent in updates (from the end of a rollout to the start of the next, or of training).
    """

    def __init__(self, out: str, env_id: str, every: int, grad_split: bool = False) -> None:
        super().__init__()
        self.out, self.every, self.obs, self.grad_split = out, every, probe_frames(env_id), grad_split
        self.saved_at, self.update_seconds, self._update_start = 0, 0.0, None

    def _stop_update_timer(self) -> None:
        if self._update_start is not None:
            self.update_seconds += time.perf_counter() - self._update_start
            self._update_start = None

    def _on_rollout_start(self) -> None:
        self._stop_update_timer()

    def _on_training_end(self) -> None:
        self._stop_update_timer()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        updates = self.model._n_updates
        if updates % self.every == 0:
            row = {"timesteps": self.num_timesteps, **probe_policy(self.model, self.obs)}
            if self.grad_split:
                row.update(gradient_split(self.model))
            path = os.path.join(self.out, "probe.csv")
            new = not os.path.exists(path)
            with open(path, "a", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
            print(*(f"{key} {value:.4g}" for key, value in row.items()), flush=True)
        if self.num_timesteps - self.saved_at >= 100_000:
            self.model.save(os.path.join(self.out, "model.zip"))
            self.saved_at = self.num_timesteps
        self._update_start = time.perf_counter()


def gradient_split(model: VPG) -> dict[str, float]:
    """
    Which loss trains the actor's CNN: the norms of the gradients on its parameters of the rollout's policy loss
    and of ``vf_coef`` times its value loss, as VPG's update weights them (zero for a critic with a CNN of its own).
    For VPG with a baseline and a Discrete action space (Atari).
    """
    policy, data = model.policy, next(model.rollout_buffer.get())
    values, log_prob, _ = policy.evaluate_actions(data.observations, data.actions.long().flatten())
    weight = data.advantages
    if model.normalize_returns:
        weight = (weight - weight.mean()) / (weight.std(correction=0) + 1e-8)
    losses = {"policy": -(log_prob * weight).mean(), "value": model.vf_coef * F.mse_loss(data.returns, values.flatten())}
    params = list(policy.pi_features_extractor.parameters())
    norms = {}
    for name, loss in losses.items():
        grads = [grad for grad in th.autograd.grad(loss, params, retain_graph=True, allow_unused=True) if grad is not None]
        norms[f"cnn_grad_{name}"] = sum(float(grad.square().sum()) for grad in grads) ** 0.5
    return norms


def separate_critic(model: VPG) -> None:
    """
    Give the critic a features extractor (CNN) of its own, starting as a copy of the shared one, so that the value
    loss no longer trains the actor's features. The optimizer starts afresh (its parameter groups change).
    """
    policy = model.policy
    kwargs = {**model.policy_kwargs, "share_features_extractor": False}
    separate = model.policy_class(model.observation_space, model.action_space, model.lr_schedule, **kwargs)
    separate.load_state_dict(policy.state_dict())  # a shared policy's state names vf_features_extractor too
    separate.use_critic = policy.use_critic
    model.policy, model.policy_kwargs = separate.to(model.device), kwargs


def evaluate(model: Any, env: VecEnv, games: int, out: str) -> None:
    """
    Play ``games`` full games on separate evaluation envs with the greedy policy and as many with sampled actions
    (the policy a VPG run trains is stochastic); print the mean +- std of the game returns and append them to
    ``{out}/evaluation.csv``.
    """
    path = os.path.join(out, "evaluation.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(["timesteps", "deterministic", "games", "mean", "std", "returns"])
        for deterministic in (True, False):
            returns, _ = evaluate_policy(
                model, env, n_eval_episodes=games, deterministic=deterministic, return_episode_rewards=True
            )
            mean, std = float(np.mean(returns)), float(np.std(returns))
            writer.writerow(
                [model.num_timesteps, deterministic, games, f"{mean:.2f}", f"{std:.2f}", " ".join(f"{r:g}" for r in returns)]
            )
            print(f"{model.num_timesteps} steps, deterministic={deterministic}: {mean:.2f} +- {std:.2f} over {games} games")


def plot(runs: list[str], png: str | None = None) -> None:
    """
    Policy entropy (probe) and mean game return (last 100 games) against steps, one line per run folder. A
    ``games.csv`` in a folder (``atari_curve.py``'s CSV of the run's earlier part, on GPU) is drawn before its
    ``progress.csv``, as the mean of each 100 games, up to a dotted line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for run in runs:
        label = os.path.basename(os.path.normpath(run))
        probes = pd.read_csv(os.path.join(run, "probe.csv"))
        top.plot(probes["timesteps"], probes["entropy"], label=label)
        steps, returns = [], []
        games_path = os.path.join(run, "games.csv")
        games = pd.read_csv(games_path) if os.path.exists(games_path) else None
        if games is not None:
            steps.extend(games["timesteps"])
            returns.extend(games["episode_return"].rolling(100, min_periods=1).mean())
        progress = pd.read_csv(os.path.join(run, "progress.csv"))
        if "rollout/ep_rew_mean" in progress:  # absent until a game ends
            progress = progress.dropna(subset=["rollout/ep_rew_mean"])
            steps.extend(progress["time/total_timesteps"])
            returns.extend(progress["rollout/ep_rew_mean"])
        (line,) = bottom.plot(steps, returns, label=label)
        if games is not None:
            bottom.axvline(games["timesteps"].iloc[-1], color=line.get_color(), linestyle=":", linewidth=1)
    top.set_ylabel("policy entropy on the probe frames")
    bottom.set_ylabel("mean return, last 100 games")
    bottom.set_xlabel("environment steps")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = png or os.path.join(os.path.dirname(os.path.normpath(runs[0])), "continued.png")
    fig.savefig(path, dpi=120)
    print(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a VPG or A2C model saved by atari_curve.py")
    parser.add_argument(
        "--fresh",
        nargs="?",
        const="vpg",
        choices=["vpg", "vpg_pure", "a2c"],
        help="start a new run instead of loading a model, as atari_curve.py --algo does (vpg, vpg_pure, a2c), with --set",
    )
    parser.add_argument(
        "--zoo-optimizer",
        action="store_true",
        help="with --fresh vpg or vpg_pure: rl_zoo3's A2C Atari optimizer (RMSpropTFLike, eps 1e-5)",
    )
    parser.add_argument("--out")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--set", nargs="*", default=[], help="hyperparameters to change, e.g. learning_rate=2.5e-4")
    parser.add_argument("--grad-split", action="store_true", help="VPG with a baseline: probe which loss trains the CNN")
    parser.add_argument("--separate-critic", action="store_true", help="VPG: give the critic a CNN of its own")
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--probe-every", type=int, default=10, help="updates between probes")
    parser.add_argument("--log-interval", type=int, help="updates between progress.csv rows (default: the algorithm's)")
    parser.add_argument(
        "--evaluate", type=int, metavar="GAMES", help="with a model: play GAMES games greedy and GAMES sampled, no training"
    )
    parser.add_argument("--plot", nargs="+", metavar="RUN", help="plot finished runs (their --out folders) instead")
    parser.add_argument("--png", help="with --plot: the picture's path (default: continued.png beside the first run)")
    args = parser.parse_args()
    if args.plot:
        return plot(args.plot, args.png)
    if (args.model is None) == (not args.fresh) or args.out is None:
        parser.error("a model or --fresh, and --out, are needed to train")
    if args.evaluate is not None and (args.fresh or args.model is None or args.evaluate < 1):
        parser.error("--evaluate needs a saved model and GAMES >= 1")
    if args.zoo_optimizer and not (args.fresh or "").startswith("vpg"):
        parser.error("--zoo-optimizer needs --fresh vpg or vpg_pure (a loaded model keeps its optimizer, A2C has it already)")
    import ale_py  # noqa: F401

    th.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    changes = {key: _literal(value) for key, value in (item.split("=", 1) for item in args.set)}
    env = make_atari_env(
        args.env, n_envs=args.n_envs, seed=args.seed, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"}
    )
    env = VecFrameStack(env, n_stack=4)
    if args.fresh:  # the settings atari_curve.py starts a run with
        model_class, run, kwargs = run_settings(args.fresh, changes)
        if args.zoo_optimizer:
            kwargs["policy_kwargs"] = ZOO_A2C_ATARI["policy_kwargs"]
        model = model_class(run["policy"], env, seed=args.seed, device=args.device, **kwargs)
    else:  # custom_objects rebuilds the lr schedule
        model = saved_model_class(args.model).load(args.model, env=env, device=args.device, custom_objects=changes)
    if args.separate_critic:
        separate_critic(model)
    if args.evaluate is not None:
        return evaluate(model, env, args.evaluate, args.out)
    model.set_logger(configure(args.out, ["csv"]))
    start, steps_before = time.perf_counter(), model.num_timesteps
    log = ProbeLog(args.out, args.env, args.probe_every, args.grad_split)
    interval = {} if args.log_interval is None else {"log_interval": args.log_interval}
    model.learn(args.steps, reset_num_timesteps=False, callback=log, **interval)
    model.save(os.path.join(args.out, "model.zip"))
    seconds = time.perf_counter() - start
    print(
        f"{model.num_timesteps - steps_before} steps in {seconds:.1f} s, {log.update_seconds:.1f} s of it in updates ({model.num_timesteps} in all)"
    )


if __name__ == "__main__":
    main()

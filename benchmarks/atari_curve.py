"""
Atari learning curve of VPG beside SB3's A2C, within a wall-clock budget (made for the 15-minute GPU sessions).

Each run trains from pixels on ``make_atari_env`` + ``VecFrameStack(4)`` and appends every finished training
episode (the full game, summed over lives, as ``Monitor`` records it; actions sampled, as rl_zoo3 evaluates
Atari) to ``{out}/{env}_{algo}_seed{seed}.csv``, and saves the model beside it (``.zip``, about 20 MB), so that
``--resume`` continues the run in a later GPU session (the step count and the CSV go on). ``--plot`` draws the
rolling mean of all CSVs in ``out``; ``--probe`` checks saved models for a collapsed policy (entropy, and the
scale of the CNN features that feed it) on a fixed set of frames.

- VPG: the ``atari`` entry of the packaged ``vpg.yml``.
- A2C: rl_zoo3's published Atari hyperparameters (``a2c.yml``, ``atari``: 16 envs, ent_coef 0.01,
  vf_coef 0.25, RMSpropTFLike with eps 1e-5; the rest SB3's defaults).

Usage::

    python benchmarks/atari_curve.py --algo vpg --seconds 300 --device cuda --out benchmarks/results/pong &
    python benchmarks/atari_curve.py --algo a2c --seconds 300 --device cuda --out benchmarks/results/pong &
    wait; python benchmarks/atari_curve.py --plot --out benchmarks/results/pong
    python benchmarks/atari_curve.py --probe benchmarks/results/pong/*.zip
"""

import argparse
import ast
import csv
import glob
import os
import time
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.vec_env import SubprocVecEnv, VecFrameStack

from sb3_vpg import VPG
from sb3_vpg.hyperparams import ATARI_PURE, load_hyperparams

ZOO_A2C_ATARI: dict[str, Any] = {
    "ent_coef": 0.01,
    "vf_coef": 0.25,
    "policy_kwargs": {"optimizer_class": RMSpropTFLike, "optimizer_kwargs": {"eps": 1e-5}},
}


def _literal(text: str) -> Any:
    """A Python literal (``128``, ``7e-4``, ``True``), else the text itself (``drop``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class EpisodeLog(BaseCallback):
    """Appends each finished episode to a CSV, and stops training once the wall-clock budget is spent."""

    def __init__(self, path: str, algo: str, seed: int, seconds: float, append: bool = False) -> None:
        super().__init__()
        self.path, self.algo, self.seed, self.seconds = path, algo, seed, seconds
        self.start = time.perf_counter()
        if not append:
            with open(path, "w", newline="") as file:
                csv.writer(file).writerow(["algo", "seed", "timesteps", "episode_return", "episode_length", "wall_s"])

    def _on_step(self) -> bool:
        rows = [
            [
                self.algo,
                self.seed,
                self.num_timesteps,
                info["episode"]["r"],
                info["episode"]["l"],
                time.perf_counter() - self.start,
            ]
            for info in self.locals["infos"]
            if "episode" in info
        ]
        if rows:
            with open(self.path, "a", newline="") as file:
                csv.writer(file).writerows(rows)
        return time.perf_counter() - self.start < self.seconds


def run_settings(algo: str, changes: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """
    The settings of a new run: ``(model class, run settings, constructor arguments)``, the latter with ``changes``
    on top. ``vpg``: the packaged ``atari`` entry; ``vpg_pure``: the same with ``sb3_vpg.hyperparams.ATARI_PURE``
    on top (the source's pure REINFORCE); ``a2c``: rl_zoo3's Atari settings.
    """
    if algo.startswith("vpg"):
        run, kwargs = load_hyperparams("atari")
        if algo == "vpg_pure":
            kwargs.update(ATARI_PURE)
        return VPG, run, {**kwargs, **changes}
    return A2C, {"n_envs": 16, "policy": "CnnPolicy", "frame_stack": 4}, {**ZOO_A2C_ATARI, **changes}


def train(args: argparse.Namespace) -> None:
    import ale_py  # noqa: F401  (registers the Atari ids, inherited by the forked workers)

    changes = {key: _literal(value) for key, value in (item.split("=", 1) for item in args.set)}
    model_class, run, kwargs = run_settings(args.algo, changes)
    env = make_atari_env(
        args.env,
        n_envs=args.n_envs or run["n_envs"],
        seed=args.seed,
        vec_env_cls=SubprocVecEnv,
        vec_env_kwargs={"start_method": "fork"},
    )
    env = VecFrameStack(env, n_stack=run.get("frame_stack", 4))
    os.makedirs(args.out, exist_ok=True)
    name = args.algo + args.tag
    path = os.path.join(args.out, f"{args.env}_{name}_seed{args.seed}.csv")
    saved = path[: -len(".csv")] + ".zip"
    resume = args.resume and os.path.exists(saved) and os.path.exists(path)
    if resume:  # the same hyperparameters as the saved run; the env and device are this session's
        model = model_class.load(saved, env=env, device=args.device)
        print(f"{name}: resuming {saved} at {model.num_timesteps} steps")
    else:
        model = model_class(run["policy"], env, seed=args.seed, device=args.device, verbose=0, **kwargs)
    start, steps_before = time.perf_counter(), model.num_timesteps
    callback = EpisodeLog(path, name, args.seed, args.seconds, append=resume)
    model.learn(args.steps, callback=callback, reset_num_timesteps=not resume)
    elapsed = time.perf_counter() - start
    model.save(saved)
    memory = f", GPU peak {th.cuda.max_memory_allocated() / 2**20:.0f} MiB" if th.cuda.is_available() else ""
    print(
        f"{name} {kwargs if model_class is VPG else ''}: {model.num_timesteps - steps_before} steps in {elapsed:.0f} s "
        f"({(model.num_timesteps - steps_before) / elapsed:.0f} steps/s, {model.num_timesteps} in all){memory}"
    )
    env.close()


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    lines = []
    for path in sorted(glob.glob(os.path.join(args.out, "*.csv"))):
        with open(path) as file:
            rows = list(csv.DictReader(file))
        if not rows:
            continue
        steps = np.array([float(row["timesteps"]) for row in rows])
        returns = np.array([float(row["episode_return"]) for row in rows])
        window = min(args.window, len(returns))
        rolling = np.convolve(returns, np.ones(window) / window, mode="valid")
        label = f"{rows[0]['algo']} (seed {rows[0]['seed']})"
        ax.plot(steps[window - 1 :], rolling, label=label)
        last = returns[-window:]
        lines.append(
            f"| {label} | {int(steps[-1])} | {len(returns)} | {returns[:window].mean():.1f} | {last.mean():.1f} +- {last.std():.1f} |"
        )
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"training episode return (rolling mean of {args.window})")
    ax.set_title(args.env)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, f"{args.env}.png"), dpi=120)
    print(f"| run | steps | episodes | first {args.window} episodes | last {args.window} episodes |\n|---|---|---|---|---|")
    print("\n".join(lines))


def probe_frames(env_id: str) -> np.ndarray:
    """404 frame stacks from random play (4 envs, seed 1, 101 steps), the same on every call."""
    import ale_py  # noqa: F401

    env = VecFrameStack(make_atari_env(env_id, n_envs=4, seed=1), n_stack=4)
    rng = np.random.default_rng(0)
    frames = [env.reset()] + [env.step(rng.integers(env.action_space.n, size=4))[0] for _ in range(100)]
    env.close()
    return np.concatenate(frames)


def probe_policy(model: Any, obs: np.ndarray) -> dict[str, float]:
    """
    What tells a collapsed policy from one still exploring, on ``obs``: the mean policy entropy, the share of the
    most frequent greedy action, and the scale of the CNN features and of the logits they give.
    """
    policy = model.policy
    with th.no_grad():
        # BasePolicy's extract_features runs the actor's CNN, shared with the critic or not
        features = BasePolicy.extract_features(policy, policy.obs_to_tensor(obs)[0], policy.pi_features_extractor)
        logits = policy.action_net(policy.mlp_extractor.forward_actor(features))
    return {
        "entropy": th.distributions.Categorical(logits=logits).entropy().mean().item(),
        "greedy_share": (th.bincount(logits.argmax(1)).max() / len(logits)).item(),
        "features_mean": features.mean().item(),
        "features_max": features.max().item(),
        "logit_range": (logits.max(1).values - logits.min(1).values).mean().item(),
    }


def saved_model_class(path: str) -> type[A2C] | type[VPG]:
    """A2C or VPG, from the name this script gives a run's model (``{env}_{algo}_seed{seed}.zip``)."""
    return A2C if "_a2c" in os.path.basename(path) else VPG


def probe(args: argparse.Namespace) -> None:
    obs = probe_frames(args.env)
    print("| model | steps | policy entropy (uniform) | greedy action share | features mean | features max | logit range |")
    print("|---|---|---|---|---|---|---|")
    for path in args.probe:
        model = saved_model_class(path).load(path, device="cpu")
        row, uniform = probe_policy(model, obs), np.log(model.action_space.n)
        print(
            f"| {os.path.basename(path)} | {model.num_timesteps} | {row['entropy']:.3f} ({uniform:.2f}) | {row['greedy_share']:.2f} | "
            f"{row['features_mean']:.3f} | {row['features_max']:.2f} | {row['logit_range']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["vpg", "vpg_pure", "a2c"], default="vpg")
    parser.add_argument("--env", default="PongNoFrameskip-v4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", type=int, default=10_000_000, help="steps of this session (the wall-clock budget may end it first)"
    )
    parser.add_argument("--seconds", type=float, default=float("inf"), help="wall-clock budget")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-envs", type=int, default=None, help="default: the entry's (16)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out, if there is one")
    parser.add_argument("--out", default="benchmarks/results/pong")
    parser.add_argument("--set", nargs="*", default=[], help="settings over the entry's, e.g. n_steps=128")
    parser.add_argument("--tag", default="", help="suffix of the run's name (to tell apart --set variants)")
    parser.add_argument("--plot", action="store_true", help="plot the CSVs in --out instead of training")
    parser.add_argument("--window", type=int, default=10, help="episodes in the rolling mean")
    parser.add_argument("--probe", nargs="+", default=None, metavar="ZIP", help="check saved models for collapse")
    args = parser.parse_args()
    if args.probe:
        probe(args)
    else:
        plot(args) if args.plot else train(args)


if __name__ == "__main__":
    main()

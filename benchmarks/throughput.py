"""
Training throughput of VPG against SB3's A2C and PPO, and how close each comes to the limits.

For each case every contender trains on the same VecEnv (same env count, same seed), in rounds
interleaved A B C ... A B C ..., after one warm-up rollout each; the table gives the median steps/s over
the rounds and its ratio to A2C. Two limits are measured in the same rounds:

- ``collect``: SB3's rollout collection with the same policy and no update (an A2C whose ``train`` does
  nothing, with VPG's ``n_steps``), the bound for an algorithm that updates once per rollout;
- ``random``: the VecEnv alone, stepped with random actions.

CPU: the CPU time of each round (the process's threads and its ``SubprocVecEnv`` workers, through ``psutil``) per env
step, and the steps/s that this CPU time allows on all the machine's cores (``CPU bound``): a contender at its
CPU bound has no idle core left, so no engine or overlap can make it faster on this machine.

Peak memory: process RSS (CPU) and ``torch.cuda.max_memory_allocated`` per contender (GPU), and with
``--update-memory`` the GPU memory of one VPG update on a ``16 x 1024`` CnnPolicy rollout for several
``batch_size`` values.

``--updates N`` times each VPG contender's update alone (``train()`` on its last rollout, N times in turns), the
part of a training step that the env's speed and other jobs on the machine blur least. ``--profile`` adds where each
contender's time goes, per env step (cProfile over one more round): the env step,
the observation's copy to the device, the policy's forward pass, the copies back to the host (which wait for
the device), the buffer, the callbacks and the update.

Engines. A contender named ``ALGO@envpool`` trains on EnvPool's C++ Atari engine
(``sb3_vpg.common.envpool_env``) instead of the case's default (``SubprocVecEnv`` on Pong), with the same frames.
The case ``pong-source`` is the source's experiment: the ``PongNoFrameskip-v4`` entry of ``vpg.yml`` (difference
frames, UP/DOWN, one hidden layer of 200), VPG with the entry's settings, the others with the same network.

More contenders. VPG as it was before three changes: ``vpg_multinomial`` with SB3's sampler for Discrete actions
(``torch.multinomial``, ``categorical_sampler="multinomial"``) instead of its Gumbel-max sampler;
``vpg_fresh_buffer`` with new observation arrays for every rollout, as SB3's buffers allocate them, instead of
the first rollout's arrays kept; ``vpg_serial`` with SB3's collection loop and ``add()``, which copy each
observation into the buffer after the env step instead of during it; and ``vpg_before`` with all three undone.
And ``vpg_graph``, VPG whose rollout forward pass is replayed as one CUDA graph
(``policy_kwargs=dict(cuda_graph=True)``; the same as ``vpg`` on CPU). On ``pong-source``, ``vpg_dense`` is the
entry's VPG with a dense first layer instead of one that sums only the non-zero pixels of the difference frames
(``policy_kwargs=dict(sparse_input=True)``), and ``vpg_sparse_before`` the entry's VPG as it was before two changes
to that layer: SB3's float copy of every batch of int8 frames before the layer, and a training batch's weight
columns read where they lie instead of from one contiguous copy of the weight; A2C gets the entry's network, dense.
``vpg_minibatch`` is VPG with ``batch_size=128``: the same update, its gradients accumulated over minibatches of 128
samples instead of one pass over the whole rollout. Every VPG contender with Discrete actions has its sampler
checked against the policy's probabilities before the timed rounds.

Usage::

    python benchmarks/throughput.py --case cartpole            # CPU, 8 DummyVecEnv, one torch thread
    python benchmarks/throughput.py --case pong --device cuda  # GPU, 16 SubprocVecEnv
    python benchmarks/throughput.py --case pong --device cuda --algos collect,vpg,vpg_multinomial,vpg_graph --profile
    python benchmarks/throughput.py --case pong-source --algos random,random@envpool,a2c,vpg,vpg@envpool  # EnvPool
    python benchmarks/throughput.py --case pong-source --algos vpg_dense,vpg_dense@envpool,vpg,vpg@envpool
    python benchmarks/throughput.py --case pong-source --algos vpg_sparse_before@envpool,vpg@envpool --updates 10
    python benchmarks/throughput.py --case pong --n-envs 8 --algos a2c,vpg,vpg@envpool,vpg_minibatch,vpg_minibatch@envpool
"""

import argparse
import cProfile
import csv
import inspect
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecFrameStack

from sb3_vpg import VPG
from sb3_vpg.common.buffers import VecRecordEnvSteps, VPGRolloutBuffer
from sb3_vpg.common.envpool_env import make_envpool_atari_env
from sb3_vpg.common.sparse_input import SparseInputLinear
from sb3_vpg.hyperparams import load_hyperparams
from sb3_vpg.hyperparams import make_env as make_entry_env

PONG_SOURCE_ENTRY = "PongNoFrameskip-v4"


class _CollectOnly(A2C):
    """SB3's rollout collection with A2C's policy and no update: the bound for one update per rollout."""

    def train(self) -> None:
        pass


class _SerialBuffer(VPGRolloutBuffer):
    """VPG's buffer filled by SB3's ``add()``: the whole step, observation included, written after the env step."""

    add = RolloutBuffer.add  # the function itself, so that the profile finds it where it finds VPG's add()


class _SerialVPG(VPG):
    """VPG as before the observations were copied into the buffer during the env step: SB3's collection loop."""

    def collect_rollouts(self, env: VecEnv, callback: Any, rollout_buffer: Any, n_rollout_steps: int) -> bool:
        # SB3's loop with only the recorder VPG's returns need (no observation staging)
        env = VecRecordEnvSteps(env, rollout_buffer, self.num_timesteps)
        return OnPolicyAlgorithm.collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)


class _FreshObservationsBuffer(VPGRolloutBuffer):
    """VPG's buffer allocating new observation arrays for every rollout, as SB3's does (and VPG's did before)."""

    def reset(self) -> None:
        self._observation_storage = None
        super().reset()


class _BeforeBuffer(_FreshObservationsBuffer, _SerialBuffer):
    """Both buffer changes undone: new observation arrays every rollout, filled by SB3's ``add()``."""


def check_sampler(model: VPG, draws: int = 1000) -> str:
    """
    Compare the sampler with the policy on the model's current observations: the log-probability it reports for
    its actions against the policy's own, and how often it draws each action over ``draws`` steps against the
    mean of the envs' probabilities (its expectation), within 5 standard errors. Raises an AssertionError when
    they disagree; returns the largest differences.
    """
    obs = obs_as_tensor(model.get_env().reset(), model.device)
    n_actions = int(model.action_space.n)
    counts = th.zeros(n_actions, device=model.device)
    worst_log_prob = 0.0
    with th.no_grad():
        probs = model.policy.get_distribution(obs).distribution.probs.mean(0)
        for _ in range(draws):
            actions, _, log_prob = model.policy(obs)
            expected = model.policy.get_distribution(obs).log_prob(actions)
            worst_log_prob = max(worst_log_prob, float((log_prob - expected).abs().max()))
            counts += th.nn.functional.one_hot(actions, n_actions).sum(0)
    worst_frequency = float((counts / counts.sum() - probs).abs().max())
    tolerance = 5 * (0.25 / float(counts.sum())) ** 0.5
    assert worst_log_prob < 1e-5, f"the sampler's log-probabilities differ from the policy's by {worst_log_prob}"
    assert worst_frequency < tolerance, f"the sampler's action frequencies differ from the probabilities by {worst_frequency}"
    return f"max |log_prob - policy's| = {worst_log_prob:.1e}, max |frequency - probability| = {worst_frequency:.4f}"


#: The VecEnv engine of each case when a contender names none (``vpg`` = ``vpg@subproc`` on Pong).
DEFAULT_ENGINE = {"cartpole": "dummy", "pong": "subproc", "pong-source": "subproc"}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process's threads and of its live child processes (the env workers)."""
    import psutil

    process = psutil.Process()
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:  # a worker that exited during the round
            continue
        total += times.user + times.system
    return total


def make_env(case: str, n_envs: int, seed: int, engine: str) -> VecEnv:
    """
    The case's VecEnv on ``engine``: ``cartpole`` (DummyVecEnv); ``pong``, SB3's Atari stack (84x84 grey, 4 stacked)
    on ``subproc`` (SB3's ``make_atari_env`` + ``VecFrameStack``) or ``envpool`` (the same frames from EnvPool);
    ``pong-source``, the source's experiment (the ``PongNoFrameskip-v4`` entry: difference frames, UP/DOWN).
    """
    if case == "cartpole":
        return make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    if case == "pong-source":
        run, _ = load_hyperparams(PONG_SOURCE_ENTRY)
        return make_entry_env("PongNoFrameskip-v4", run, n_envs, seed, engine)
    if engine == "envpool":
        return make_envpool_atari_env("PongNoFrameskip-v4", n_envs=n_envs, seed=seed, frame_stack=4)
    import ale_py  # noqa: F401  (registers the Atari ids)

    # fork: the workers inherit the Atari ids that importing ale_py registered
    env = make_atari_env(
        "PongNoFrameskip-v4", n_envs=n_envs, seed=seed, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"}
    )
    return VecFrameStack(env, n_stack=4)


def build(name: str, case: str, env: VecEnv, seed: int, device: str) -> Any:  # noqa: C901 (one branch per contender)
    """Each algorithm with its defaults; on Pong, PPO with rl_zoo3's Atari settings (its defaults need minutes per update)."""
    policy = "CnnPolicy" if case == "pong" else "MlpPolicy"
    kwargs: dict[str, Any] = {"seed": seed, "device": device, "verbose": 0}
    if case == "pong-source":  # the entry's VPG; the others with the same network
        _, entry = load_hyperparams(PONG_SOURCE_ENTRY)
        if name == "vpg":
            return VPG(policy, env, **entry, **kwargs)
        if name == "vpg_sparse_before":  # SB3's float copy of every batch, every batch read from the weight in place
            model = VPG(policy, env, **entry, **kwargs)
            model.policy.integer_features = False
            for layer in model.policy.modules():
                if isinstance(layer, SparseInputLinear):
                    layer.contiguous_from = float("inf")
            return model
        network = {key: value for key, value in entry["policy_kwargs"].items() if key != "sparse_input"}  # dense
        if name == "vpg_dense":
            return VPG(policy, env, **{**entry, "policy_kwargs": network}, **kwargs)
        kwargs["policy_kwargs"] = network
    if name == "vpg":
        return VPG(policy, env, **kwargs)
    if name == "vpg_minibatch":
        return VPG(policy, env, batch_size=128, **kwargs)
    if name == "vpg_baseline":
        return VPG(policy, env, use_baseline=True, **kwargs)
    if name == "vpg_multinomial":
        return VPG(policy, env, policy_kwargs={"categorical_sampler": "multinomial"}, **kwargs)
    if name == "vpg_graph":
        return VPG(policy, env, policy_kwargs={"cuda_graph": True}, **kwargs)
    if name == "vpg_fresh_buffer":
        return VPG(policy, env, rollout_buffer_class=_FreshObservationsBuffer, **kwargs)
    if name == "vpg_serial":
        return _SerialVPG(policy, env, rollout_buffer_class=_SerialBuffer, **kwargs)
    if name == "vpg_before":  # all three undone: VPG as the third H200 run measured it
        sampler = {"categorical_sampler": "multinomial"}
        return _SerialVPG(policy, env, policy_kwargs=sampler, rollout_buffer_class=_BeforeBuffer, **kwargs)
    if name == "a2c":
        return A2C(policy, env, **kwargs)
    if name == "ppo":
        if case == "pong":
            kwargs.update(n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4, clip_range=0.1, ent_coef=0.01)
        return PPO(policy, env, **kwargs)
    if name == "collect":
        vpg_n_steps = inspect.signature(VPG).parameters["n_steps"].default
        return _CollectOnly(policy, env, n_steps=vpg_n_steps, **kwargs)
    raise ValueError(f"Unknown contender {name!r}")


class RandomActions:
    """Steps the VecEnv with random actions: the env's own speed."""

    def __init__(self, env: VecEnv) -> None:
        self.env = env
        self.num_timesteps = 0

    def learn(self, total_timesteps: int, **_: Any) -> "RandomActions":
        self.env.reset()
        n_envs = self.env.num_envs
        done_steps = 0
        while done_steps < total_timesteps:
            self.env.step(np.array([self.env.action_space.sample() for _ in range(n_envs)]))
            done_steps += n_envs
        self.num_timesteps = done_steps
        return self


#: Where a training step's time goes (``--profile``): each part is the cumulative time of a function (file name
#: ending, function name) spent in calls from the named caller; the largest where several match. The parts are
#: disjoint: the collection loop's direct calls, and the update.
PROFILE_PARTS = {
    "env step": [("base_vec_env.py", "step", "collect_rollouts"), ("base_vec_env.py", "step", "learn")],
    "obs to device": [("common/utils.py", "obs_as_tensor", "collect_rollouts")],
    "policy forward": [("module.py", "_wrapped_call_impl", "collect_rollouts")],
    "actions to host": [("~", "<method 'cpu' of 'torch._C.TensorBase' objects>", "collect_rollouts")],
    "buffer add": [("buffers.py", "add", "collect_rollouts")],
    "callbacks": [("callbacks.py", "on_step", "collect_rollouts")],
    "update": [("", "train", "learn")],
}
#: Parts inside another (not added to the sum): VPG's copy of each observation into the buffer, made while the envs
#: step (between ``step_async`` and ``step_wait``, so it overlaps a SubprocVecEnv's workers).
PROFILE_WITHIN = {"obs to buffer (in env step)": [("buffers.py", "stage_observation", "step_async")]}


def profile_round(model: Any, steps: int) -> dict[str, float]:
    """One more round of ``model`` under cProfile: the time of each of :data:`PROFILE_PARTS`, in seconds."""
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    model.learn(steps, reset_num_timesteps=True)
    profiler.disable()
    seconds = {"total": time.perf_counter() - start}
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for part, functions in {**PROFILE_PARTS, **PROFILE_WITHIN}.items():
        seconds[part] = 0.0
        for (file, _, name), (_, _, _, _, callers) in stats.items():
            for suffix, function, caller in functions:
                if file.endswith(suffix) and name == function:
                    from_caller = sum(timing[3] for key, timing in callers.items() if key[2] == caller)
                    seconds[part] = max(seconds[part], from_caller)
    seconds["other"] = seconds["total"] - sum(seconds[part] for part in PROFILE_PARTS)
    return seconds


class _PeakMemoryDuringUpdate(BaseCallback):
    """Resets CUDA's peak-memory counter at the end of each rollout, so the peak read after learn() is the update's."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        th.cuda.synchronize()
        th.cuda.reset_peak_memory_stats()


def update_memory(case: str, seed: int, device: str, batch_sizes: list[int | None]) -> list[dict[str, Any]]:
    """GPU memory of one VPG update on a 16 envs x 1024 steps rollout, for each batch_size."""
    rows = []
    env = make_env(case, 16, seed)
    for batch_size in batch_sizes:
        model = VPG(
            "CnnPolicy" if case == "pong" else "MlpPolicy", env, n_steps=1024, batch_size=batch_size, seed=seed, device=device
        )
        th.cuda.synchronize()
        th.cuda.reset_peak_memory_stats()
        model.learn(1024 * 16, callback=_PeakMemoryDuringUpdate())
        th.cuda.synchronize()
        rows.append(
            {
                "batch_size": batch_size,
                "rollout_samples": 1024 * 16,
                "update_peak_MiB": th.cuda.max_memory_allocated() / 2**20,
            }
        )
        print(rows[-1], flush=True)
        del model
        th.cuda.empty_cache()
    env.close()
    return rows


def batch_copy(device: str, n_envs: int = 16, n_steps: int = 1024, repeats: int = 5) -> list[dict[str, Any]]:
    """
    Seconds to turn a Pong-shaped rollout (``n_envs x n_steps`` stacks of 4 uint8 84x84 frames) into the one
    batch of a ``batch_size=None`` update: SB3's own ``RolloutBuffer._get_samples`` on the same arrays (a gather,
    then a copy in ``to_torch``), against VPG's ``get()``, with every sample used (VPG: no copy on CPU) and with the
    last 10% of each env's steps unused (VPG: the gather alone on CPU, no second copy).
    """
    obs_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buffer = VPGRolloutBuffer(n_steps, obs_space, spaces.Discrete(6), device=device, n_envs=n_envs)
    frames = np.random.default_rng(0).integers(0, 256, (n_envs, 4, 84, 84), dtype=np.uint8)
    for step in range(n_steps):
        buffer.record_step(np.zeros(n_envs), np.full(n_envs, step == n_steps - 1))
        buffer.add(frames, np.zeros((n_envs, 1)), np.zeros(n_envs), np.ones(n_envs), th.zeros(n_envs), th.zeros(n_envs))
    buffer.compute_returns_and_advantage(th.zeros(n_envs), np.ones(n_envs))
    next(buffer.get())  # flatten once
    sb3 = RolloutBuffer(n_steps, obs_space, spaces.Discrete(6), device=device, n_envs=n_envs)
    for name in ("observations", "actions", "values", "log_probs", "advantages", "returns"):
        setattr(sb3, name, getattr(buffer, name))  # the same flattened arrays, read by SB3's code
    rows = []
    for used in (1.0, 0.9):
        buffer.has_return[:] = False
        buffer.has_return[: int(used * n_steps) * n_envs] = True  # step-major: the last steps of every env unused
        indices = np.flatnonzero(buffer.has_return)
        for name in ("sb3_gather", "vpg_get"):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                batch = sb3._get_samples(indices) if name == "sb3_gather" else next(buffer.get())
                if device.startswith("cuda"):
                    th.cuda.synchronize()
                times.append(time.perf_counter() - start)
                del batch
            rows.append({"used": used, "method": name, "seconds": statistics.median(times)})
            print(rows[-1], flush=True)
    return rows


def print_batch_copy(device: str) -> None:
    """``--batch-copy``: :func:`batch_copy`'s table."""
    print("| used samples | SB3 _get_samples, s | VPG get(), s |\n|---|---|---|")
    rows = batch_copy(device)
    for sb3, vpg in zip(rows[::2], rows[1::2], strict=True):
        print(f"| {sb3['used']:.0%} | {sb3['seconds']:.3f} | {vpg['seconds']:.3f} |")


def time_rounds(models: dict[str, Any], rounds: int, steps: int, cuda: bool) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Train every contender ``steps`` steps per round, in turns: one row per (round, contender), and GPU peaks."""
    peak_gpu: dict[str, float] = {}
    rows = []
    for round_ in range(rounds):
        for name, model in models.items():
            if cuda:
                th.cuda.synchronize()
                th.cuda.reset_peak_memory_stats()
            start, start_cpu = time.perf_counter(), cpu_seconds()
            model.learn(steps, reset_num_timesteps=True)
            if cuda:
                th.cuda.synchronize()
                peak_gpu[name] = th.cuda.max_memory_allocated() / 2**20
            elapsed = time.perf_counter() - start
            cpu_us = 1e6 * (cpu_seconds() - start_cpu) / model.num_timesteps
            rate = model.num_timesteps / elapsed
            rows.append(
                {
                    "round": round_,
                    "algo": name,
                    "steps": model.num_timesteps,
                    "seconds": elapsed,
                    "steps_per_s": rate,
                    "cpu_us_per_step": cpu_us,
                }
            )
            print(
                f"round {round_} {name:>12}: {model.num_timesteps} steps in {elapsed:6.2f} s = {rate:8.0f} steps/s", flush=True
            )
    return rows, peak_gpu


def print_profile(models: dict[str, Any], steps: int, n_envs: int) -> None:
    """One more round of each contender under cProfile: where a training step's time goes (``PROFILE_PARTS``)."""
    columns = [*PROFILE_PARTS, "other", *PROFILE_WITHIN]
    print("\n| algo | steps/s under cProfile | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    print("| (microseconds per env step of all envs) |" + " |" * (len(columns) + 1))
    for name, model in models.items():
        seconds = profile_round(model, steps)
        per_step = 1e6 * n_envs / model.num_timesteps
        cells = [f"{seconds[part] * per_step:.0f}" for part in columns]
        print(f"| {name} | {model.num_timesteps / seconds['total']:.0f} | " + " | ".join(cells) + " |", flush=True)


def print_updates(models: dict[str, Any], repeats: int) -> None:
    """
    Each VPG contender's update alone: ``train()`` on the rollout of its last round, ``repeats`` times in turns, so
    that neither the env's speed nor other jobs on a busy machine blur a change to the update.
    """
    updaters = {name: model for name, model in models.items() if isinstance(model, VPG)}
    times: dict[str, list[float]] = {name: [] for name in updaters}
    for _ in range(repeats):
        for name, model in updaters.items():
            start = time.perf_counter()
            model.train()
            times[name].append(time.perf_counter() - start)
    first = statistics.median(next(iter(times.values()), [1.0]))
    print(f"\n| algo | ms per update (median of {repeats}) | min-max | samples per update | vs {next(iter(times), '')} |")
    print("|---|---|---|---|---|")
    for name, seconds in times.items():
        samples = updaters[name].n_steps * updaters[name].n_envs
        cells = [f"{1000 * statistics.median(seconds):.0f}", f"{1000 * min(seconds):.0f}-{1000 * max(seconds):.0f}"]
        print(f"| {name} | {' | '.join(cells)} | {samples} | {statistics.median(seconds) / first:.2f}x |", flush=True)


def print_rss(args: argparse.Namespace, names: list[str], steps: int, n_envs: int) -> None:
    """Each contender alone in a subprocess for one round: its peak RSS."""
    print("\n| algo | peak RSS MiB (alone in a process, one round) |\n|---|---|")
    for name in names:
        command = [sys.executable, __file__, "--case", args.case, "--algos", name, "--rounds", "1", "--steps", str(steps)]
        command += ["--n-envs", str(n_envs), "--device", args.device, "--seed", str(args.seed)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rss = re.search(r"Peak process RSS[^:]*: (\d+)", output).group(1)
        print(f"| {name} | {rss} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["cartpole", "pong", "pong-source"], default="cartpole")
    parser.add_argument(
        "--algos",
        default="random,collect,a2c,ppo,vpg,vpg_baseline",
        help="comma-separated contenders; ALGO@ENGINE runs on another VecEnv engine (vpg@envpool, random@envpool)",
    )
    parser.add_argument("--n-envs", type=int, default=None, help="default: 8 (cartpole), 16 (pong)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed round (rounded up to whole rollouts)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest for small MLPs on CPU)")
    parser.add_argument("--update-memory", action="store_true", help="also measure one VPG update's GPU memory (needs CUDA)")
    parser.add_argument("--batch-copy", action="store_true", help="only time the rollout-to-batch copy (see batch_copy)")
    parser.add_argument("--rss", action="store_true", help="also run each contender alone in a subprocess for its peak RSS")
    parser.add_argument("--profile", action="store_true", help="also profile one more round of each contender (cProfile)")
    parser.add_argument("--updates", type=int, default=0, help="also time N updates of each VPG contender alone, in turns")
    parser.add_argument("--out", default=None, help="CSV file for the per-round results")
    args = parser.parse_args()

    th.set_num_threads(args.threads)
    if args.batch_copy:
        print_batch_copy(args.device)
        return
    n_envs = args.n_envs or {"cartpole": 8, "pong": 16, "pong-source": 8}[args.case]
    steps = args.steps or {"cartpole": 50_000, "pong": 16_384, "pong-source": 32_768}[args.case]
    names = args.algos.split(",")
    # A contender "algo@engine" trains on that VecEnv engine; each engine's env is shared by its contenders
    engines = {name: name.partition("@")[2] or DEFAULT_ENGINE[args.case] for name in names}
    envs = {engine: make_env(args.case, n_envs, args.seed, engine) for engine in dict.fromkeys(engines.values())}
    models = {}
    for name in names:
        algo, env = name.partition("@")[0], envs[engines[name]]
        models[name] = RandomActions(env) if algo == "random" else build(algo, args.case, env, args.seed, args.device)
    cuda = args.device.startswith("cuda") and th.cuda.is_available()

    print(f"case={args.case} n_envs={n_envs} device={args.device} torch threads={th.get_num_threads()}", flush=True)
    print("engines: " + ", ".join(f"{name} on {engine}" for name, engine in engines.items()), flush=True)
    for name, model in models.items():  # warm-up: one rollout each (imports, CUDA kernels, env reset)
        model.learn(1, reset_num_timesteps=True)
        if isinstance(model, VPG) and isinstance(model.action_space, spaces.Discrete):
            print(f"{name} sampler check: {check_sampler(model)}", flush=True)
    rows, peak_gpu = time_rounds(models, args.rounds, steps, cuda)
    results = {name: [row["steps_per_s"] for row in rows if row["algo"] == name] for name in names}
    cpu_per_step = {name: [row["cpu_us_per_step"] for row in rows if row["algo"] == name] for name in names}
    median = {name: statistics.median(rates) for name, rates in results.items()}
    reference = median.get("a2c")
    # "vs random actions": the random contender on the same engine
    random_name = {engines[name]: name for name in names if name.partition("@")[0] == "random"}
    bound = median.get("collect")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {th.__version__}", end="")
    print(f", {th.cuda.get_device_name()}" if cuda else "")
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nPeak process RSS (all contenders in one process): {peak_rss_mib:.0f} MiB\n")
    print(
        "| algo | steps/s (median) | min-max | vs A2C | vs collection bound | vs random actions | CPU us/step | CPU bound |"
        + (" GPU peak MiB |" if cuda else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|" if cuda else ""))
    for name in names:
        rates = results[name]
        cells = [
            name,
            f"{median[name]:.0f}",
            f"{min(rates):.0f}-{max(rates):.0f}",
            f"{median[name] / reference:.2f}x" if reference else "",
            f"{median[name] / bound:.2f}x" if bound else "",
            f"{median[name] / median[random_name[engines[name]]]:.2f}x" if engines[name] in random_name else "",
            f"{statistics.median(cpu_per_step[name]):.0f}",
            f"{(os.cpu_count() or 1) * 1e6 / statistics.median(cpu_per_step[name]):.0f}",
        ]
        if cuda:
            cells.append(f"{peak_gpu.get(name, 0):.0f}")
        print("| " + " | ".join(cells) + " |")
    if args.updates:
        print_updates(models, args.updates)
    if args.profile:
        print_profile(models, steps, n_envs)
    if args.out:
        with open(args.out, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    for env in envs.values():
        env.close()
    if args.rss:
        print_rss(args, names, steps, n_envs)
    if args.update_memory:
        if not cuda:
            sys.exit("--update-memory needs --device cuda")
        print("\n| batch_size | rollout samples | update peak MiB |\n|---|---|---|")
        for row in update_memory(args.case, args.seed, args.device, [None, 1024, 256]):
            print(f"| {row['batch_size']} | {row['rollout_samples']} | {row['update_peak_MiB']:.0f} |")


if __name__ == "__main__":
    main()

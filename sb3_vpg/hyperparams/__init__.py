"""
The packaged hyperparameters, ``vpg.yml``, in rl_zoo3's format: one entry per env id with ``n_envs``,
``n_timesteps``, ``policy`` and constructor arguments. rl_zoo3 reads the file itself; :func:`load_hyperparams`
gives the same settings to plain scripts.
"""

import importlib.resources
from typing import Any

import torch as th
import yaml
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.utils import LinearSchedule

#: Keys of an entry that describe the run rather than the algorithm: rl_zoo3 applies the env settings
#: (``normalize``, ``frame_stack``, ``env_wrapper``, ...) itself; a plain script has to apply them.
RUN_KEYS = (
    "n_envs",
    "n_timesteps",
    "policy",
    "normalize",
    "frame_stack",
    "env_wrapper",
    "vec_env_wrapper",
    "env_kwargs",
    "monitor_kwargs",
    "callback",
)

#: The names a ``policy_kwargs`` string of an entry may use; rl_zoo3 evaluates the same strings with its own imports.
POLICY_KWARGS_NAMES = {"dict": dict, "nn": th.nn, "RMSpropTFLike": RMSpropTFLike}

#: Pure REINFORCE on Atari, as the source tutorial trains Pong: no baseline, so each return must end within the
#: rollout (``reset_on_reward``: each point of Pong ends one), rollouts long enough to hold whole rallies, normalized
#: returns and Adam. Applied on top of the ``atari`` entry by ``examples/pong.py --pure`` and ``atari_curve.py
#: --algo vpg_pure``; not measured to learn Pong (benchmarks/RESULTS.md).
ATARI_PURE: dict[str, Any] = {
    "use_baseline": False,
    "incomplete_episodes": None,
    "reset_on_reward": True,
    "normalize_returns": True,
    "n_steps": 256,
    "batch_size": 1024,
    "learning_rate": 2.5e-4,
    "policy_kwargs": None,
}


def load_hyperparams(env_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Settings of ``env_id`` in the packaged ``vpg.yml``.

    rl_zoo3's ``lin_<value>`` learning rates become a linear decay from ``value`` to 0, and ``policy_kwargs`` strings
    are evaluated (with :data:`POLICY_KWARGS_NAMES` only), as in the zoo.

    :param env_id: the entry's key, e.g. ``"CartPole-v1"``
    :return: ``(run, kwargs)``: ``n_envs``, ``n_timesteps``, ``policy`` and the entry's other :data:`RUN_KEYS`,
        then the ``VPG`` constructor arguments
    """
    text = (importlib.resources.files("sb3_vpg") / "hyperparams" / "vpg.yml").read_text()
    entries = yaml.safe_load(text)
    if env_id not in entries:
        raise KeyError(f"vpg.yml has no entry for {env_id!r}; it has {sorted(entries)}")
    kwargs = dict(entries[env_id])
    run = {key: kwargs.pop(key) for key in RUN_KEYS if key in kwargs}
    run["n_timesteps"] = int(run.get("n_timesteps", 1_000_000))
    learning_rate = kwargs.get("learning_rate")
    if isinstance(learning_rate, str) and learning_rate.startswith("lin_"):
        kwargs["learning_rate"] = LinearSchedule(float(learning_rate[len("lin_") :]), 0.0, 1.0)
    if isinstance(kwargs.get("policy_kwargs"), str):
        try:
            kwargs["policy_kwargs"] = eval(kwargs["policy_kwargs"], {"__builtins__": {}, **POLICY_KWARGS_NAMES})
        except NameError as error:
            raise ValueError(
                f"policy_kwargs of the {env_id!r} entry may only use {sorted(POLICY_KWARGS_NAMES)}: {error}"
            ) from error
    return run, kwargs

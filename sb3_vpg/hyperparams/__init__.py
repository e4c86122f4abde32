"""
The packaged hyperparameters, ``vpg.yml``, in rl_zoo3's format: one entry per env id with ``n_envs``,
``n_timesteps``, ``policy`` and constructor arguments. rl_zoo3 reads the file itself; :func:`load_hyperparams`
gives the same settings to plain scripts.
"""

import importlib.resources
from typing import Any

import yaml
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


def load_hyperparams(env_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Settings of ``env_id`` in the packaged ``vpg.yml``.

    rl_zoo3's ``lin_<value>`` learning rates become a linear decay from ``value`` to 0, as in the zoo.

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
    return run, kwargs

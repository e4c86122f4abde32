"""
The packaged hyperparameters, ``vpg.yml``, in rl_zoo3's format: one entry per env id with ``n_envs``,
``n_timesteps``, ``policy`` and constructor arguments. rl_zoo3 reads the file itself; :func:`load_hyperparams`
gives the same settings to plain scripts.
"""

import functools
import importlib
import importlib.resources
import types
from typing import Any

import torch as th
import yaml
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.utils import LinearSchedule

from sb3_vpg.common.sparse_input import SparseInputExtractor

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

#: The names a ``policy_kwargs`` string of an entry may use; rl_zoo3 evaluates the same strings with its own imports,
#: to which :func:`sb3_vpg.zoo.register` adds the missing ones. Read-only: ``eval`` with a plain dict as globals would
#: add ``__builtins__`` to it.
POLICY_KWARGS_NAMES = types.MappingProxyType(
    {
        "dict": dict,
        "th": th,
        "nn": th.nn,
        "RMSpropTFLike": RMSpropTFLike,
        "SparseInputExtractor": SparseInputExtractor,
    }
)


def load_hyperparams(env_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Settings of ``env_id`` in the packaged ``vpg.yml``, its constructor arguments read as the zoo reads them
    (:func:`resolve_algo_kwargs`).

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
    return run, resolve_algo_kwargs(kwargs, f"the {env_id!r} entry")


def resolve_algo_kwargs(kwargs: dict[str, Any], where: str = "the settings") -> dict[str, Any]:
    """
    Constructor arguments written as rl_zoo3 writes them, as ``VPG`` takes them: a ``lin_<value>`` learning rate
    becomes a linear decay from ``value`` to 0, a ``policy_kwargs`` string is evaluated with
    :data:`POLICY_KWARGS_NAMES` only. Other values are returned as they are.

    :param kwargs: the arguments (not modified)
    :param where: what they come from, for the error message
    :return: a new dict
    """
    kwargs = dict(kwargs)
    learning_rate = kwargs.get("learning_rate")
    if isinstance(learning_rate, str) and learning_rate.startswith("lin_"):
        try:
            kwargs["learning_rate"] = LinearSchedule(float(learning_rate[len("lin_") :]), 0.0, 1.0)
        except ValueError as error:
            raise ValueError(f"learning_rate of {where} is not lin_<number>: {learning_rate!r}") from error
    if isinstance(kwargs.get("policy_kwargs"), str):
        try:
            kwargs["policy_kwargs"] = eval(kwargs["policy_kwargs"], {**POLICY_KWARGS_NAMES, "__builtins__": {}})
        except NameError as error:
            raise ValueError(f"policy_kwargs of {where} may only use {sorted(POLICY_KWARGS_NAMES)}: {error}") from error
        except SyntaxError as error:
            raise ValueError(f"policy_kwargs of {where} is not a Python expression: {error}") from error
    if kwargs.get("policy_kwargs") is not None and not isinstance(kwargs["policy_kwargs"], dict):
        raise TypeError(f"policy_kwargs of {where} must give a dict, got {kwargs['policy_kwargs']!r}")
    return kwargs


def resolve_wrappers(spec: Any) -> list[tuple[type, dict[str, Any]]]:
    """
    The wrappers of an entry's ``env_wrapper`` (or ``vec_env_wrapper``) in rl_zoo3's format, a dotted class path
    or a list of paths and ``{path: kwargs}`` dicts, as ``(class, kwargs)`` in the order they wrap the env.
    """
    if spec is None:
        return []
    wrappers = []
    for item in spec if isinstance(spec, list) else [spec]:
        path, kwargs = next(iter(item.items())) if isinstance(item, dict) else (item, {})
        module_name, _, class_name = path.rpartition(".")
        try:
            wrappers.append((getattr(importlib.import_module(module_name), class_name), dict(kwargs or {})))
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(f"env_wrapper {path!r} is not an importable class: {error}") from error
    return wrappers


def make_env(env_id: str, run: dict[str, Any], n_envs: int | None = None, seed: int = 0, vec_env: str = "dummy") -> Any:
    """
    The training VecEnv of an entry, built as rl_zoo3 builds it: ``env_wrapper``s around each env, ``frame_stack``,
    then ``vec_env_wrapper``s (``normalize`` is left to the caller).

    :param env_id: the gymnasium id (Atari ids are registered here)
    :param run: the entry's run settings (the first value of :func:`load_hyperparams`)
    :param n_envs: number of envs (default: the entry's ``n_envs``)
    :param seed: seed of env 0
    :param vec_env: ``"dummy"``, ``"subproc"`` or ``"envpool"`` (EnvPool's C++ Atari engine, see
        :func:`sb3_vpg.common.envpool_env.make_envpool_env`)
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack

    engines = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv, "envpool": None}
    if vec_env not in engines:
        raise ValueError(f"vec_env must be one of {sorted(engines)}, got {vec_env!r}")
    n_envs = n_envs or run.get("n_envs", 1)
    env_wrappers = resolve_wrappers(run.get("env_wrapper"))
    if vec_env == "envpool":
        from sb3_vpg.common.envpool_env import make_envpool_env

        venv = make_envpool_env(env_id, n_envs, seed, env_wrappers, run.get("frame_stack"))
    else:

        def wrap(env: Any) -> Any:
            for wrapper, kwargs in env_wrappers:
                env = wrapper(env, **kwargs)
            return env

        # The env is made through a function that registers ALE's ids first: a SubprocVecEnv worker starts afresh
        venv = make_vec_env(
            functools.partial(_make_registered, env_id), n_envs, seed, wrapper_class=wrap, vec_env_cls=engines[vec_env]
        )
        if run.get("frame_stack"):
            venv = VecFrameStack(venv, run["frame_stack"])
    for wrapper, kwargs in resolve_wrappers(run.get("vec_env_wrapper")):
        venv = wrapper(venv, **kwargs)
    return venv


def _make_registered(env_id: str, **kwargs: Any) -> Any:
    import gymnasium as gym

    register_atari_envs()
    return gym.make(env_id, **kwargs)


def register_atari_envs() -> None:
    """Register ALE's env ids (``PongNoFrameskip-v4``, ``ALE/Pong-v5``) with gymnasium when ale-py is installed."""
    try:
        import ale_py
    except ImportError:
        return
    import gymnasium as gym

    gym.register_envs(ale_py)

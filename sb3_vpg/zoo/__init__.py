"""
VPG in RL Baselines3 Zoo (rl_zoo3 2.9), without a fork of the zoo::

    python -m sb3_vpg.zoo train --algo vpg --env CartPole-v1
    python -m sb3_vpg.zoo enjoy --algo vpg --env CartPole-v1 -f logs/

:func:`register` adds VPG to the dicts rl_zoo3's modules share (``ALGOS``, ``HYPERPARAMS_SAMPLER``,
``HYPERPARAMS_CONVERTER``), in place, so every module that imported them sees it, and the names a ``policy_kwargs``
string may use (``SparseInputExtractor``) to those rl_zoo3 evaluates it among. :func:`main` registers,
then hands over to rl_zoo3's own ``train()``, ``enjoy()`` or ``record_video`` with all of their flags;
``--algo`` defaults to ``vpg`` and, for ``vpg``, ``-conf`` to the packaged ``sb3_vpg/hyperparams/vpg.yml``.
``train --vec-env envpool`` runs an Atari entry on EnvPool (:mod:`sb3_vpg.zoo.envpool_manager`).
``train --storage URL --study-name NAME`` shares one study among workers (:mod:`sb3_vpg.zoo.distributed`).
``train --checkpoint-every STEPS`` checkpoints the run, and the same command resumes it (:mod:`sb3_vpg.zoo.resume`).
"""

import argparse
import builtins
import contextlib
import difflib
import functools
import importlib.resources
import inspect
import io
import runpy
import sys
from pathlib import Path
from typing import Any

import yaml

from sb3_vpg.hyperparams import POLICY_KWARGS_NAMES, RUN_KEYS
from sb3_vpg.vpg import VPG
from sb3_vpg.zoo import distributed, resume
from sb3_vpg.zoo.hyperparams_opt import convert_vpg_params, sample_vpg_params

ALGO = "vpg"

#: The packaged hyperparameter file, the default ``-conf`` of ``--algo vpg``.
PACKAGED_CONF = Path(str(importlib.resources.files("sb3_vpg") / "hyperparams" / "vpg.yml"))

#: Keys of an entry that rl_zoo3 consumes itself (the others go to the ``VPG`` constructor): the same run keys
#: that :func:`sb3_vpg.hyperparams.load_hyperparams` sets apart for plain scripts.
ZOO_KEYS = RUN_KEYS
#: ``VPG`` arguments rl_zoo3 passes from its command-line flags; an entry must not set them.
FLAG_KEYS = {"tensorboard_log": "-tb", "seed": "--seed", "verbose": "--verbose", "device": "--device"}

USAGE = """usage: python -m sb3_vpg.zoo {train,enjoy,record_video} [rl_zoo3 flags]

rl_zoo3's own commands, with VPG registered as --algo vpg (the default algo here).
train without -conf reads the packaged hyperparameters: %s
train --vec-env envpool runs an Atari entry on EnvPool (pip install 'sb3-vpg[envpool]').
Flags: python -m sb3_vpg.zoo train --help (enjoy --help, ...).

""" + "\n\n".join(flags.replace("%", "%%") for flags in (distributed.FLAGS_HELP, resume.FLAGS_HELP))


def register() -> None:
    """Add VPG to rl_zoo3 as ``vpg``: its algorithm, Optuna sampler and trial converter (idempotent)."""
    from rl_zoo3 import exp_manager, hyperparams_opt, utils

    # Extend the shared dicts in place: train.py, enjoy.py, exp_manager.py, ... imported these very objects
    utils.ALGOS[ALGO] = VPG
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO] = sample_vpg_params
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO] = convert_vpg_params
    # rl_zoo3 evaluates policy_kwargs strings among exp_manager's imports: give them the names vpg.yml's may use
    for name, value in POLICY_KWARGS_NAMES.items():
        if not hasattr(exp_manager, name) and not hasattr(builtins, name):
            setattr(exp_manager, name, value)


def _train() -> None:
    from rl_zoo3.train import train

    train()


def _train_with(envpool: bool, storage: distributed.StorageOptions | None, checkpoint_every: int | None) -> None:
    import rl_zoo3.train

    manager = rl_zoo3.train.ExperimentManager
    if envpool:
        from sb3_vpg.zoo.envpool_manager import EnvPoolExperimentManager

        manager = EnvPoolExperimentManager
    if storage is not None:
        manager = distributed.manager_class(manager, storage)
    if checkpoint_every is not None:
        manager = resume.manager_class(manager, checkpoint_every)
    # train() builds the ExperimentManager it imported by name: hand it this run's one
    original = rl_zoo3.train.ExperimentManager
    rl_zoo3.train.ExperimentManager = manager  # type: ignore[misc]
    try:
        rl_zoo3.train.train()
    finally:
        rl_zoo3.train.ExperimentManager = original  # type: ignore[misc]


def _use_envpool(args: list[str]) -> tuple[list[str], bool]:
    """``args`` with ``--vec-env envpool`` replaced by ``--vec-env dummy`` (rl_zoo3 knows only its own choices)."""
    out, envpool = list(args), False
    for index, arg in enumerate(out):
        if arg == "--vec-env" and index + 1 < len(out) and out[index + 1] == "envpool":
            out[index + 1], envpool = "dummy", True
        elif arg == "--vec-env=envpool":
            out[index], envpool = "--vec-env=dummy", True
    return out, envpool


def _enjoy() -> None:
    from rl_zoo3.enjoy import enjoy

    enjoy()


def _record_video() -> None:
    # record_video has no function: its code runs under ``if __name__ == "__main__"``
    runpy.run_module("rl_zoo3.record_video", run_name="__main__", alter_sys=True)


COMMANDS = {"train": _train, "enjoy": _enjoy, "record_video": _record_video}


def main(argv: list[str] | None = None) -> None:
    """
    ``python -m sb3_vpg.zoo COMMAND [rl_zoo3 flags]``: register VPG, then run rl_zoo3's ``COMMAND``.

    :param argv: the arguments after the program name (default: ``sys.argv[1:]``)
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE % PACKAGED_CONF)
        return
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(
            f"sb3_vpg.zoo: unknown command {command!r}, expected one of {', '.join(COMMANDS)}\n\n{USAGE % PACKAGED_CONF}"
        )

    register()
    # Defaults go first: argparse keeps the last value of a flag, so the user's own flags win
    args = ["--algo", ALGO, *args]
    if command == "train":
        known = _parse_train_args(args)
        if known is None or known.algo == ALGO:  # None: rl_zoo3's parser will report the error
            args = ["--conf-file", str(PACKAGED_CONF), *args]
        if known is not None and known.algo == ALGO and not {"-h", "--help"} & set(args):
            check_entry(known.conf_file or str(PACKAGED_CONF), known.env, known.hyperparams)

    run = COMMANDS[command]
    if command == "train":
        args, envpool = _use_envpool(args)
        args, storage = distributed.split_args(args)
        args, checkpoint_every = resume.split_args(args)
        if envpool or storage or checkpoint_every:
            run = functools.partial(_train_with, envpool, storage, checkpoint_every)
    sys.argv = [f"python -m sb3_vpg.zoo {command}", *args]
    run()


def _parse_train_args(args: list[str]) -> argparse.Namespace | None:
    """The few train flags the defaults and the entry check need, as rl_zoo3 parses them (None: unparsable)."""
    from rl_zoo3.utils import StoreDict

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", type=str, default="ppo")
    parser.add_argument("--env", type=str, default="CartPole-v1")
    parser.add_argument("-conf", "--conf-file", type=str, default=None)
    parser.add_argument("-params", "--hyperparams", type=str, nargs="+", action=StoreDict)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            known, _ = parser.parse_known_args(args)
    except (SystemExit, Exception):  # StoreDict evaluates values: rl_zoo3's parser reports the error itself
        return None
    return known


def allowed_keys() -> set[str]:
    """Keys an rl_zoo3 entry for VPG may have: rl_zoo3's own, and ``VPG``'s arguments that no flag sets."""
    parameters = set(inspect.signature(VPG.__init__).parameters) - {"self", "env", "_init_setup_model"}
    return (parameters - set(FLAG_KEYS)) | set(ZOO_KEYS)


def check_entry(conf_file: str, env_id: str, custom_hyperparams: dict[str, Any] | None = None) -> None:
    """
    Exit with a message naming it if the entry rl_zoo3 will read for ``env_id`` (or ``-params``) has a key
    that neither rl_zoo3 nor ``VPG`` takes. Configs that are not yml files, env ids that are not registered
    and files without an entry are left to rl_zoo3, which reports those itself.

    :param conf_file: the hyperparameter file
    :param env_id: the env id (``--env``)
    :param custom_hyperparams: the ``-params`` overrides
    """
    import gymnasium as gym
    from rl_zoo3.exp_manager import ExperimentManager

    if not conf_file.endswith((".yml", ".yaml")) or not Path(conf_file).is_file():
        return
    entries = yaml.safe_load(Path(conf_file).read_text())
    if not isinstance(entries, dict):
        return
    # The same lookup as rl_zoo3's ExperimentManager.read_hyperparameters
    if env_id in entries:
        name = env_id
    elif env_id in gym.envs.registry and ExperimentManager.is_atari(env_id) and "atari" in entries:
        name = "atari"
    elif "default" in entries:
        name = "default"
    else:
        return
    entry = entries[name] if isinstance(entries[name], dict) else {}
    sources = {key: f"the {name!r} entry of {conf_file}" for key in entry}
    sources.update({key: "-params" for key in custom_hyperparams or {}})

    allowed = allowed_keys()
    for key, source in sources.items():
        if key in FLAG_KEYS:
            raise SystemExit(
                f"sb3_vpg.zoo: {source} sets {key!r}, which rl_zoo3 passes to VPG from its {FLAG_KEYS[key]} flag: "
                f"remove {key!r} and use {FLAG_KEYS[key]}"
            )
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            vpg_keys = ", ".join(sorted(allowed - set(ZOO_KEYS)))
            raise SystemExit(
                f"sb3_vpg.zoo: unknown hyperparameter {key!r} in {source}{hint}.\n"
                f"VPG takes: {vpg_keys}.\nrl_zoo3 also reads: {', '.join(ZOO_KEYS)}."
            )


__all__ = ["PACKAGED_CONF", "check_entry", "convert_vpg_params", "main", "register", "sample_vpg_params"]

"""
Model-file checks: a clear error, naming the file, instead of an unpickling failure deep inside SB3.

A Stable-Baselines3 model file is a zip holding ``data`` (JSON whose non-JSON values are cloudpickled, so
loading it can execute code: load only files you trust), ``policy.pth`` and ``policy.optimizer.pth``
(tensors, read with ``weights_only=True``) and ``pytorch_variables.pth``. :func:`check_model_file` reads the
archive and the JSON keys of ``data`` only, never unpickling anything, to refuse a truncated or corrupted
file, or one saved by another algorithm.
"""

import io
import json
import pathlib
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

#: Keys that identify the algorithm that saved a file, checked in order.
_ALGORITHM_KEYS = (
    ("clip_range", "PPO"),
    ("cg_max_steps", "TRPO"),
    ("exploration_fraction", "DQN"),
    ("learning_starts", "an off-policy algorithm (SAC, TD3, DDPG, DQN, ...)"),
    ("normalize_advantage", "A2C"),
)


def resolve_model_path(path: str | pathlib.Path) -> pathlib.Path:
    """The file SB3 would open for ``path``: the path itself, or the path with ``.zip`` appended."""
    path = pathlib.Path(path)
    if path.is_file() or path.suffix == ".zip":
        return path
    with_suffix = path.with_name(path.name + ".zip")
    return with_suffix if with_suffix.is_file() else path


def check_model_file(
    path: str | pathlib.Path | io.BufferedIOBase,
    algorithm: str,
    required_keys: Sequence[str] = (),
    required_entries: Sequence[str] = ("policy.pth",),
) -> None:
    """
    Raise a clear error, naming the file, when ``path`` is not a complete model file saved by ``algorithm``:
    FileNotFoundError for a missing file, ValueError for a file that is not a zip, a truncated or corrupted
    one (CRC mismatch), one without the entries SB3 writes, or one saved by another algorithm (its ``data``
    lacks one of ``required_keys``). Nothing is unpickled.

    :param path: the file, as given to the algorithm's ``load`` (a path, with or without ``.zip``, or a file object)
    :param algorithm: the algorithm's name, for the messages
    :param required_keys: keys of ``data`` that only ``algorithm`` writes (its own constructor arguments)
    :param required_entries: the archive's tensor files that ``algorithm``'s ``load`` reads (``policy.pth``, and
        ``policy.optimizer.pth`` for an on-policy algorithm, which ``load`` restores to resume training)
    """
    if isinstance(path, (str, pathlib.Path)):
        resolved = resolve_model_path(path)
        if not resolved.is_file():
            also = "" if pathlib.Path(path).suffix == ".zip" else f" (nor at {path}.zip)"
            raise FileNotFoundError(f"No model file at {path}{also}")
        name = str(resolved)
        _check_archive(resolved, name, algorithm, required_keys, required_entries)
    else:
        name = getattr(path, "name", repr(path))
        position = path.tell()
        try:
            _check_archive(path, name, algorithm, required_keys, required_entries)
        finally:
            path.seek(position)


def _check_archive(
    file: Any, name: str, algorithm: str, required_keys: Sequence[str], required_entries: Sequence[str]
) -> None:
    try:
        with zipfile.ZipFile(file) as archive:
            bad_member = archive.testzip()  # reads every member and checks its CRC
            if bad_member is not None:
                raise ValueError(f"the CRC of its entry {bad_member!r} does not match: the file is corrupted")
            names = set(archive.namelist())
            missing = {"data", *required_entries} - names
            if missing:
                weights = "policy.pth" in names and "data" in names
                raise ValueError(
                    f"it has no {' or '.join(sorted(missing))} entry: it is truncated (an interrupted save or copy), "
                    "or it is not a model saved by Stable-Baselines3"
                    + (
                        f"; to take its weights alone, use {algorithm}(...).set_parameters(path, exact_match=False)"
                        if weights
                        else ""
                    )
                )
            try:
                data = json.loads(archive.read("data").decode())
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"its 'data' entry is not valid JSON ({error}): the file is corrupted") from error
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise ValueError(
            f"{name} is not a readable model file ({type(error).__name__}: {error}). It may be truncated (an interrupted "
            "save or copy), corrupted, or not a model saved by Stable-Baselines3."
        ) from error
    except ValueError as error:
        raise ValueError(f"{name} is not a readable model file: {error}") from error

    if not isinstance(data, dict) or any(key not in data for key in required_keys):
        keys = data if isinstance(data, dict) else {}
        saved_by = next((algo for key, algo in _ALGORITHM_KEYS if key in keys), "another algorithm")
        raise ValueError(
            f"{name} was saved by {saved_by}, not {algorithm}: it lacks {algorithm}'s settings "
            f"({', '.join(required_keys)}). Load it with the algorithm that saved it; to reuse the weights of a policy "
            f"with the same architecture, use {algorithm}(...).set_parameters(path) or the policy's state dict."
        )

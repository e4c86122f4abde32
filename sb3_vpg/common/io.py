"""
Model files: checks before loading, the random generators' state for exact resumes, and atomic writes.

A Stable-Baselines3 model file is a zip holding ``data`` (JSON whose non-JSON values are cloudpickled, so
loading it can execute code: load only files you trust), ``policy.pth`` and ``policy.optimizer.pth``
(tensors, read with ``weights_only=True``) and ``pytorch_variables.pth``. :func:`check_model_file` reads the
archive and the JSON keys of ``data`` only, never unpickling anything, to refuse a truncated or corrupted
file, or one saved by another algorithm, with an error that names the file.
"""

import base64
import io
import json
import os
import pathlib
import random
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th

#: Keys of ``data`` that every VPG file has and other SB3 algorithms' files do not.
VPG_KEYS = ("use_baseline", "normalize_returns", "reset_on_reward")

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


def check_model_file(path: str | pathlib.Path | io.BufferedIOBase, algorithm: str = "VPG") -> None:
    """
    Raise a clear error, naming the file, when ``path`` is not a complete model file saved by VPG:
    FileNotFoundError for a missing file, ValueError for a file that is not a zip, a truncated or corrupted
    one (CRC mismatch), one without the entries SB3 writes, or one saved by another algorithm.
    Nothing is unpickled.

    :param path: the file, as given to ``VPG.load`` (a path, with or without ``.zip``, or a file object)
    :param algorithm: the algorithm's name, for the messages
    """
    if isinstance(path, (str, pathlib.Path)):
        resolved = resolve_model_path(path)
        if not resolved.is_file():
            also = "" if pathlib.Path(path).suffix == ".zip" else f" (nor at {path}.zip)"
            raise FileNotFoundError(f"No model file at {path}{also}")
        name = str(resolved)
        _check_archive(resolved, name, algorithm)
    else:
        name = getattr(path, "name", repr(path))
        position = path.tell()
        try:
            _check_archive(path, name, algorithm)
        finally:
            path.seek(position)


def _check_archive(file: Any, name: str, algorithm: str) -> None:
    try:
        with zipfile.ZipFile(file) as archive:
            bad_member = archive.testzip()  # reads every member and checks its CRC
            if bad_member is not None:
                raise ValueError(f"the CRC of its entry {bad_member!r} does not match: the file is corrupted")
            names = set(archive.namelist())
            missing = {"data", "policy.pth"} - names
            if missing:
                raise ValueError(
                    f"it has no {' or '.join(sorted(missing))} entry: it is truncated (an interrupted save or copy), "
                    "or it is not a model saved by Stable-Baselines3"
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

    if not isinstance(data, dict) or any(key not in data for key in VPG_KEYS):
        keys = data if isinstance(data, dict) else {}
        saved_by = next((algo for key, algo in _ALGORITHM_KEYS if key in keys), "another algorithm")
        raise ValueError(
            f"{name} was saved by {saved_by}, not {algorithm}: it lacks {algorithm}'s settings "
            f"({', '.join(VPG_KEYS)}). Load it with the algorithm that saved it; to reuse the weights of a policy "
            f"with the same architecture, use {algorithm}(...).set_parameters(path) or the policy's state dict."
        )


def get_rng_state() -> dict[str, Any]:
    """
    The state of the global random generators that ``set_random_seed`` seeds (Python, NumPy, PyTorch CPU and,
    when initialized, CUDA), as JSON-compatible values, so SB3's ``data`` stores it without pickle.
    """
    numpy_state = np.random.get_state(legacy=True)
    state = {
        "python": json.loads(json.dumps(random.getstate())),
        "numpy": [numpy_state[0], _encode(numpy_state[1]), *(float(value) for value in numpy_state[2:])],
        "torch": _encode(th.get_rng_state().numpy()),
    }
    if th.cuda.is_available() and th.cuda.is_initialized():
        state["cuda"] = [_encode(cuda_state.numpy()) for cuda_state in th.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global random generators from :func:`get_rng_state`'s output."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, _decode(keys, np.uint32), int(pos), int(has_gauss), cached_gaussian))
    th.set_rng_state(th.from_numpy(_decode(state["torch"], np.uint8)))
    if "cuda" in state and th.cuda.is_available() and len(state["cuda"]) == th.cuda.device_count():
        th.cuda.set_rng_state_all([th.from_numpy(_decode(cuda_state, np.uint8)) for cuda_state in state["cuda"]])


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _decode(text: str, dtype: type) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).copy()


def atomic_write(path: str | pathlib.Path, write: Callable[[str], None]) -> None:
    """
    Call ``write(temporary_path)``, flush the file to disk, then rename it to ``path``: a process killed
    meanwhile leaves either the previous file or the complete new one at ``path``, never a partial file
    (at worst, a leftover ``*.tmp`` file beside it).
    """
    path = os.fspath(path)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise

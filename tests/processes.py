"""Helpers of the tests that run the package in other processes (zoo workers, benchmark workers, scripts)."""

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def subprocess_env() -> dict[str, str]:
    """Headless (no DISPLAY, matplotlib's Agg backend), with this checkout first on the path."""
    env = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    return env


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")

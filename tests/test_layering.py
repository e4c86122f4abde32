"""
The layers: ``sb3_vpg.common`` never imports the algorithm (``sb3_vpg.vpg``), as SB3's and sb3-contrib's ``common``
never import theirs, and importing the package alone imports no algorithm either.
"""

import pkgutil
import subprocess
import sys
from pathlib import Path

import sb3_vpg.common

COMMON_MODULES = sorted(
    module.name for module in pkgutil.walk_packages([str(Path(sb3_vpg.common.__file__).parent)], "sb3_vpg.common.")
)

# Each module imported in a fresh interpreter, one after the other; after each import, the algorithm must not be loaded.
# A module whose third-party dependency is missing (an optional extra) is skipped.
SCRIPT = """
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as error:
        if (error.name or "").startswith("sb3_vpg"):
            raise
        print("skipped", name, error)
        continue
    loaded = sorted(module for module in sys.modules if module == "sb3_vpg.vpg" or module.startswith("sb3_vpg.vpg."))
    if loaded:
        sys.exit(f"importing {name} imported {loaded}")
"""


def test_common_modules_do_not_import_the_algorithm():
    assert "sb3_vpg.common.buffers" in COMMON_MODULES and "sb3_vpg.common.reliability.checkpoints" in COMMON_MODULES
    for modules in (["sb3_vpg"], COMMON_MODULES):
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, *modules], capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr[-2000:]


def test_the_package_exports_the_algorithm_on_first_use():
    code = "import sys, sb3_vpg; assert 'sb3_vpg.vpg' not in sys.modules; from sb3_vpg import VPG; print(VPG.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "sb3_vpg.vpg.vpg"

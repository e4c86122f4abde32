#!/usr/bin/env bash
# The release artifacts as a user receives them (issue 24), run from the repository root:
#   1. builds the sdist and the wheel (python -m build) from a clean copy of the tree (the files git tracks, and
#      untracked ones it does not ignore: no stale build/ or egg-info), and a second wheel from the sdist alone;
#   2. twine check --strict on both, cffconvert --validate on CITATION.cff;
#   3. checks their contents: the sdist is the source tree (every file git tracks, less .gitignore; MANIFEST.in), the
#      wheel exactly the library with its package data and dist-info (LICENSE included), nothing else, and the
#      wheel built from the sdist is the same file for file (so the sdist is complete);
#   4. installs the wheel with the zoo extra in a fresh venv outside the repository, as a user would, and runs
#      from a folder outside it: the import (version and location), the main job (VPG on CartPole-v1 with the
#      packaged entry, TensorBoard log, save/load), the zoo with the packaged vpg.yml and the console script;
#   5. installs the wheel (in the background, during 4) in a second fresh venv with every dependency at the lowest
#      version it declares (read from the wheel's metadata: each needs a >= bound) and runs the main job there.
# Every temporary folder lies outside the repository and is removed on exit. DIST_OUT=folder keeps the sdist
# and the wheel. Needs: python 3.11 with venv, git, and the package index (pip's cache speeds it up).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd -P)"
PYTHON="${PYTHON:-python}"
TORCH_PIN="torch==2.13.0" # installed first in every venv: the CPU build on this machine's disk
START=$SECONDS

# The venvs (two torch installs, ~3 GB in ~60,000 files) go to memory (/dev/shm) where it has room and TMPDIR
# is not set: on a disk mounted with discard, writing and deleting them took minutes here.
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]] && (($(df -Pk /dev/shm | awk 'NR == 2 {print $4}') > 8000000)); then
    WORK="$(mktemp -d -p /dev/shm sb3-vpg-artifacts.XXXXXX)"
else
    WORK="$(mktemp -d -t sb3-vpg-artifacts.XXXXXX)"
fi
LOWEST_PID=""
cleanup() {
    if [[ -n $LOWEST_PID ]] && kill -0 "$LOWEST_PID" 2>/dev/null; then # the background install (step 5)
        kill $(pgrep -P "$LOWEST_PID") "$LOWEST_PID" 2>/dev/null || true
        wait "$LOWEST_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK="$(cd "$WORK" && pwd -P)"
case "$WORK/" in "$REPO"/*)
    echo "artifacts: the temporary folder $WORK lies inside the repository (TMPDIR?)" >&2
    exit 1
    ;;
esac

# Nothing from the repository or the caller's environment may leak into the venvs' Python.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONSAFEPATH VIRTUAL_ENV
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n=== artifacts [%3ds]: %s\n' "$((SECONDS - START))" "$*"; }
# pip install, quiet (less the notes on this machine's local index folders), no bytecode compilation at install
pip_install() {
    local python=$1
    shift
    "$python" -m pip install --quiet --no-compile "$@" 2>&1 |
        { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
# A fresh venv at $1 with the current pip (3.11's bundled pip 23 took twice as long over the same installs)
new_venv() {
    "$PYTHON" -m venv "$1"
    pip_install "$1/bin/python" --upgrade pip
}

VERSION="$(tr -d '[:space:]' <sb3_vpg/version.txt)"
echo "sb3-vpg $VERSION; temporary folder $WORK"

step "tools (build, twine, cffconvert)"
new_venv "$WORK/tools"
pip_install "$WORK/tools/bin/python" build twine cffconvert
"$WORK/tools/bin/cffconvert" --validate -i CITATION.cff

step "clean copy of the tree"
mkdir -p "$WORK/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' file; do if [[ -f $file ]]; then printf '%s\0' "$file"; fi; done |
        tar --null -T - -cf - | tar -C "$WORK/src" -xf -
else
    tar --exclude-vcs --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude='*.py[cod]' -cf - . | tar -C "$WORK/src" -xf -
fi

(cd "$WORK/src" && find . -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' | sed 's|^\./||' | sort) >"$WORK/tree.txt"
echo "$(wc -l <"$WORK/tree.txt") files"

step "build the sdist and the wheel"
"$WORK/tools/bin/python" -m build --sdist --wheel --outdir "$WORK/dist" "$WORK/src" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; exit 1; }
SDIST="$WORK/dist/sb3_vpg-$VERSION.tar.gz"
WHEEL="$WORK/dist/sb3_vpg-$VERSION-py3-none-any.whl"
ls -l "$WORK/dist"
[[ -f $SDIST && -f $WHEEL ]] || { echo "artifacts: expected $SDIST and $WHEEL" >&2; exit 1; }

step "build a wheel from the sdist alone"
mkdir -p "$WORK/unpacked" "$WORK/from_sdist"
tar -C "$WORK/unpacked" -xzf "$SDIST"
"$WORK/tools/bin/python" -m build --wheel --outdir "$WORK/from_sdist" "$WORK/unpacked/sb3_vpg-$VERSION" \
    >"$WORK/build_from_sdist.log" 2>&1 || { cat "$WORK/build_from_sdist.log"; exit 1; }

step "twine check --strict"
"$WORK/tools/bin/twine" --no-color check --strict "$SDIST" "$WHEEL" "$WORK/from_sdist/"*.whl

step "contents of the sdist and the wheels"
"$WORK/tools/bin/python" - "$WORK/src" "$WORK/tree.txt" "$SDIST" "$WHEEL" "$WORK/from_sdist/sb3_vpg-$VERSION-py3-none-any.whl" "$VERSION" <<'PY'
import email.parser
import sys
import tarfile
import zipfile
from pathlib import Path

src, tree_list, sdist, wheel, wheel_from_sdist, version = Path(sys.argv[1]), *sys.argv[2:]
errors = []
#: the files of the clean copy before the builds, relative to it, no bytecode
tree = set(Path(tree_list).read_text().splitlines())


def source_files(folder=""):
    """Files of the clean copy under ``folder`` (all of them by default)."""
    return {path for path in tree if path.startswith(folder + "/")} if folder else set(tree)


def compare(what, found, expected):
    if missing := sorted(expected - found):
        errors.append(f"{what}: missing {missing}")
    if extra := sorted(found - expected):
        errors.append(f"{what}: unexpected {extra}")


# --- sdist: the source tree (MANIFEST.in): every file of the clean copy but .gitignore, and what setuptools adds
root = f"sb3_vpg-{version}/"
with tarfile.open(sdist) as tar:
    members = [m.name for m in tar.getmembers() if m.isfile()]
    contents = {name: tar.extractfile(root + name).read() for name in ("LICENSE", "CITATION.cff", "pyproject.toml")}
if outside := [name for name in members if not name.startswith(root)]:
    errors.append(f"sdist: files outside {root}: {outside}")
sdist_files = {name[len(root):] for name in members if name.startswith(root)}
print(f"sdist {Path(sdist).name}: {len(sdist_files)} files; top level:")
for entry in sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in sdist_files}):
    print(f"  {entry}")
generated = {f for f in sdist_files if f in {"PKG-INFO", "setup.cfg"} or f.startswith("sb3_vpg.egg-info/")}
compare("sdist (against the tree, less .gitignore)", sdist_files - generated, source_files() - {".gitignore"})
for required in ("PKG-INFO", "pyproject.toml", "README.md", "LICENSE", "CITATION.cff", "sb3_vpg/__init__.py", "tests/conftest.py"):
    if required not in sdist_files:
        errors.append(f"sdist: no {required}")
for name, content in contents.items():
    if content != (src / name).read_bytes():
        errors.append(f"sdist: {name} differs from the tree's")

# --- wheel: the library with its package data, the dist-info, nothing else
dist_info = f"sb3_vpg-{version}.dist-info/"
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if not n.endswith("/")]
    metadata = email.parser.Parser().parsestr(zf.read(dist_info + "METADATA").decode())
    wheel_info = email.parser.Parser().parsestr(zf.read(dist_info + "WHEEL").decode())
    entry_points = zf.read(dist_info + "entry_points.txt").decode()
    license_text = zf.read(dist_info + "licenses/LICENSE")
    record = sorted(zf.read(dist_info + "RECORD").decode().splitlines())
print(f"wheel {Path(wheel).name}: {len(names)} files:")
for name in sorted(names):
    print(f"  {name}")
if stray := sorted(n for n in names if not n.startswith(("sb3_vpg/", dist_info))):
    errors.append(f"wheel: files outside the library and its dist-info: {stray}")
compare("wheel sb3_vpg/ (against the tree's sb3_vpg/)", {n for n in names if n.startswith("sb3_vpg/")}, source_files("sb3_vpg"))
for data in ("sb3_vpg/py.typed", "sb3_vpg/version.txt", "sb3_vpg/hyperparams/vpg.yml", "sb3_vpg/__init__.py"):
    if data not in names:
        errors.append(f"wheel: no {data}")
compare(
    "wheel dist-info",
    {n for n in names if n.startswith(dist_info)},
    {dist_info + f for f in ("METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt", "licenses/LICENSE")},
)
if license_text != (src / "LICENSE").read_bytes():
    errors.append("wheel: dist-info/licenses/LICENSE differs from LICENSE")
checks = {
    "Version": (metadata["Version"], version),
    "License-Expression": (metadata["License-Expression"], "MIT"),
    "Root-Is-Purelib": (wheel_info["Root-Is-Purelib"], "true"),
    "Tag": (wheel_info["Tag"], "py3-none-any"),
}
for key, (found, expected) in checks.items():
    if found != expected:
        errors.append(f"wheel metadata {key}: {found!r}, expected {expected!r}")
if "Typing :: Typed" not in metadata.get_all("Classifier", []):
    errors.append("wheel metadata: no 'Typing :: Typed' classifier")
if "sb3-vpg-zoo = sb3_vpg.zoo:main" not in entry_points:
    errors.append("wheel: no sb3-vpg-zoo console script")

# --- the wheel built from the sdist alone: the same files, byte for byte (RECORD holds each file's hash)
with zipfile.ZipFile(wheel_from_sdist) as zf:
    record_from_sdist = sorted(zf.read(dist_info + "RECORD").decode().splitlines())
if record_from_sdist != record:
    diff = sorted(set(record) ^ set(record_from_sdist))
    errors.append(f"the wheel built from the sdist differs from the wheel built from the tree: {diff}")

if errors:
    print("\nartifacts: contents FAILED", *errors, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("contents ok: sdist complete, wheel = library + package data + dist-info, wheel from sdist identical")
PY

if [[ -n ${DIST_OUT:-} ]]; then
    mkdir -p "$DIST_OUT"
    cp "$SDIST" "$WHEEL" "$DIST_OUT/"
    echo "artifacts: copied the sdist and the wheel to $DIST_OUT"
fi

step "lowest declared versions of the dependencies; their venv installs in the background"
"$WORK/tools/bin/python" - "$WHEEL" >"$WORK/lowest.txt" <<'PY'
import sys
import zipfile
from email.parser import Parser

from packaging.requirements import Requirement

wheel = sys.argv[1]
with zipfile.ZipFile(wheel) as zf:
    (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(zf.read(name).decode())
for line in metadata.get_all("Requires-Dist"):
    requirement = Requirement(line)
    if requirement.marker is not None:  # an extra's
        continue
    lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    if len(lower) != 1:
        sys.exit(f"{line}: a dependency without one '>=' lower bound claims versions nothing tests")
    print(f"{requirement.name}=={lower[0]}")
PY
cat "$WORK/lowest.txt"
(
    new_venv "$WORK/venv_lowest"
    pip_install "$WORK/venv_lowest/bin/python" "$TORCH_PIN"
    pip_install "$WORK/venv_lowest/bin/python" --constraint "$WORK/lowest.txt" "$WHEEL"
) >"$WORK/venv_lowest.log" 2>&1 &
LOWEST_PID=$!

# The main job on a small budget: VPG on CartPole-v1 with the packaged entry, a TensorBoard log, save and load.
mkdir -p "$WORK/run"
cat >"$WORK/run/main_job.py" <<'PY'
import glob
import os
import sys
import sysconfig
from pathlib import Path

import sb3_vpg
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_vpg import VPG
from sb3_vpg.hyperparams import load_hyperparams

location = Path(sb3_vpg.__file__).resolve()
purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
assert location.is_relative_to(purelib), f"sb3_vpg imported from {location}, not from {purelib}"
print(f"sb3_vpg imported from {location}")

logdir = sys.argv[1]
run, hyperparams = load_hyperparams("CartPole-v1")
env = make_vec_env("CartPole-v1", n_envs=run.get("n_envs", 1), seed=0)
model = VPG(run.get("policy", "MlpPolicy"), env, tensorboard_log=logdir, seed=0, verbose=0, **hyperparams)
total = 2 * model.n_steps * env.num_envs  # two rollouts and updates
model.learn(total_timesteps=total)
assert model.num_timesteps == total, model.num_timesteps
model.save(os.path.join(logdir, "vpg_cartpole"))
loaded = VPG.load(os.path.join(logdir, "vpg_cartpole"), env=env)
mean, std = evaluate_policy(loaded, env, n_eval_episodes=5, deterministic=True)
(events,) = glob.glob(os.path.join(logdir, "VPG_1", "events.out.tfevents.*"))
tags = EventAccumulator(events).Reload().Tags()["scalars"]
assert "rollout/ep_rew_mean" in tags and any(tag.startswith("train/") for tag in tags), tags
print(f"main job: {total} steps, {len(tags)} TensorBoard scalars, evaluation {mean:.1f} +- {std:.1f}")
PY

# Runs the import and the main job in the venv $1 from the folder outside the repository.
check_import_and_main_job() {
    local venv=$1 printed
    printed="$(cd "$WORK/run" && "$venv/bin/python" -c "import sb3_vpg; print(sb3_vpg.__version__)")"
    echo "python -c \"import sb3_vpg; print(sb3_vpg.__version__)\" -> $printed"
    [[ $printed == "$VERSION" ]] || { echo "artifacts: printed $printed, expected $VERSION" >&2; exit 1; }
    # main_job.py asserts that sb3_vpg comes from the venv's site-packages
    (cd "$WORK/run" && "$venv/bin/python" main_job.py "$WORK/run/tb_$(basename "$venv")")
}

step "fresh venv outside the repository: $TORCH_PIN, then the wheel with the zoo extra"
new_venv "$WORK/venv"
pip_install "$WORK/venv/bin/python" "$TORCH_PIN"
pip_install "$WORK/venv/bin/python" "$WHEEL[zoo]"
"$WORK/venv/bin/python" -m pip list 2>/dev/null | grep -iE "^(sb3.vpg|stable.baselines3|gymnasium|torch|numpy|rl.zoo3) " || true

step "import and main job (from $WORK/run)"
check_import_and_main_job "$WORK/venv"

step "the zoo with the packaged vpg.yml: python -m sb3_vpg.zoo train --env CartPole-v1 -n 2000 --eval-freq -1"
(cd "$WORK/run" && "$WORK/venv/bin/python" -m sb3_vpg.zoo train --env CartPole-v1 -n 2000 --eval-freq -1 \
    -f "$WORK/run/logs" --seed 0) >"$WORK/zoo.log" 2>&1 || { cat "$WORK/zoo.log"; exit 1; }
grep -E "^Loading hyperparameters from: $WORK/venv/lib/python[0-9.]+/site-packages/sb3_vpg/hyperparams/vpg.yml$" \
    "$WORK/zoo.log" || { cat "$WORK/zoo.log"; echo "artifacts: the zoo did not read the packaged vpg.yml" >&2; exit 1; }
ls "$WORK/run/logs/vpg/CartPole-v1_1/CartPole-v1.zip" "$WORK/run/logs/vpg/CartPole-v1_1/CartPole-v1/config.yml"

step "the console script: sb3-vpg-zoo --help"
[[ $(command -v "$WORK/venv/bin/sb3-vpg-zoo") == "$WORK/venv/bin/sb3-vpg-zoo" ]]
help="$(cd "$WORK/run" && "$WORK/venv/bin/sb3-vpg-zoo" --help)"
printf '%s\n' "$help"
grep -q "train" <<<"$help" || { echo "artifacts: sb3-vpg-zoo --help does not name its train command" >&2; exit 1; }

step "the venv with the lowest declared versions"
wait "$LOWEST_PID" || { cat "$WORK/venv_lowest.log"; echo "artifacts: installing the lowest versions failed" >&2; exit 1; }
LOWEST_PID=""
cat "$WORK/venv_lowest.log"
"$WORK/venv_lowest/bin/python" -m pip list 2>/dev/null |
    grep -iE "^(sb3.vpg|stable.baselines3|gymnasium|torch|numpy|tensorboard|pyyaml) "
check_import_and_main_job "$WORK/venv_lowest"

step "done: artifacts built, checked and run outside the repository (removing $WORK)"

"""
The documentation's Python examples run as written, so the docs cannot drift from the code.

Convention: every ``.. code-block:: python`` of ``docs/**/*.rst`` and every fenced python block of ``README.md``
runs; the blocks of one page run in order, in one namespace (a later block may use an earlier one's ``model``), in a
temporary folder, with ``__name__ == "__main__"``. A block that must not run says so: ``:class: no-test`` in its
directive's options (rST), or an ``<!-- no-test -->`` line right before its fence (Markdown). The examples keep their
real settings and budgets; the test cuts rollouts to 64 steps per env and every ``learn()`` to one rollout, so a
page takes seconds.

It also checks that the scripts the docs, README.md and benchmarks/RESULTS.md name, and the files their links point
to, exist.
"""

import re
import textwrap
from pathlib import Path

import pytest
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.rst"))
NO_TEST = "no-test"


def rst_python_blocks(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of an rST text that are not marked ``:class: no-test``, dedented."""
    lines, blocks, index = text.splitlines(), [], 0
    while index < len(lines):
        match = re.match(r"^(\s*)\.\. code-block:: python\s*$", lines[index])
        index += 1
        if not match:
            continue
        indent, options = len(match.group(1)), {}
        while index < len(lines) and (option := re.match(r"^\s+:([\w-]+):\s*(.*)$", lines[index])):
            options[option.group(1)] = option.group(2)
            index += 1
        body = []
        while index < len(lines) and (not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent):
            body.append(lines[index])
            index += 1
        if NO_TEST not in options.get("class", "").split():
            blocks.append(textwrap.dedent("\n".join(body)).strip("\n"))
    return blocks


def markdown_python_blocks(text: str) -> list[str]:
    """The fenced python blocks of a Markdown text that do not follow an ``<!-- no-test -->`` line."""
    pattern = re.compile(r"(<!-- no-test -->\n)?```python\n(.*?)```", re.DOTALL)
    return [match.group(2) for match in pattern.finditer(text) if not match.group(1)]


#: Rollouts of the examples are cut to at most this many steps per env (see :func:`one_short_rollout`).
MAX_N_STEPS = 64


@pytest.fixture
def one_short_rollout(monkeypatch):
    """
    Every on-policy model built by the examples collects rollouts of at most ``MAX_N_STEPS`` steps per env (its
    ``batch_size`` cut to the rollout with them), and every ``learn()`` trains for one rollout instead of its budget: the
    examples run their real code in seconds.
    """
    setup_model, learn = OnPolicyAlgorithm._setup_model, OnPolicyAlgorithm.learn

    def short_setup_model(self):
        self.n_steps = min(self.n_steps, MAX_N_STEPS)
        if getattr(self, "batch_size", None) is not None:
            self.batch_size = min(self.batch_size, self.n_steps * self.n_envs)
        setup_model(self)

    def one_rollout(self, total_timesteps, *args, **kwargs):
        return learn(self, min(total_timesteps, self.n_steps * self.n_envs), *args, **kwargs)

    monkeypatch.setattr(OnPolicyAlgorithm, "_setup_model", short_setup_model)
    monkeypatch.setattr(OnPolicyAlgorithm, "learn", one_rollout)


def run_blocks(blocks: list[str], name: str) -> None:
    namespace = {"__name__": "__main__"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"<{name}, python block {number}>", "exec"), namespace)  # the docs' own code
        except BaseException as error:
            raise AssertionError(f"{name}, python block {number} failed:\n{block}") from error


def test_the_pages_have_examples():
    # the parsers find the blocks (an empty list would let every example drift unseen)
    assert len(PAGES) >= 10
    counted = {page.relative_to(DOCS).as_posix(): len(rst_python_blocks(page.read_text())) for page in PAGES}
    assert counted["modules/vpg.rst"] >= 2 and counted["guide/quickstart.rst"] >= 3 and counted["guide/atari.rst"] >= 3
    assert len(markdown_python_blocks((ROOT / "README.md").read_text())) >= 1
    assert rst_python_blocks(".. code-block:: python\n   :class: no-test\n\n   1 / 0\n\ntext\n") == []
    assert rst_python_blocks("- item\n\n  .. code-block:: python\n\n     a = 1\n\n     b = a\n\n  text\n") == [
        "a = 1\n\nb = a"
    ]
    assert markdown_python_blocks("<!-- no-test -->\n```python\n1 / 0\n```\n\n```python\nx = 1\n```\n") == ["x = 1\n"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(DOCS).as_posix())
def test_docs_examples_run(page, tmp_path, monkeypatch, one_short_rollout):
    monkeypatch.chdir(tmp_path)
    run_blocks(rst_python_blocks(page.read_text()), page.relative_to(ROOT).as_posix())


def test_readme_examples_run(tmp_path, monkeypatch, one_short_rollout):
    monkeypatch.chdir(tmp_path)
    run_blocks(markdown_python_blocks((ROOT / "README.md").read_text()), "README.md")


@pytest.mark.parametrize("document", ["README.md", "benchmarks/RESULTS.md", *(p.relative_to(ROOT).as_posix() for p in PAGES)])
def test_named_files_and_tests_exist(document):
    path = ROOT / document
    text = path.read_text()
    # a path after "commit:" (git show a24d962:benchmarks/x.py) names a file of an earlier commit
    scripts = set(re.findall(r"(?<![\w/:.-])((?:examples|benchmarks|tests|\.ci)/[\w./-]+\.(?:py|sh))\b", text))
    missing = [script for script in sorted(scripts) if not (ROOT / script).is_file()]
    # Markdown links and images, and rST images and figures, relative to the document
    targets = re.findall(r"\]\((?!https?:|#|mailto:)([^)\s]+)\)", text)
    targets += re.findall(r"^\s*\.\. (?:image|figure):: (\S+)", text, re.MULTILINE)
    missing += [target for target in targets if not (path.parent / target.split("#")[0]).exists()]
    # tests named as evidence (test_x, or tests/file.py::test_x)
    test_code = "\n".join(test.read_text() for test in (ROOT / "tests").glob("test_*.py"))
    named = set(re.findall(r"\b(test_\w+)(?!\w|\.py)", text))
    missing += [name for name in sorted(named) if f"def {name}(" not in test_code]
    assert not missing, f"{document} names files or tests that do not exist: {missing}"

# Sphinx configuration of the sb3-vpg documentation (built by .ci/docs.sh with warnings as errors).
import os
import sys
import textwrap

# The package itself, for autodoc (an installed sb3-vpg works too)
sys.path.insert(0, os.path.abspath(".."))

with open(os.path.join(os.path.dirname(__file__), "..", "sb3_vpg", "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

project = "sb3-vpg"
copyright = "2026, sb3-vpg contributors"
author = "sb3-vpg contributors"
version = __version__
release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

templates_path = []
source_suffix = {".rst": "restructuredtext"}
master_doc = "index"
language = "en"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
pygments_style = "sphinx"

# Docstrings use reST fields (":param x:"), as Stable-Baselines3's do; signatures keep the type hints
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
autosummary_generate = False

html_theme = "sphinx_rtd_theme"
html_static_path = ["_static"]
html_title = f"sb3-vpg {__version__}"
htmlhelp_basename = "sb3vpgdoc"


def _insert_policy_classes(app, docname, source):
    """
    Replace the line ``.. vpg-policy-classes`` of a page by an ``autoclass`` of each class behind VPG's policy
    aliases, found through ``VPG.policy_aliases``, so that the page follows the classes wherever they are defined.
    """
    marker = ".. vpg-policy-classes\n"
    if marker not in source[0]:
        return
    from sb3_vpg import VPG

    blocks = [f".. autoclass:: {cls.__module__}.{cls.__qualname__}\n" for cls in VPG.policy_aliases.values()]
    source[0] = source[0].replace(marker, "\n".join(blocks))


def _dedent_inherited_docstrings(app, what, name, obj, options, lines):
    """
    VPG's policies append SB3's policy docstring, indented as in SB3's source, to their own: dedent that part so that
    its ``:param:`` fields render as fields, not as a quoted block.
    """
    for index, line in enumerate(lines):
        if line.startswith("SB3's documentation of the other parameters"):
            lines[index + 1 :] = textwrap.dedent("\n".join(lines[index + 1 :])).splitlines()
            return


def setup(app):
    app.connect("source-read", _insert_policy_classes)
    app.connect("autodoc-process-docstring", _dedent_inherited_docstrings)

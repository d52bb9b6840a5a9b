"""Sphinx extension: an HTML book that reads offline and shows no button that leads nowhere.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``. It does what ``_config.yml`` cannot say:

- **MathJax from the book itself.** Sphinx loads MathJax 3 from a CDN by default, so equations stay raw
  LaTeX without a network. The pinned PyPI package ``sphinx-mathjax-offline`` ships MathJax 3.2.2's
  ``es5`` files (the version Sphinx's ``mathjax3_config`` is written for); they are copied into
  ``_build/html/_static/mathjax/`` and ``mathjax_path`` points at the local ``tex-mml-chtml.js``, the
  same component Sphinx takes from the CDN. Only that component and what it can load on demand are
  copied (fonts, TeX extensions, accessibility, menu), not the other combined builds (SVG, speech).
  The package is used as data only; it is not enabled as an extension.
- **Repository and launch buttons only with a repository.** ``repository.url`` in ``_config.yml`` is the
  one place the book's repository is named; empty (the default) means there is none. Then the
  repository and issue buttons and the Binder / Colab launch buttons are switched off (jupyter-book
  refuses the buttons without a URL, and sphinx-book-theme fails on launch buttons without one). With a
  URL they are switched on, and Colab is offered only on ``.ipynb`` pages, the only ones Colab opens.

The widgets' JavaScript (``nb_ipywidgets_js``) is switched off in ``_config.yml``: an ``interact``
slider needs a live kernel, so the embedded one could not move its figure anyway; every widget in the
book has a static figure beside it. ``tools/check_offline_html.py`` checks the built pages.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset

MATHJAX_PACKAGE = "sphinx-mathjax-offline"
MATHJAX_FOLDER = "sphinx-mathjax-offline/static/mathjax"  # inside the package's installed files
MATHJAX_ENTRY = "tex-mml-chtml.js"  # Sphinx's default component, here served from _static/mathjax/
# Top-level combined components other than MATHJAX_ENTRY: never loaded by it, 14 MB together.
UNUSED_COMPONENTS = ("mml-chtml.js", "mml-svg.js", "node-main.js", "tex-chtml.js", "tex-chtml-full.js",
                     "tex-chtml-full-speech.js", "tex-mml-svg.js", "tex-svg.js", "tex-svg-full.js")
REPOSITORY_BUTTONS = ("use_repository_button", "use_issues_button")


def mathjax_source() -> Path:
    """The folder of MathJax's ``es5`` build inside the installed ``sphinx-mathjax-offline``."""
    try:
        folder = Path(distribution(MATHJAX_PACKAGE).locate_file(MATHJAX_FOLDER))
    except PackageNotFoundError as error:
        raise ExtensionError(f"{MATHJAX_PACKAGE} is not installed: it ships the book's MathJax "
                             "(pip install -r requirements.txt)") from error
    if not (folder / MATHJAX_ENTRY).is_file():
        raise ExtensionError(f"{folder / MATHJAX_ENTRY} is missing: reinstall {MATHJAX_PACKAGE}")
    return folder


def _serve_mathjax_locally(app: Sphinx, config: Config) -> None:
    mathjax_source()  # fail at the start of the build, not after executing every chapter
    if str(config.mathjax_path).startswith(("http:", "https:", "//")):  # Sphinx's default is a CDN
        config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"  # relative: Sphinx serves it from _static/


def _copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if app.builder.format != "html":
        return
    source = mathjax_source()

    def unused(path: str) -> bool:  # copy_asset passes paths relative to the source folder
        relative = Path(path)
        return (relative.parts[0] in UNUSED_COMPONENTS or relative.parts[:2] == ("output", "svg")
                or relative.suffix == ".map")

    copy_asset(str(source), str(Path(app.outdir) / "_static" / "mathjax"), excluded=unused)


def _buttons_follow_repository(app: Sphinx, config: Config) -> None:
    options: dict[str, Any] = config.html_theme_options
    has_repository = bool(str(options.get("repository_url") or "").strip())
    for button in REPOSITORY_BUTTONS:
        options[button] = has_repository
    if not has_repository:
        options["repository_url"] = ""
        options["launch_buttons"] = {}


def _colab_only_for_notebooks(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                              doctree: Any) -> None:
    if context.get("page_source_suffix") == ".ipynb":
        return
    groups = context.get("header_buttons", [])
    for group in groups:
        if isinstance(group.get("buttons"), list):
            group["buttons"] = [item for item in group["buttons"] if "colab" not in str(item.get("url", ""))]
    groups[:] = [group for group in groups if group.get("buttons", True)]  # drop a group left empty


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _serve_mathjax_locally)
    app.connect("config-inited", _buttons_follow_repository)
    app.connect("html-page-context", _colab_only_for_notebooks, priority=900)  # after the theme's buttons
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

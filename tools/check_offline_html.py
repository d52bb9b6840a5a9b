"""Check that the built HTML book reads offline and has no dead repository or launch links.

Run at the end of ``make book`` over ``_build/html``; exits 1 and names page and problem when

- a page loads a script, stylesheet, font, image or frame from outside the book (an ``http(s)://`` or
  ``//`` address: MathJax or the ipywidgets manager from a CDN), or names a CDN for code it loads
  later (``data-jupyter-widgets-cdn``, a CDN address in an inline script);
- a page loads a file of the book that is not there (a local MathJax that was not copied);
- a page with equations loads no MathJax;
- a link points at the placeholder repository the book once used, or, when ``_config.yml`` names no
  repository, at a repository, issue or launch (Binder, Colab) address.

    python tools/check_offline_html.py [_build/html] [--config _config.yml]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_REPOSITORY = "dstlib/dynamic-sparsity-book"
LAUNCH_HOSTS = ("mybinder.org", "colab.research.google.com", "deepnote.com")
CDN_IN_SCRIPT = re.compile(r"https?://[^\s\"']*(?:cdn|unpkg|jsdelivr|cdnjs|googleapis)[^\s\"']*", re.IGNORECASE)
# sphinx-thebe declares on every page where Thebe would come from; it loads it only when a reader
# clicks the "Live code" launch button, which needs a repository, Binder and a network anyway.
THEBE_DECLARATION = re.compile(r"const THEBE_JS_URL = \"[^\"]*\";?")
# Attributes through which a page loads something, per tag (<a href> is a link, not a load).
LOADING_ATTRIBUTES = {"script": "src", "img": "src", "iframe": "src", "source": "src", "audio": "src",
                      "video": "src", "embed": "src", "track": "src", "object": "data", "link": "href"}
LOADING_LINK_RELS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "apple-touch-icon",
                     "manifest", "prefetch"}


@dataclass
class Page:
    """What one HTML page loads and links to."""

    loads: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    buttons: list[str] = field(default_factory=list)
    widget_cdns: list[str] = field(default_factory=list)
    inline_script_urls: list[str] = field(default_factory=list)
    has_math: bool = False


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        attribute = LOADING_ATTRIBUTES.get(tag)
        if attribute and values.get(attribute):
            rels = set(values.get("rel", "").lower().split())
            if tag != "link" or rels & LOADING_LINK_RELS:
                self.page.loads.append(values[attribute])
        if tag == "a" and values.get("href"):
            self.page.links.append(values["href"])
            if "btn" in values.get("class", "").split() and is_outside(values["href"]):
                self.page.buttons.append(values["href"])
        if values.get("data-jupyter-widgets-cdn"):
            self.page.widget_cdns.append(values["data-jupyter-widgets-cdn"])
        if "math" in values.get("class", "").split():
            self.page.has_math = True
        self._in_script = tag == "script" and not values.get("src")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.page.inline_script_urls.extend(CDN_IN_SCRIPT.findall(THEBE_DECLARATION.sub("", data)))


def parse_page(html: str) -> Page:
    """The loads, links and math of one page."""
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.page


def is_outside(address: str) -> bool:
    """Whether an address points outside the book (a scheme with a host, or protocol-relative)."""
    parts = urlsplit(address)
    return bool(parts.netloc) or parts.scheme not in ("", "file")


def page_problems(page: Page, path: Path, repository: str) -> list[str]:
    """Everything one page loads from outside, loads but lacks, or links to that leads nowhere."""
    problems = []
    mathjax = []
    for address in page.loads:
        if is_outside(address):
            problems.append(f"loads {address} from outside the book")
            continue
        if urlsplit(address).scheme or address.startswith("data:"):
            continue
        target = (path.parent / unquote(urlsplit(address).path)).resolve()
        if not target.is_file():
            problems.append(f"loads {address}, which is not in the built book")
        if "mathjax" in address.lower():
            mathjax.append(address)
    problems += [f"loads widget code from {cdn}" for cdn in page.widget_cdns]
    problems += [f"an inline script names {url}" for url in page.inline_script_urls]
    if page.has_math and not mathjax:
        problems.append("shows equations but loads no MathJax of the book's own")
    problems += [f"links to the placeholder repository: {link}" for link in page.links
                 if PLACEHOLDER_REPOSITORY in link]
    if not repository:
        problems += [f"a launch link without a repository: {link}" for link in page.links
                     if (urlsplit(link).hostname or "").endswith(LAUNCH_HOSTS)]
        problems += [f"a button to {button} without a repository" for button in page.buttons]
    else:
        name = urlsplit(repository).path.strip("/").removesuffix(".git")
        problems += [f"a button to {button}, not to the repository {repository}" for button in page.buttons
                     if name not in unquote(button)]
    return problems


def book_problems(html_root: Path, repository: str) -> dict[str, list[str]]:
    """Problems of every page under ``html_root``, by page path; empty when the book is clean."""
    found = {}
    for path in sorted(html_root.rglob("*.html")):
        if "_static" in path.relative_to(html_root).parts:
            continue
        problems = page_problems(parse_page(path.read_text(encoding="utf-8")), path, repository)
        if problems:
            found[path.relative_to(html_root).as_posix()] = problems
    return found


def configured_repository(config: Path) -> str:
    """``repository.url`` of ``_config.yml``, "" when unset."""
    settings = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("repository") or {}
    return str(settings.get("url") or "").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--config", type=Path, default=ROOT / "_config.yml")
    args = parser.parse_args(argv)
    pages = sorted(args.html.rglob("*.html"))
    if not pages:
        print(f"no HTML pages under {args.html}: build the book first (make book)", file=sys.stderr)
        return 1
    found = book_problems(args.html, configured_repository(args.config))
    for page, problems in found.items():
        for problem in problems:
            print(f"{page}: {problem}", file=sys.stderr)
    if found:
        print(f"{len(found)} of {len(pages)} pages would not work offline or link nowhere", file=sys.stderr)
        return 1
    print(f"{len(pages)} pages: everything they load is inside the book; no placeholder or dead button links")
    return 0


if __name__ == "__main__":
    sys.exit(main())

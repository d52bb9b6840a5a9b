"""Sphinx extension: bibliography labels that read like the book's author-year citations.

With ``bibtex_reference_style: author_year`` sphinxcontrib-bibtex writes citations as
"(Evci et al., 2020)", but the bibliography still labels entries with the formatting style's
labels ("[EGM+20]" for ``alpha``, "[1]" for ``plain``), and pybtex ships no author-year label
style. This extension registers a formatting style ``author_year``: pybtex's ``plain`` entries,
labelled "[Evci et al., 2020]" and sorted by those labels. The same authors and year get "a", "b"
suffixes, since labels must be unique. Loaded through ``sphinx.local_extensions`` in
``_config.yml`` and selected with ``bibtex_default_style: author_year``.
"""

from __future__ import annotations

import codecs
from collections import Counter
from collections.abc import Iterable, Iterator

import latexcodec  # noqa: F401 - registers the "ulatex" codec
from pybtex.database import Entry
from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle
from sphinx.application import Sphinx

STYLE_NAME = "author_year"


def _plain(latex: str) -> str:
    """LaTeX as plain text: accents decoded, grouping braces dropped (``K{\\"a}rk`` -> ``Kärk``)."""
    return codecs.decode(latex, "ulatex").replace("{", "").replace("}", "")


def cited_authors(entry: Entry) -> str:
    """"Evci et al.", "Dettmers and Zettlemoyer" or "Mocanu": the authors (else editors) as cited."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    surnames = [_plain(" ".join(person.prelast_names + person.last_names)) for person in persons]
    if not surnames:
        return entry.key
    if len(surnames) == 1:
        return surnames[0]
    if len(surnames) == 2:
        return f"{surnames[0]} and {surnames[1]}"
    return f"{surnames[0]} et al."


def author_year_label(entry: Entry) -> str:
    """The label without its disambiguating letter: "Evci et al., 2020"."""
    return f"{cited_authors(entry)}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """pybtex label style: :func:`author_year_label`, with "a", "b", ... added to repeated labels."""

    def format_labels(self, sorted_entries: Iterable[Entry]) -> Iterator[str]:
        labels = [author_year_label(entry) for entry in sorted_entries]
        repeats = Counter(labels)
        seen: Counter[str] = Counter()
        for label in labels:
            if repeats[label] == 1:
                yield label
            else:
                yield label + chr(ord("a") + seen[label])
                seen[label] += 1


class AuthorYearSortingStyle(BaseSortingStyle):
    """pybtex sorting style: by cited authors, then year, then title, so labels come in order."""

    def sorting_key(self, entry: Entry) -> tuple[str, str, str]:
        title = entry.fields.get("title", "").lower()
        return cited_authors(entry).lower(), entry.fields.get("year", ""), title


class AuthorYearStyle(PlainStyle):
    """pybtex's ``plain`` entry formatting with author-year labels and order."""

    default_label_style = STYLE_NAME
    default_sorting_style = STYLE_NAME


def setup(app: Sphinx) -> dict[str, bool]:
    register_plugin("pybtex.style.labels", STYLE_NAME, AuthorYearLabelStyle)
    register_plugin("pybtex.style.sorting", STYLE_NAME, AuthorYearSortingStyle)
    register_plugin("pybtex.style.formatting", STYLE_NAME, AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Chapter 1's claims: the paper's CIFAR-10 effects in the paper profile, the book's point on mnist1d."""

from dstlib import experiments
from dstlib.experiments import dst_from_scratch as chapter
from dstlib.experiments.claims import BOOK_EFFECT, PAPER


def test_the_paper_profile_tests_the_papers_effects_and_the_others_the_books_point_with_the_reason():
    paper = experiments.claims_of(chapter, "paper")
    assert [(c.effect, c.reference) for c in paper] == \
        [(chapter.PAPER_EFFECTS[c.a["method"], c.b["method"]], PAPER) for c in paper]
    for profile in ("smoke", "tutorial"):
        claims = experiments.claims_of(chapter, profile)
        assert [c.name for c in claims] == [c.name for c in paper]
        assert all(c.effect == BOOK_EFFECT and "CIFAR-10" in c.reference for c in claims)
    assert [c.headline for c in paper] == [True, False, False, False]
    assert paper[0].a["method"] == "rigl" and paper[0].b["method"] == "static"

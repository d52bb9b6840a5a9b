"""Chapter 3 (hard samples): data settings, the paper's methods as engines, the grid and the claims."""

import numpy as np
import pandas as pd
import pytest
import torch

from dstlib import experiments, sparse
from dstlib.experiments import hard_samples as chapter
from dstlib.experiments.claims import BOOK_EFFECT


@pytest.fixture(scope="module")
def smoke():
    return experiments.resolve("hard_samples", "smoke")


def test_subsets_have_the_right_size_are_deterministic_and_nested():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.0])
    hard = chapter.subset_indices("el2n", 0.3, 10, lambda: scores)
    assert hard.tolist() == [1, 5, 3]  # the three highest scores, hardest first
    small = chapter.subset_indices("random", 0.3, 10, lambda: scores)
    large = chapter.subset_indices("random", 0.5, 10, lambda: scores)
    assert len(small) == 3 and len(large) == 5 and set(small.tolist()) <= set(large.tolist())
    assert torch.equal(small, chapter.subset_indices("random", 0.3, 10, lambda: scores))
    assert torch.equal(chapter.subset_indices("el2n", 1.0, 10, lambda: 1 / 0), torch.arange(10))  # no scoring


def test_prepared_digits_are_16x16_in_range_with_fixed_noise(smoke):
    images = torch.rand(4, 1, 32, 32)
    first = chapter.prepare(images, smoke, "train", corrupted=False)
    assert first.shape == (4, 1, 16, 16) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, chapter.prepare(images, smoke, "train", corrupted=False))
    assert not torch.equal(first, chapter.prepare(images, smoke, "test", corrupted=False))
    clean = experiments.resolve("hard_samples", "smoke", pixel_noise=0.0)
    assert torch.allclose(chapter.prepare(images, clean, "train", corrupted=False),
                          torch.nn.functional.avg_pool2d(images, 2), atol=1e-6)
    assert not torch.allclose(chapter.prepare(images, clean, "train", corrupted=True),
                              torch.nn.functional.avg_pool2d(images, 2))


def test_dense_runs_come_first_and_a_full_data_ratio_is_one_setting(smoke):
    config = experiments.resolve("hard_samples", "smoke", data_ratios=[1.0, 0.3], methods=["lth", "dense", "set"],
                                 seeds=[0, 1])
    found = chapter.points(config)
    methods = [p["method"] for p in found]
    assert methods.index("lth") > max(i for i, m in enumerate(methods) if m == "dense")
    full = [p for p in found if p["data_ratio"] == 1.0]
    assert {p["setting"] for p in full} == {"full"} and len(full) == 2 * 3  # per seed: dense, lth, set
    robust = [p for p in found if p["setting"] in ("corrupted", "adversarial")]
    assert {(p["setting"], p["method"]) for p in robust} == {(s, m) for s in ("corrupted", "adversarial")
                                                             for m in ("dense", "set")}
    none = experiments.resolve("hard_samples", "smoke", corruption="none", adversarial=False)
    assert {p["setting"] for p in chapter.points(none)} == {"el2n", "random"}


def test_headline_seeds_train_only_the_headline_pair_and_are_not_grid_seeds(smoke):
    config = experiments.resolve("hard_samples", "smoke", seeds=[0], headline_seeds=[5, 6], sparsities=[0.5, 0.9],
                                 data_ratios=[1.0, 0.3])
    extra = [p for p in chapter.points(config) if p["seed"] in (5, 6)]
    assert sorted((p["seed"], p["setting"], p["data_ratio"], p["method"], p["density"]) for p in extra) == [
        (seed, "el2n", 0.3, method, density) for seed in (5, 6) for method, density in (("dense", 1.0), ("set", 0.1))]
    assert len(chapter.points(config)) == len(chapter.points(experiments.resolve(
        "hard_samples", "smoke", seeds=[0], sparsities=[0.5, 0.9], data_ratios=[1.0, 0.3]))) + 4
    with pytest.raises(ValueError, match=r"headline_seeds=\[0, 1\]: allowed seeds not in seeds=\[0\]"):
        experiments.resolve("hard_samples", "smoke", headline_seeds=[0, 1])


def test_test_draws_repeat_the_test_set_with_fresh_noise():
    config = experiments.resolve("hard_samples", "smoke", test_draws=3)
    _, train_y, test_x, test_y = chapter.clean_images(config)
    once = chapter.clean_images(experiments.resolve("hard_samples", "smoke"))
    n = len(once[3])
    assert len(test_y) == 3 * n and torch.equal(test_y[n:2 * n], once[3]) and torch.equal(test_x[:n], test_x[n:2 * n])
    noisy = chapter.prepare(test_x, config, "test", corrupted=False)
    assert not torch.equal(noisy[:n], noisy[n:2 * n])


def test_methods_that_need_the_dense_run_require_it_before_any_work():
    with pytest.raises(ValueError, match=r"methods=\['lth', 'set'\]: allowed a list with 'dense'"):
        experiments.resolve("hard_samples", "smoke", methods=["lth", "set"])


def test_gmp_needs_a_pruning_window():
    with pytest.raises(ValueError, match=r"prune_begin=0.8 with prune_end=0.8: allowed prune_begin < prune_end"):
        experiments.resolve("hard_samples", "smoke", prune_begin=0.8)
    with pytest.raises(ValueError, match=r"prune_begin=0.9 with prune_end=0.5: allowed"):
        experiments.resolve("hard_samples", "smoke", methods=["dense", "set"], robust_methods=["dense", "gmp"],
                            prune_begin=0.9, prune_end=0.5)
    assert experiments.resolve("hard_samples", "smoke", methods=["dense", "set"], prune_begin=0.9).prune_begin == 0.9


def test_lth_from_a_recorded_dense_run_equals_lth_in_the_same_grid(tmp_path):
    """A dense run that was skipped (its record exists) gives LTH its weights from the record's extras."""
    base = {"seeds": [0], "selections": ["random"], "corruption": "none", "adversarial": False, "progress": False}
    together = experiments.run(chapter, experiments.resolve("hard_samples", "smoke", methods=["dense", "lth"],
                                                            out_dir=str(tmp_path / "a"), **base))
    experiments.run(chapter, experiments.resolve("hard_samples", "smoke", methods=["dense"],
                                                 out_dir=str(tmp_path / "b"), **base))
    later = experiments.run(chapter, experiments.resolve("hard_samples", "smoke", methods=["dense", "lth"],
                                                         out_dir=str(tmp_path / "b"), **base))
    lth = [[r for r in result.records if r["params"]["method"] == "lth"] for result in (together, later)]
    assert len(lth[0]) == len(lth[1]) == 1 and lth[0][0]["metrics"] == lth[1][0]["metrics"]
    assert lth[0][0]["history"] == lth[1][0]["history"]


def _engine(method, config, density=0.1, **kwargs):
    model = chapter.build_model(config, torch.zeros(1, 1, 16, 16), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    factory = chapter.engine_of(method, density, config, seed=0, **kwargs)
    return model, factory(model, optimizer, 100)  # 100 steps = config.epochs epochs


def test_each_method_gets_the_papers_engine_settings():
    config = experiments.resolve("hard_samples", "tutorial")  # update every epoch
    _, set_engine = _engine("set", config)
    assert (set_engine.prune, set_engine.grow) == ("set", "random")
    assert set_engine.update_every == round(100 / config.epochs)
    _, gmp = _engine("gmp", config)
    assert (gmp.prune_begin, gmp.prune_end) == (10, 80)
    _, erk = _engine("erk_random", config)
    _, uniform = _engine("uniform_random", config)
    erk_first, uniform_first = erk.report()["density"].iloc[0], uniform.report()["density"].iloc[0]
    assert erk.prune is None and uniform.prune is None and erk_first > 3 * uniform_first
    assert uniform.report()["density"].between(0.09, 0.11).all()
    x, y = torch.rand(16, 1, 16, 16), torch.arange(16) % 10
    model, snip = _engine("snip", config, snip_batch=(x, y))
    assert abs(snip.density - 0.1) < 1e-3 and snip.prune is None
    assert chapter.engine_of("dense", 1.0, config, seed=0) is None


def test_lth_rewinds_to_the_dense_init_and_omp_keeps_the_trained_weights(smoke):
    init_model = chapter.build_model(smoke, torch.zeros(1, 1, 16, 16), 10)
    initial = {k: v.clone() for k, v in init_model.state_dict().items()}
    trained = chapter.build_model(smoke, torch.zeros(1, 1, 16, 16), 10)
    masks, start = chapter.masks_from_dense("lth", trained, initial, 0.2)
    for name, mask in masks.items():
        assert torch.equal(start[name], initial[name] * mask)
    omp_masks, omp_start = chapter.masks_from_dense("omp", trained, initial, 0.2)
    assert all(torch.equal(omp_masks[n], masks[n]) for n in masks)
    assert all(torch.equal(omp_start[k], v) for k, v in trained.state_dict().items())
    erk_masks, _ = chapter.masks_from_dense("omp_erk", trained, initial, 0.2)
    expected = sparse.magnitude_prune(trained, 0.2, scope="erk")
    assert all(torch.equal(erk_masks[n], expected[n]) for n in expected)


def _frame(gap_set=3.0, gap_uniform=-5.0, seeds=4):
    rows = []
    for seed in range(seeds):
        noise = 0.002 * (seed % 2)
        for method, accuracy in [("dense", 0.6), ("set", 0.6 + gap_set / 100), ("snip", 0.6),
                                 ("erk_random", 0.6), ("uniform_random", 0.6 + gap_uniform / 100)]:
            sparsity = 0.0 if method == "dense" else 0.9
            rows.append({"seed": seed, "setting": "el2n", "data_ratio": 0.3, "method": method,
                         "sparsity": sparsity, "accuracy": accuracy + noise * (method == "set")})
        for setting in ("corrupted", "adversarial"):
            for method in ("dense", "set"):
                rows.append({"seed": seed, "setting": setting, "data_ratio": 0.3, "method": method,
                             "sparsity": 0.0 if method == "dense" else 0.9, "accuracy": 0.5,
                             "robust_accuracy": 0.3 + 0.01 * seed * (method == "set")})
    return pd.DataFrame(rows)


def test_claims_pair_by_seed_in_the_right_setting():
    frame = _frame()
    judgement = experiments.judge(chapter, frame)
    claims = {v.name: v for v in judgement.judged}
    sides = {spec.name.format(**setting): spec.values(frame, setting)[:2]
             for spec in chapter.CLAIMS for setting in spec.settings(frame)}
    assert set(sides) == set(claims) == {"SET matches or beats dense, EL2N-hard 30%, sparsity 0.9",
                                         "SNIP matches or beats dense, EL2N-hard 30%, sparsity 0.9",
                                         "ERK - uniform random masks, EL2N-hard 30%, sparsity 0.9",
                                         "SET - dense, corrupted (accuracy), sparsity 0.9",
                                         "SET - dense, adversarial (robust accuracy), sparsity 0.9"}
    assert judgement.headline == "SET matches or beats dense, EL2N-hard 30%, sparsity 0.9"
    assert [m.kind for m in judgement.margins] == ["non-inferiority"] * 2
    erk = sides["ERK - uniform random masks, EL2N-hard 30%, sparsity 0.9"]
    assert np.subtract(*erk).tolist() == pytest.approx([5.0] * 4)
    robust = sides["SET - dense, adversarial (robust accuracy), sparsity 0.9"]
    assert np.subtract(*robust).tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert all(getattr(c, "paper_effect", getattr(c, "margin", None)) == BOOK_EFFECT for c in claims.values())
    sentence = claims["ERK - uniform random masks, EL2N-hard 30%, sparsity 0.9"].sentence
    assert "(the book's smallest effect of interest)" in sentence and "in the paper" not in sentence


def test_gaps_to_dense_per_setting():
    gaps = chapter.gaps_to_dense(_frame()).set_index(["setting", "method"])
    assert gaps.loc[("el2n", "uniform_random"), "estimate"] == pytest.approx(-5.0)
    assert gaps.loc[("el2n", "set"), "estimate"] == pytest.approx(3.1)
    assert ("corrupted", "set") in gaps.index

"""Chapter 4 (DDP-ASR): the variants of a configuration, the per-seed ratios and the claims."""

import numpy as np
import pandas as pd
import pytest

from dstlib import experiments, stats
from dstlib.experiments import dynamic_data_pruning as chapter


def test_variants_are_full_data_every_criterion_and_keep_and_each_dropping_mode():
    config = experiments.resolve("dynamic_data_pruning", "smoke", criteria=["random", "easy_to_hard"],
                                 keep_ratios=[0.5, 0.7], drop_modes=["chunk"])
    found = chapter.variants(config)
    assert found[0] == chapter.FULL and len(found) == 1 + 2 * 2 + 1
    assert found[-1] == {"criterion": "easy_to_hard", "keep": 0.7, "drop": "chunk"}
    assert [chapter.label(v) for v in found[:2]] == ["full", "random 50%"]
    assert chapter.label(found[-1]) == "easy_to_hard 70% + chunk"


def _frame(seeds=6, e2h_gap=0.2, speedup=1.6):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base = 0.30 + 0.01 * rng.normal()
        time = 10.0 * (1 + 0.02 * rng.normal())
        for criterion, keep, drop, wer, seconds in [
                ("full", 1.0, "none", base, time),
                ("random", 0.7, "none", base + 0.03, 0.7 * time),
                ("easy_to_hard", 0.7, "none", base + e2h_gap / 100 + 0.001 * rng.normal(), 0.7 * time),
                ("easy_to_hard", 0.7, "point", base + 0.02, time / speedup * 1.1),
                ("easy_to_hard", 0.7, "chunk", base + 0.01, time / speedup)]:
            rows.append({"seed": seed, "criterion": criterion, "keep": keep, "drop": drop, "wer": wer, "cer": wer / 2,
                         "train_time_s": seconds, "utterances": 100 * keep, "frames": 1000 * keep})
    return pd.DataFrame(rows)


def test_ratios_are_per_seed_against_full_data():
    labelled = chapter.with_labels(_frame())
    full = labelled[labelled["variant"] == "full"]
    assert (full["train_time_s_ratio"] == 1).all() and (full["frames_ratio"] == 1).all()
    random = labelled[labelled["variant"] == "random 70%"]
    assert random["train_time_s_ratio"].to_numpy() == pytest.approx(0.7)
    assert random["wer_pct"].to_numpy() == pytest.approx(100 * random["wer"].to_numpy())


def test_claims_pair_by_seed_and_the_match_is_an_equivalence():
    judgement = experiments.judge(chapter, _frame())
    superiority, matches = judgement.verdicts, judgement.margins
    names = [v.name for v in superiority]
    assert names == ["easy-to-hard - random at 70%: WER reduction", "chunk - point dropping: WER reduction",
                     "chunk dropping - full data: log training-time speed-up"]
    assert superiority[0].effect.estimate == pytest.approx(3.0 - 0.2, abs=0.1)
    assert superiority[2].effect.estimate == pytest.approx(np.log(1.6))
    assert superiority[2].paper_effect == pytest.approx(np.log(chapter.PAPER_SPEEDUP))
    assert "(the book's smallest effect of interest)" in superiority[0].sentence
    (match,) = matches
    assert judgement.headline == match.name and judgement.gate_open
    assert match.family_size == 1 and {v.alpha for v in superiority} == {0.05}  # the three after it share 5%
    assert match.margin == pytest.approx(0.1 * 100 * _frame().query(
        "criterion == 'full'")["wer"].mean())
    assert match.outcome == stats.REPRODUCED  # 0.2 points against a margin of about 3
    far = experiments.judge(chapter, _frame(e2h_gap=8.0)).margins
    assert far[0].outcome == stats.CONTRADICTED


def test_points_are_every_seed_times_every_variant_and_the_frame_knob_says_frames():
    config = experiments.resolve("dynamic_data_pruning", "smoke", seeds=[0, 1], drop_modes=["chunk"])
    found = chapter.points(config)
    assert len(found) == 2 * len(chapter.variants(config)) and found[0] == {"seed": 0, **chapter.FULL}
    assert config.frame_drop_fraction == 0.3 and "drop_fraction" not in config  # frames, not weights


def test_the_drop_mode_none_leaves_out_the_time_dropping_runs():
    config = experiments.resolve("dynamic_data_pruning", "smoke", criteria=["easy_to_hard"], drop_modes=["none"])
    assert chapter.variants(config) == [chapter.FULL, {"criterion": "easy_to_hard", "keep": 0.7, "drop": "none"}]


def test_the_training_set_is_capped_and_the_rest_of_the_corpus_only_enlarges_the_test_set(monkeypatch):
    import torch

    from dstlib import data

    sizes = {"train": 30, "test": 8}
    monkeypatch.setattr(data, "load", lambda name, split, **options: torch.utils.data.TensorDataset(
        torch.arange(sizes[split]), torch.arange(sizes[split])))
    capped = experiments.resolve("dynamic_data_pruning", "smoke", max_train_utterances=12)
    train, test, collate = chapter.load(capped)
    assert [len(part) for part in train] == [12, 12] and [len(part) for part in test] == [8, 8] and collate is None
    train, _, _ = chapter.load(experiments.resolve("dynamic_data_pruning", "smoke"))
    assert len(train[0]) == 30  # None: every training utterance

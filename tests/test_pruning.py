"""Dynamic data pruning: the per-epoch samplers and time-wise frame dropping (chapter 4, DDP-ASR)."""

import pytest
import torch
from torch import nn

from dstlib import tasks, train
from dstlib.callbacks import EpochSampling, Perturbation, Record
from dstlib.optimisation import Optimisation
from dstlib.selection.pruning import DynamicPruning, TimeDropping


def _select(sampler, losses, epoch=2, seed=0):
    return sampler.select(epoch, losses, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("criterion", ["random", "keep_easy", "keep_hard", "easy_to_hard"])
def test_every_criterion_keeps_exactly_the_fraction_without_repeats(criterion):
    sampler = DynamicPruning(0.7, criterion, epochs=5)
    losses = torch.rand(50, generator=torch.Generator().manual_seed(1))
    for epoch in range(1, 6):
        chosen = _select(sampler, losses, epoch)
        assert len(chosen) == sampler.num_selected(50) == 35 and len(set(chosen.tolist())) == 35
    first = _select(sampler, torch.full((50,), float("nan")), epoch=1)
    assert len(first) == 35 and len(set(first.tolist())) == 35


def test_keep_easy_and_keep_hard_follow_the_losses_and_change_with_them():
    losses = torch.arange(10.0)
    assert sorted(_select(DynamicPruning(0.3, "keep_easy"), losses).tolist()) == [0, 1, 2]
    assert sorted(_select(DynamicPruning(0.3, "keep_hard"), losses).tolist()) == [7, 8, 9]
    assert sorted(_select(DynamicPruning(0.3, "keep_easy"), losses.flip(0)).tolist()) == [7, 8, 9]
    unseen = losses.clone()
    unseen[[0, 9]] = float("nan")  # ranked at the median of the known losses, 4.5
    assert sorted(_select(DynamicPruning(0.2, "keep_easy"), unseen).tolist()) == [1, 2]


def test_easy_to_hard_moves_from_the_easiest_to_the_hardest_and_drops_nothing_forever():
    losses = torch.arange(20.0)
    sampler = DynamicPruning(0.7, "easy_to_hard", epochs=4)
    chosen = [set(_select(sampler, losses, epoch).tolist()) for epoch in range(1, 5)]
    assert chosen[0] == set(range(14)) and chosen[-1] == set(range(6, 20))
    assert set().union(*chosen) == set(range(20))


def test_random_changes_its_choice_from_epoch_to_epoch():
    sampler = DynamicPruning(0.5, "random")
    generator = torch.Generator().manual_seed(0)
    losses = torch.rand(40)
    assert not torch.equal(sampler.select(1, losses, generator), sampler.select(2, losses, generator))


def test_bad_options_name_the_parameter():
    with pytest.raises(ValueError, match="keep=0"):
        DynamicPruning(0.0)
    with pytest.raises(ValueError, match="criterion='hardest'"):
        DynamicPruning(0.5, "hardest")
    with pytest.raises(ValueError, match="mode='frames'"):
        TimeDropping(0.3, "frames")


def _batch(lengths, frames=40, mels=3):
    lengths = torch.tensor(lengths)
    time = torch.arange(1, frames + 1, dtype=torch.float32).expand(len(lengths), mels, frames).clone()
    time = time * (torch.arange(frames) < lengths[:, None])[:, None, :]
    targets = torch.tensor([[1, 2, 3]] * len(lengths))
    return {"features": time, "lengths": lengths, "targets": targets, "target_lengths": torch.full((len(lengths),), 3)}


@pytest.mark.parametrize(("mode", "fraction", "kept"), [("point", 0.3, [28, 14, 42]), ("chunk", 0.5, [20, 10, 30])])
def test_time_dropping_drops_the_requested_share_keeps_order_and_the_transcript(mode, fraction, kept):
    torch.manual_seed(0)
    batch = _batch([40, 20, 60], frames=60)
    out = TimeDropping(fraction, mode, chunk_frames=10)(nn.Identity(), batch, tasks.CTC())
    assert out["lengths"].tolist() == kept  # the share of every utterance's frames (whole chunks of 10)
    assert out["features"].shape == (3, 3, max(kept))
    for i, length in enumerate(out["lengths"].tolist()):
        kept = out["features"][i, 0, :length]
        assert (kept >= 1).all() and (kept.diff() > 0).all()  # original frames, in their order
        assert (out["features"][i, :, length:] == 0).all()
        if mode == "chunk":  # the dropped frames form whole chunks of 10
            missing = sorted(set(range(1, batch["lengths"][i].item() + 1)) - set(kept.int().tolist()))
            assert len(missing) % 10 == 0 and all((m - 1) // 10 == (missing[j - j % 10] - 1) // 10
                                                 for j, m in enumerate(missing))
    assert torch.equal(out["targets"], batch["targets"]) and torch.equal(out["target_lengths"], batch["target_lengths"])


def test_time_dropping_never_empties_an_utterance_and_zero_is_a_no_op():
    torch.manual_seed(0)
    batch = _batch([5, 40])
    out = TimeDropping(0.9, "chunk", chunk_frames=10)(nn.Identity(), batch, tasks.CTC())
    assert out["lengths"].tolist() == [5, 10]  # one chunk: kept; four chunks: round(3.6) dropped
    assert TimeDropping(0.0)(nn.Identity(), batch, tasks.CTC()) is batch


def test_pruned_ctc_training_runs_and_counts_what_it_processed():
    g = torch.Generator().manual_seed(0)
    n, mels, frames = 24, 4, 30
    lengths = torch.randint(15, frames + 1, (n,), generator=g)
    features = torch.randn(n, mels, frames, generator=g) * (torch.arange(frames) < lengths[:, None])[:, None, :]
    targets = torch.randint(1, 5, (n, 3), generator=g)

    class Frames(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(mels, 5)

        def forward(self, x, lengths):
            return self.proj(x.transpose(1, 2))

    frames_seen = {"frames": lambda task, outputs, batch: batch["lengths"].float()}
    result = train.fit(Frames, (features, lengths, targets, torch.full((n,), 3)), task=tasks.CTC(), epochs=3,
                       batch_size=4, optim=Optimisation(lr=0.1), device="cpu",
                       callbacks=[EpochSampling(DynamicPruning(0.5, "easy_to_hard", epochs=3)),
                                  Perturbation(TimeDropping(0.5, "point")), Record(frames_seen)])
    assert result.samples_seen == 3 * 12
    processed = result.per_sample["frames"]
    used = ~processed.isnan()
    assert used.sum(1).tolist() == [12, 12, 12]
    kept = lengths.float() - torch.round(0.5 * lengths.float())  # round(fraction * L) frames dropped
    assert torch.equal(processed[used], kept.expand(3, n)[used])

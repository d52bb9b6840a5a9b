"""Dynamic data pruning (DDP-ASR, Xiao et al. 2024): which samples each epoch trains on, and which time
frames inside them.

* **Instance-wise.** :class:`DynamicPruning` is an :class:`~dstlib.callbacks.EpochSampler` for
  ``fit(callbacks=[EpochSampling(...)])``: every epoch it keeps ``keep`` of the training set, chosen from
  each sample's most recent training loss (recorded in the training forward pass, so scoring costs no
  extra pass). Nothing is discarded for good: the choice is made again every epoch.
* **Time-wise.** :class:`TimeDropping` is a :class:`~dstlib.callbacks.Perturbation` that removes
  ``fraction`` of the valid frames of every utterance in a batch, as single frames (``"point"``) or as
  contiguous chunks (``"chunk"``), and shortens the batch accordingly; the transcript is left unchanged,
  so it acts like time masking that also saves compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.tasks import Batch, Task

CRITERIA = ("random", "keep_easy", "keep_hard", "easy_to_hard")
DROP_MODES = ("point", "chunk")


@dataclass(frozen=True)
class DynamicPruning:
    """Keep ``round(keep * n)`` samples every epoch by ``criterion``:

    * ``"random"``: a fresh uniform draw;
    * ``"keep_easy"`` / ``"keep_hard"``: the lowest / highest most recent losses;
    * ``"easy_to_hard"``: a curriculum over the ranking by loss: epoch ``e`` of ``epochs`` keeps the ranks
      ``[o, o + k)`` with ``o = round((n - k) (e - 1) / (epochs - 1))``, the easiest at the start and the
      hardest at the end, so every rank is trained on at some epoch.

    A sample never trained on yet (NaN loss, all of them in the first epoch) is ranked as if its loss were
    the median of the known ones; ties are broken at random, so the first epoch is a random draw.
    """

    keep: float
    criterion: str = "easy_to_hard"
    epochs: int = 1

    def __post_init__(self) -> None:
        checks.number("keep", self.keep, low=0.0, high=1.0, low_open=True)
        checks.one_of("criterion", self.criterion, CRITERIA)
        checks.integer("epochs", self.epochs, low=1)

    def num_selected(self, num_samples: int) -> int:
        return max(1, round(self.keep * num_samples))

    def select(self, epoch: int, losses: Tensor, generator: torch.Generator) -> Tensor:
        """Indices ``(num_selected,)`` for ``epoch`` (1-based) from the most recent losses ``(n,)``."""
        n = len(losses)
        count = self.num_selected(n)
        shuffled = torch.randperm(n, generator=generator)
        if self.criterion == "random":
            return shuffled[:count]
        known = losses[~losses.isnan()]
        filled = losses.nan_to_num(float(known.median()) if len(known) else 0.0)
        ascending = shuffled[torch.sort(filled[shuffled], stable=True).indices]  # random among ties
        if self.criterion == "keep_easy":
            return ascending[:count]
        if self.criterion == "keep_hard":
            return ascending[n - count:]
        progress = (epoch - 1) / (self.epochs - 1) if self.epochs > 1 else 1.0
        start = round((n - count) * min(max(progress, 0.0), 1.0))
        return ascending[start:start + count]


@dataclass(frozen=True)
class TimeDropping:
    """Drop ``fraction`` of every utterance's valid frames (a :class:`~dstlib.callbacks.Perturbation`).

    ``"point"`` drops ``round(fraction * L)`` single frames of an utterance of ``L`` frames;
    ``"chunk"`` cuts it into consecutive chunks of ``chunk_frames`` frames (the last one may be shorter)
    and drops ``round(fraction * number of chunks)`` whole chunks (never every chunk). Positions are drawn
    from the torch default generator (seeded by ``fit``). The kept frames keep their order and are packed to the left;
    ``lengths`` shrink and the padded time axis is cut to the longest kept utterance. Works on the
    :class:`~dstlib.tasks.CTC` batch layout: ``features (N, n_mels, T)``, ``lengths (N,)``.
    """

    fraction: float
    mode: str = "chunk"
    chunk_frames: int = 10

    def __post_init__(self) -> None:
        checks.number("fraction", self.fraction, low=0.0, high=1.0, high_open=True)
        checks.one_of("mode", self.mode, DROP_MODES)
        checks.integer("chunk_frames", self.chunk_frames, low=1)

    def keep_mask(self, lengths: Tensor, frames: int) -> Tensor:
        """``(N, frames)`` bool: the frames kept (padding is never kept)."""
        size = self.chunk_frames if self.mode == "chunk" else 1
        chunks = -(-lengths // size)  # ceil: the chunks of each utterance
        width = math.ceil(frames / size)
        scores = torch.rand(len(lengths), width).to(lengths.device)
        scores[torch.arange(width, device=lengths.device) >= chunks[:, None]] = 2.0  # padding chunks last
        ranks = scores.argsort(dim=1).argsort(dim=1)
        count = torch.minimum(torch.round(self.fraction * chunks.double()).long(), chunks - 1)  # keep one chunk
        dropped = ranks < count[:, None]
        position = torch.arange(frames, device=lengths.device)
        return ~dropped.repeat_interleave(size, dim=1)[:, :frames] & (position < lengths[:, None])

    def __call__(self, model: nn.Module, batch: Batch, task: Task) -> Batch:
        features, lengths = batch["features"], batch["lengths"]
        if self.fraction == 0:
            return batch
        keep = self.keep_mask(lengths, features.shape[-1])
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # kept frames first, in order
        new_lengths = keep.sum(dim=1)
        width = int(new_lengths.max())
        packed = features.gather(-1, order[:, None, :].expand_as(features))[..., :width]
        packed = packed * (torch.arange(width, device=features.device) < new_lengths[:, None])[:, None, :]
        return {**batch, "features": packed, "lengths": new_lengths}

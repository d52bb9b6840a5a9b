"""Two marks far apart: a synthetic image task that only a wide receptive field can solve (SLaK chapter).

Each image is ``size x size`` grey noise in ``[0, noise]`` holding two different 5x5 marks at intensity 1,
a plus ``A`` and a hollow square ``B``. The label is where ``B`` lies relative to ``A``: 0 right, 1 left,
2 below, 3 above (chance 25%). Along that axis the marks are ``gap`` to ``size - 2 * margin - 5`` pixels
apart (between their top-left corners); across it they are offset by at most ``jitter`` pixels.
``distractors`` extra marks of a third shape (a diagonal) can be added anywhere.

Why a local model cannot solve it: every mark is at least ``margin`` pixels from the border, so a network
whose receptive field is narrower than ``margin`` and ``gap - 5`` never sees a border and a mark at once, nor
both marks at once; its pooled features are sums of local responses whose distribution is the same for
every class. Small digits do not have this property: on 32x32 digits a small ConvNeXt already sees the whole
image, and larger kernels cannot matter.

Deterministic by ``seed``; train and test come from disjoint random streams; cached under ``data/cache``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import DatasetSpec, cached, register

MARK = 5
CLASSES = ("right", "left", "below", "above")
_PLUS = torch.zeros(MARK, MARK)
_PLUS[MARK // 2, :] = 1.0
_PLUS[:, MARK // 2] = 1.0
_SQUARE = torch.ones(MARK, MARK)
_SQUARE[1:-1, 1:-1] = 0.0
_DIAGONAL = torch.eye(MARK)
MARKS = {"A": _PLUS, "B": _SQUARE, "distractor": _DIAGONAL}


def _stamp(image: torch.Tensor, mark: torch.Tensor, row: int, col: int) -> None:
    window = image[row:row + MARK, col:col + MARK]
    torch.maximum(window, mark, out=window)


def make_two_marks(num_samples: int, *, size: int = 32, gap: int = 12, margin: int = 3, jitter: int = 2,
                   noise: float = 0.5, distractors: int = 0,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` balanced images ``(N, 1, size, size)`` in [0, 1] and labels ``(N,)`` in 0..3."""
    checks.integer("num_samples", num_samples, low=1)
    checks.integer("margin", margin, low=0)
    checks.integer("jitter", jitter, low=0)
    checks.integer("distractors", distractors, low=0)
    checks.number("noise", noise, low=0, high=1)
    span = size - 2 * margin - MARK  # largest top-left distance that fits
    checks.require(checks.is_number(size, low=MARK + 2 * margin, integer=True), "size", size,
                   f"an integer >= {MARK + 2 * margin} (5-pixel marks, margin={margin})")
    checks.require(checks.is_number(gap, low=MARK, high=span, integer=True), "gap", gap,
                   f"an integer in [{MARK}, {span}] (size={size}, margin={margin})")
    checks.require(2 * jitter <= span, "jitter", jitter, f"at most {span // 2}")
    g = generator or torch.Generator().manual_seed(0)

    def uniform(low: int, high: int) -> int:  # inclusive
        return int(torch.randint(low, high + 1, (1,), generator=g))

    images = torch.rand(num_samples, 1, size, size, generator=g) * noise
    labels = torch.arange(num_samples) % len(CLASSES)
    labels = labels[torch.randperm(num_samples, generator=g)]
    low, high = margin, size - margin - MARK  # allowed top-left coordinates
    for i, label in enumerate(labels.tolist()):
        distance = uniform(gap, span)
        along_a = uniform(low, high - distance)
        across_a = uniform(low + jitter, high - jitter)
        across_b = across_a + uniform(-jitter, jitter)
        first, second = (along_a, along_a + distance) if label in (0, 2) else (along_a + distance, along_a)
        if label in (0, 1):  # horizontal: along = column
            a, b = (across_a, first), (across_b, second)
        else:
            a, b = (first, across_a), (second, across_b)
        for _ in range(distractors):
            _stamp(images[i, 0], MARKS["distractor"], uniform(low, high), uniform(low, high))
        _stamp(images[i, 0], MARKS["A"], *a)
        _stamp(images[i, 0], MARKS["B"], *b)
    return images, labels


def load_two_marks(split: str, root: Path, download: bool = False, size: int = 32, gap: int = 12,
                   margin: int = 3, jitter: int = 2, noise: float = 0.5, distractors: int = 0,
                   num_train: int = 2000, num_test: int = 1000, seed: int = 0) -> TensorDataset:
    """The two-marks task (see the module docstring): ``x: (N, 1, size, size)`` in [0, 1], ``y: (N,)`` in 0..3.

    ``num_train`` / ``num_test`` images (balanced classes) from two disjoint streams of ``seed``.
    """
    del download  # generated locally
    checks.integer("num_train", num_train, low=1)
    checks.integer("num_test", num_test, low=1)
    checks.integer("seed", seed, low=0)
    options = {"size": size, "gap": gap, "margin": margin, "jitter": jitter, "noise": noise,
               "distractors": distractors}
    make_two_marks(1, **options)  # validates the options before anything is cached

    def build() -> dict[str, torch.Tensor]:
        tensors = {}
        for stream, (name, count) in enumerate((("train", num_train), ("test", num_test))):
            generator = torch.Generator().manual_seed(2 * seed + stream)
            tensors[f"{name}_x"], tensors[f"{name}_y"] = make_two_marks(count, generator=generator, **options)
        return tensors

    params = {**options, "num_train": num_train, "num_test": num_test, "seed": seed, "version": 1}
    tensors = cached("two_marks", params, build, root)
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


register(DatasetSpec("two_marks", load_two_marks, "classification", len(CLASSES), None, True,
                     "two marks far apart; the class is where one lies relative to the other (right, left, "
                     "below, above); generated offline, needs a receptive field wider than the gap"))

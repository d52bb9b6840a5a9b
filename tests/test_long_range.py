"""The two-marks task (label = where one mark lies relative to the other) and the ImageNet folder loader."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dstlib import data
from dstlib.data import long_range
from dstlib.data.fixtures.imagenet import write_imagenet
from dstlib.evaluation import evaluate
from dstlib.optimisation import Optimisation
from dstlib.train import fit


def _locate(image: torch.Tensor, mark: torch.Tensor) -> tuple[int, int]:
    """Top-left corner of ``mark`` in a noise-free image (exact match of the pattern)."""
    hits = F.conv2d(image[None], (2 * mark - 1)[None, None]) == mark.sum()
    (row, col), = hits[0, 0].nonzero().tolist()
    return row, col


def test_labels_say_where_b_lies_relative_to_a():
    x, y = long_range.make_two_marks(40, size=24, gap=8, noise=0.0, generator=torch.Generator().manual_seed(1))
    assert x.shape == (40, 1, 24, 24) and torch.bincount(y).tolist() == [10] * 4
    for image, label in zip(x, y.tolist(), strict=True):
        (ra, ca), (rb, cb) = _locate(image, long_range.MARKS["A"]), _locate(image, long_range.MARKS["B"])
        along, across = (cb - ca, rb - ra) if label in (0, 1) else (rb - ra, cb - ca)
        assert abs(along) >= 8 and abs(across) <= 2
        assert (along > 0) == (label in (0, 2))
        assert min(ra, ca, rb, cb) >= 3 and max(ra, ca, rb, cb) <= 24 - 3 - 5  # margin


def test_registry_entry_is_deterministic_and_cached(tmp_path):
    train = data.load("two_marks", "train", root=tmp_path, num_train=64, num_test=32, seed=3)
    again = data.load("two_marks", "train", root=tmp_path / "other", num_train=64, num_test=32, seed=3)
    test = data.load("two_marks", "test", root=tmp_path, num_train=64, num_test=32, seed=3)
    assert torch.equal(train.tensors[0], again.tensors[0]) and torch.equal(train.tensors[1], again.tensors[1])
    assert train.tensors[0].shape == (64, 1, 32, 32) and test.tensors[0].shape == (32, 1, 32, 32)
    assert 0 <= float(train.tensors[0].min()) and float(train.tensors[0].max()) == 1.0
    assert not torch.equal(train.tensors[0][:32], test.tensors[0])
    assert data.spec("two_marks").num_classes == 4 and data.spec("two_marks").offline
    assert list((tmp_path / "cache").glob("two_marks-*.pt"))


def test_a_local_model_stays_at_chance_and_a_global_one_does_not(tmp_path):
    """Receptive field 5 (two 3x3 convs) + global pooling, marks >= 4 px from the border and >= 7 px apart:
    every class gives the same distribution of pooled features. An MLP over all pixels learns the task."""
    options = {"root": tmp_path, "margin": 4, "gap": 12, "num_train": 800, "num_test": 400}
    train, test = data.load("two_marks", "train", **options), data.load("two_marks", "test", **options)

    def local() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def mlp() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 128), nn.ReLU(), nn.Linear(128, 4))

    accuracy = {}
    for name, factory in (("local", local), ("mlp", mlp)):
        fitted = fit(factory, train.tensors, epochs=4, batch_size=50,
                     optim=Optimisation(lr=3e-3, optimizer="adamw", weight_decay=0.0))
        accuracy[name] = evaluate(fitted.model, test.tensors)["accuracy"]
    assert accuracy["local"] < 0.33  # chance is 0.25; 400 test images: one standard error is 0.022
    assert accuracy["mlp"] > 0.45


@pytest.mark.parametrize(("options", "fragment"), [({"gap": 3}, "gap=3"), ({"size": 8}, "size=8"),
                                                   ({"noise": 2.0}, "noise=2.0"), ({"gap": 40}, "gap=40")])
def test_bad_options(tmp_path, options, fragment):
    with pytest.raises(ValueError, match=fragment):
        data.load("two_marks", root=tmp_path, **options)


def test_imagenet_folders_load_lazily_with_labels_from_sorted_train_classes(tmp_path):
    write_imagenet(tmp_path, train_per_class=3, val_per_class=2)  # one greyscale image per class and split
    train = data.load("imagenet", "train", root=tmp_path, size=16)
    test = data.load("imagenet", "test", root=tmp_path, size=16)
    assert (len(train), len(test)) == (6, 4)
    assert [label for _, label in train.items] == [0, 0, 0, 1, 1, 1]
    image, label = test[3]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 1
    assert float(image[2].mean()) > 0.7 > float(image[0].mean())  # blue class
    grey, _ = train[0]
    assert torch.allclose(grey[0], grey[1], atol=0.02)
    fitted = fit(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2)), train, epochs=1,
                 batch_size=3, optim=Optimisation(lr=0.1))
    assert evaluate(fitted.model, test)["accuracy"] >= 0.0


def test_imagenet_missing_says_where_to_put_it(tmp_path):
    with pytest.raises(data.DatasetNotAvailable, match="image-net.org") as error:
        data.load("imagenet", "train", root=tmp_path)
    assert str(tmp_path / "imagenet" / "train") in str(error.value)

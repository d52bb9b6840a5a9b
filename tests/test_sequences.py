"""mnist1d: built offline by its generator, deterministic by seed, cached."""

import random
import socket

import numpy as np
import pytest
import torch

import dstlib.data as data


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_canonical_mnist1d_is_built_offline_with_the_published_shapes(tmp_path, offline):
    train = data.load("mnist1d", "train", root=tmp_path)
    test = data.load("mnist1d", "test", root=tmp_path)
    x, y = train.tensors
    assert x.shape == (4000, 1, 40) and x.dtype == torch.float32
    assert y.shape == (4000,) and y.dtype == torch.int64
    assert test.tensors[0].shape == (1000, 1, 40)
    assert set(y.unique().tolist()) == set(range(10))
    assert torch.isfinite(x).all()
    assert data.spec("mnist1d").input_shape == tuple(x.shape[1:])


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    first = data.load("mnist1d", "train", root=tmp_path / "a", num_samples=100, seed=3).tensors
    again = data.load("mnist1d", "train", root=tmp_path / "b", num_samples=100, seed=3).tensors
    other = data.load("mnist1d", "train", root=tmp_path / "a", num_samples=100, seed=4).tensors
    assert first[0].shape == (80, 1, 40)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_global_random_states_are_left_alone(tmp_path):
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002 - the state the generator must not disturb
    expected = (random.random(), np.random.random())  # noqa: NPY002
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    data.load("mnist1d", "train", root=tmp_path, num_samples=20, seed=1)
    assert (random.random(), np.random.random()) == expected  # noqa: NPY002


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    first = data.load("mnist1d", "test", root=tmp_path, num_samples=50)
    import mnist1d.data

    def must_not_run(*args, **kwargs):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", must_not_run)
    again = data.load("mnist1d", "test", root=tmp_path, num_samples=50)
    assert torch.equal(first.tensors[0], again.tensors[0])


@pytest.mark.parametrize(("option", "value"), [("num_samples", 15), ("num_samples", 10), ("seed", -1),
                                               ("num_samples", True)])
def test_bad_options_name_the_parameter(tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        data.load("mnist1d", "train", root=tmp_path, **{option: value})

"""UCR/UEA: sktime's bundled sets, the archive layout on disk, label mapping, the offline message."""

import socket

import numpy as np
import pytest
import torch

import dstlib.data as data
from dstlib.data import timeseries
from dstlib.data.timeseries import UCR_ARCHIVE_URL


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def write_problem(root, name, suffix, train_lines, test_lines):
    folder = root / "ucr" / name
    folder.mkdir(parents=True)
    (folder / f"{name}_TRAIN{suffix}").write_text("\n".join(train_lines) + "\n")
    (folder / f"{name}_TEST{suffix}").write_text("\n".join(test_lines) + "\n")


def test_gunpoint_from_sktime_is_z_normalised_per_series(tmp_path, offline):
    x, y = data.load("ucr", "train", root=tmp_path, problem="GunPoint").tensors
    x_test, y_test = data.load("ucr", "test", root=tmp_path, problem="GunPoint").tensors
    assert x.shape == (50, 1, 150) and x_test.shape == (150, 1, 150)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) == set(y_test.tolist()) == {0, 1}
    torch.testing.assert_close(x.mean(-1), torch.zeros(50, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(-1, unbiased=False), torch.ones(50, 1), atol=1e-4, rtol=0)
    raw = data.load("ucr", "train", root=tmp_path, problem="GunPoint", normalize="none").tensors[0]
    renormalised = torch.from_numpy(timeseries.znormalize(raw[3].double().numpy())).float()
    torch.testing.assert_close(renormalised, x[3], atol=1e-5, rtol=0)


def test_unequal_length_problems_are_padded_or_rejected(tmp_path):
    x, y = data.load("ucr", "train", root=tmp_path, problem="JapaneseVowels").tensors
    x_test = data.load("ucr", "test", root=tmp_path, problem="JapaneseVowels").tensors[0]
    assert x.shape == (270, 12, 29) and x_test.shape[1:] == (12, 29)
    assert (x[..., -1] == 0).all(dim=1).any()  # some series end in padding
    assert set(y.tolist()) == set(range(9))
    with pytest.raises(ValueError, match="unequal_length='pad'"):
        data.load("ucr", "train", root=tmp_path, problem="JapaneseVowels", unequal_length="error")


def test_archive_tsv_layout_with_varying_lengths_and_consistent_labels(tmp_path):
    # Labels sorted numerically (3 < 10), the same mapping in both splits; NaN pads the short series.
    write_problem(tmp_path, "Tiny", ".tsv",
                  ["10\t1\t2\t3\t4", "3\t4\t3\t2\t1", "1\t5\t5\t7\tNaN"],
                  ["3\t1\t1\t2\t2", "1\t0\t1\t0\t1", "10\t2\t4\t6\t8"])
    x, y = data.load("ucr", "train", root=tmp_path, problem="Tiny", normalize="none").tensors
    x_test, y_test = data.load("ucr", "test", root=tmp_path, problem="Tiny", normalize="none").tensors
    assert x.shape == (3, 1, 4) and x_test.shape == (3, 1, 4)
    assert y.tolist() == [2, 1, 0] and y_test.tolist() == [1, 0, 2]
    torch.testing.assert_close(x[2, 0], torch.tensor([5.0, 5.0, 7.0, 0.0]))
    normalised = data.load("ucr", "train", root=tmp_path, problem="Tiny").tensors[0]
    assert normalised[2, 0, 3] == 0 and abs(float(normalised[2, 0, :3].mean())) < 1e-6
    with pytest.raises(ValueError, match="lengths 3..4"):
        data.load("ucr", "train", root=tmp_path, problem="Tiny", unequal_length="error")


def test_archive_txt_layout_with_float_labels_and_letters(tmp_path):
    write_problem(tmp_path, "Old", ".txt", ["  2.0000000e+00  1.0  2.0  3.0", "1.0000000e+00,3.0,2.0,1.0"],
                  ["1 1 1 2", "2 0 0 1"])
    assert data.load("ucr", "train", root=tmp_path, problem="Old").tensors[1].tolist() == [1, 0]
    assert data.load("ucr", "test", root=tmp_path, problem="Old").tensors[1].tolist() == [0, 1]
    assert timeseries.class_order(["b", "a", "c", "a"]) == ["a", "b", "c"]
    assert timeseries.class_order(["10", "9", "-1"]) == ["-1", "9", "10"]


def test_missing_values_inside_a_series_are_rejected(tmp_path):
    write_problem(tmp_path, "Gappy", ".tsv", ["1\t1\tNaN\t3"], ["1\t1\t2\t3"])
    with pytest.raises(ValueError, match="missing value"):
        data.load("ucr", "train", root=tmp_path, problem="Gappy")


def test_a_problem_neither_bundled_nor_on_disk_says_where_to_get_it(tmp_path, offline):
    with pytest.raises(data.DatasetNotAvailable) as raised:
        data.load("ucr", "train", root=tmp_path, problem="FordA")
    message = str(raised.value)
    assert UCR_ARCHIVE_URL in message
    assert str(tmp_path / "ucr" / "FordA") in message and "FordA_TRAIN.tsv" in message
    assert "sha256" in message  # explains why no hash is checked


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    write_problem(tmp_path, "Cached", ".tsv", ["1\t1\t2\t3", "2\t3\t2\t1"], ["1\t1\t2\t2"])
    first = data.load("ucr", "train", root=tmp_path, problem="Cached")

    def must_not_run(*args, **kwargs):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(timeseries, "read_delimited", must_not_run)
    again = data.load("ucr", "train", root=tmp_path, problem="Cached")
    assert torch.equal(again.tensors[0], first.tensors[0])


@pytest.mark.parametrize(("option", "value"), [("problem", "../GunPoint"), ("problem", ""),
                                               ("normalize", "global"), ("unequal_length", "truncate")])
def test_bad_options_name_the_parameter(tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        data.load("ucr", "train", root=tmp_path, **{option: value})


def test_znormalize_leaves_constant_channels_at_zero():
    series = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
    out = timeseries.znormalize(series)
    assert np.array_equal(out[0], np.zeros(3)) and abs(out[1].std() - 1) < 1e-12

"""UCR/UEA: sktime's bundled sets, the archives on disk, normalisation, label mapping, the offline message; motifs."""

import socket

import numpy as np
import pytest
import torch

import dstlib.data as data
from dstlib.data import timeseries
from dstlib.data.timeseries import UCR_ARCHIVE_URL, UCR_ARCHIVE_ZIP, UEA_ARCHIVE_ZIP


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


def test_gunpoint_from_sktime_as_shipped_by_default_or_z_normalised_per_series(tmp_path, offline):
    from sktime.datasets import load_UCR_UEA_dataset

    x, y = data.load("ucr", "train", root=tmp_path, problem="GunPoint").tensors
    x_test, y_test = data.load("ucr", "test", root=tmp_path, problem="GunPoint").tensors
    assert x.shape == (50, 1, 150) and x_test.shape == (150, 1, 150)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) == set(y_test.tolist()) == {0, 1}
    shipped = load_UCR_UEA_dataset("GunPoint", split="train", return_type="numpy3D", return_X_y=True)[0]
    torch.testing.assert_close(x, torch.from_numpy(shipped).float(), atol=0, rtol=0)  # default: untouched
    normalised = data.load("ucr", "train", root=tmp_path, problem="GunPoint", normalize="series").tensors[0]
    torch.testing.assert_close(normalised.mean(-1), torch.zeros(50, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.std(-1, unbiased=False), torch.ones(50, 1), atol=1e-4, rtol=0)


def test_normalize_series_z_normalises_each_series_and_none_keeps_the_file(tmp_path):
    write_problem(tmp_path, "Scale", ".tsv", ["1\t1\t2\t3", "2\t10\t10\t10"], ["1\t0\t0\t6"])
    shipped = data.load("ucr", "train", root=tmp_path, problem="Scale").tensors[0]
    torch.testing.assert_close(shipped, torch.tensor([[[1.0, 2.0, 3.0]], [[10.0, 10.0, 10.0]]]))
    normalised = data.load("ucr", "train", root=tmp_path, problem="Scale", normalize="series").tensors[0]
    root_3_2 = 1.5 ** 0.5  # (x - 2) / std([1, 2, 3]) with std = sqrt(2/3)
    torch.testing.assert_close(normalised, torch.tensor([[[-root_3_2, 0.0, root_3_2]], [[0.0, 0.0, 0.0]]]))


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
    x, y = data.load("ucr", "train", root=tmp_path, problem="Tiny").tensors
    x_test, y_test = data.load("ucr", "test", root=tmp_path, problem="Tiny").tensors
    assert x.shape == (3, 1, 4) and x_test.shape == (3, 1, 4)
    assert y.tolist() == [2, 1, 0] and y_test.tolist() == [1, 0, 2]
    torch.testing.assert_close(x[2, 0], torch.tensor([5.0, 5.0, 7.0, 0.0]))
    normalised = data.load("ucr", "train", root=tmp_path, problem="Tiny", normalize="series").tensors[0]
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


def write_archive_problem(root, archive, name, suffix, train, test):
    folder = root / "ucr" / archive / name
    folder.mkdir(parents=True)
    (folder / f"{name}_TRAIN{suffix}").write_text(train)
    (folder / f"{name}_TEST{suffix}").write_text(test)


def test_ucr_archive_reads_the_extracted_ucr_zip_and_never_sktimes_copy(tmp_path, offline):
    # A GunPoint of our own in UCRArchive_2018/: "ucr_archive" must read it, "ucr" keeps sktime's copy.
    write_archive_problem(tmp_path, "UCRArchive_2018", "GunPoint", ".tsv",
                          "2\t0.5\t-1\t2\n1\t3\t4\tNaN\n", "1\t1\t1\t1\n2\t-2\t0\t2\n")
    x, y = data.load("ucr_archive", "train", root=tmp_path, problem="GunPoint").tensors
    x_test, y_test = data.load("ucr_archive", "test", root=tmp_path, problem="GunPoint").tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x, torch.tensor([[[0.5, -1.0, 2.0]], [[3.0, 4.0, 0.0]]]))  # NaN pad -> 0
    torch.testing.assert_close(x_test, torch.tensor([[[1.0, 1.0, 1.0]], [[-2.0, 0.0, 2.0]]]))
    assert y.tolist() == [1, 0] and y_test.tolist() == [0, 1]
    assert data.load("ucr", "train", root=tmp_path, problem="GunPoint").tensors[0].shape == (50, 1, 150)


UEA_HEADER = """# a comment line
@problemName Gait
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true walk run
@data
"""


def test_ucr_archive_reads_the_extracted_uea_zip_with_string_labels(tmp_path, offline):
    write_archive_problem(tmp_path, "Multivariate_ts", "Gait", ".ts",
                          UEA_HEADER + "1,2,3:4,5,6:walk\n0,0,0:1,2,1:run\n", UEA_HEADER + "3,2,1:6,5,4:run\n")
    x, y = data.load("ucr_archive", "train", root=tmp_path, problem="Gait").tensors
    x_test, y_test = data.load("ucr_archive", "test", root=tmp_path, problem="Gait").tensors
    torch.testing.assert_close(x, torch.tensor([[[1.0, 2, 3], [4, 5, 6]], [[0.0, 0, 0], [1, 2, 1]]]))
    assert x_test.shape == (1, 2, 3)
    assert y.tolist() == [1, 0] and y_test.tolist() == [0]  # "run" < "walk"
    normalised = data.load("ucr_archive", "train", root=tmp_path, problem="Gait", normalize="series").tensors[0]
    torch.testing.assert_close(normalised.mean(-1), torch.zeros(2, 2), atol=1e-6, rtol=0)  # per channel


def test_ucr_archive_missing_names_both_zips_the_password_and_the_folders(tmp_path, offline):
    with pytest.raises(data.DatasetNotAvailable) as raised:
        data.load("ucr_archive", "train", root=tmp_path, problem="GunPoint")  # bundled, but not for this entry
    message = str(raised.value)
    assert UCR_ARCHIVE_ZIP in message and UEA_ARCHIVE_ZIP in message and "unzip -P someone" in message
    assert str(tmp_path / "ucr" / "UCRArchive_2018" / "GunPoint" / "GunPoint_TRAIN.tsv") in message
    assert str(tmp_path / "ucr" / "Multivariate_ts" / "GunPoint" / "GunPoint_TRAIN.ts") in message
    assert "no sha256 is checked" in message


def test_motifs_are_deterministic_by_seed_with_shapes_and_balanced_labels(tmp_path):
    train = data.load("motifs", "train", root=tmp_path)
    again = data.load("motifs", "train", root=tmp_path)
    test = data.load("motifs", "test", root=tmp_path)
    other = data.load("motifs", "train", root=tmp_path, seed=1)
    x, y = train.tensors
    assert x.shape == (200, 1, 128) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, again.tensors[0]) and torch.equal(y, again.tensors[1])
    assert not torch.equal(x, test.tensors[0]) and not torch.equal(x, other.tensors[0])
    assert torch.bincount(y).tolist() == [50] * 4 and torch.bincount(test.tensors[1]).tolist() == [50] * 4
    small = data.load("motifs", "test", root=tmp_path, num_series=30, length=64, noise=0.5, num_classes=3)
    assert small.tensors[0].shape == (15, 1, 64) and torch.bincount(small.tensors[1]).tolist() == [5, 5, 5]


def test_motif_classes_differ_by_width_and_lobe_order(tmp_path):
    assert timeseries.motif_classes(4) == ((5, 1), (40, 1), (5, -1), (40, -1))
    assert timeseries.motif_classes(2) == ((5, 1), (40, 1))  # the two classes differ only by width
    for width in (5, 40):
        shape = timeseries.motif(width, 1)
        assert abs(shape.sum()) < 1e-9 and abs(np.linalg.norm(shape) - timeseries.MOTIF_NORM) < 1e-9
        np.testing.assert_allclose(timeseries.motif(width, -1), shape[::-1], atol=1e-12)  # lobes swapped
    # Without noise each series is zero except its class's motif, whose span is the class's width.
    x, y = data.load("motifs", "train", root=tmp_path, noise=0.0).tensors
    for series, label in zip(x[:, 0].numpy(), y.tolist(), strict=True):
        width, sign = timeseries.motif_classes(4)[label]
        start, end = np.flatnonzero(series)[[0, -1]]
        assert end - start + 1 == width
        np.testing.assert_allclose(series[start:end + 1], timeseries.motif(width, sign), atol=1e-6)


@pytest.mark.parametrize(("option", "value"), [("num_series", 401), ("num_series", 6), ("length", 39),
                                               ("noise", -0.1), ("num_classes", 5), ("seed", -1)])
def test_bad_motif_options_name_the_parameter(tmp_path, option, value):
    with pytest.raises(ValueError, match=f"{option}={value!r}"):
        data.load("motifs", "train", root=tmp_path, **{option: value})

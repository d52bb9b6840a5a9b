"""Chapter 4's paper path (the profile's 12-layer Conformer-lite CTC model on LibriSpeech train-clean-100 and
test-clean in their extracted layout) through a fast dev run on a generated fixture, its cost table over the
45 runs priced by the utterances each epoch keeps, the fixture's FLAC files, and a fixture with a wrong
layout refused naming the file expected."""

import math

import pytest

from dstlib import data, experiments
from dstlib.data.fixtures.librispeech import mean_seconds, write_librispeech_subset
from dstlib.experiments import scale

CHAPTER = experiments.module("dynamic_data_pruning")
# The paper profile's encoder (d = 256, 12 layers, feed-forward x4, depthwise kernel 15, 29 CTC labels): per layer
# two half feed-forwards 2 x (8d^2 + 7d), attention 4d^2 + 6d, convolution module 3d^2 + 23d, final norm 2d; the
# two stride-2 subsampling convs 40 x d x 3 + d and d x d x 3 + d; the head 29 d + 29.
D = 256
ASR_PARAMS = 12 * (23 * D * D + 45 * D) + (40 * D * 3 + D) + (D * D * 3 + D) + 29 * D + 29
FRAMES = 1270  # 10 ms log-mel frames of train-clean-100's mean utterance (12.69 s)


def test_paper_fast_dev_run_on_a_librispeech_fixture():
    result, table = scale.fast_dev_on_fixture(CHAPTER, workers=1)
    paper = experiments.resolve("dynamic_data_pruning", "paper")
    assert {CHAPTER.label(r["params"]).split(" ")[0] for r in result.records} == {"full", *paper.criteria}
    assert {r["params"]["drop"] for r in result.records} == {"none", *paper.drop_modes}
    assert all(r["params"]["fast_dev_run"] and r["config"]["dataset"] == "librispeech" for r in result.records)
    assert all(r["history"][-1]["flops_per_step"] > 0 and r["history"][-1]["step_time_s"] > 0
               for r in result.records)
    metrics = {CHAPTER.label(r["params"]): r["metrics"] for r in result.records}
    assert {m["params"] for m in metrics.values()} == {ASR_PARAMS} == {18_461_469}  # the full-size network
    assert all(m["test_utterances"] == 8 and m["utterances"] == 6 for m in metrics.values())  # 8 tested, 3 x 2 trained
    full = next(r for r in result.records if r["params"]["criterion"] == "full")
    assert full["metrics"]["frames"] == 6 * FRAMES  # utterances of the subset's mean length
    # every weight used per output frame (T' = T / 4) once forward and twice backward, attention on top
    ratio = full["history"][-1]["flops_per_step"] / (2 * 6 * ASR_PARAMS * math.ceil(FRAMES / 4))
    assert 1.0 < ratio < 1.5
    for mode in paper.drop_modes:  # time dropping removed 30% of the frames, and their FLOPs
        dropped = metrics[f"easy_to_hard 70% + {mode}"]
        assert dropped["frames"] == pytest.approx(0.7 * 6 * FRAMES, rel=0.01)
    assert table.iloc[-1]["runs"] == len(CHAPTER.points(paper)) == 3 * (1 + 4 * 3 + 2)
    assert experiments.judge(CHAPTER, result.frame).judged  # the analysis runs on the marked records


def test_paper_steps_count_the_utterances_each_epoch_keeps():
    paper = experiments.resolve("dynamic_data_pruning", "paper")
    # train-clean-100's 28,539 utterances, 100 epochs of batches of 64
    assert CHAPTER.paper_steps(paper, {"seed": 0, **CHAPTER.FULL}) == (100 * 446, 64)
    kept = {"seed": 0, "criterion": "easy_to_hard", "keep": 0.7, "drop": "chunk"}
    assert CHAPTER.paper_steps(paper, kept) == (100 * math.ceil(19_977 / 64), 64)
    assert sum(CHAPTER.paper_steps(paper, point)[0] for point in CHAPTER.points(paper)) == 1_447_200
    tutorial = experiments.resolve("dynamic_data_pruning", "tutorial")
    assert CHAPTER.train_utterances(tutorial) == 640  # at most max_train_utterances
    small = experiments.resolve("dynamic_data_pruning", "tutorial", num_utterances=800, max_train_utterances=10_000)
    assert CHAPTER.train_utterances(small) == 640  # 4 of the 5 voice families of 800 utterances


def test_fixture_flac_files_are_compressed_16_khz_utterances_with_a_transcript_each(tmp_path):
    import soundfile

    folder = write_librispeech_subset(tmp_path, "test-clean", speakers=1, per_speaker=2)
    files, transcripts = data.speech.librispeech_index(folder)
    assert [f.relative_to(folder).as_posix() for f in files] == [f"3000/300000/3000-300000-000{i}.flac" for i in (0, 1)]
    info = soundfile.info(files[0])
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, 1)
    assert info.frames == round(mean_seconds("test-clean") * 16000)
    assert files[0].stat().st_size < 2 * info.frames  # compressed, as the corpus's files are
    assert all(text.isupper() for text in transcripts)


def test_paper_fixture_with_a_wrong_layout_names_the_file_expected(tmp_path):
    CHAPTER.fixture(tmp_path)
    (tmp_path / "librispeech/LibriSpeech/train-clean-100/5001/500100/5001-500100-0002.flac").unlink()
    with scale.data_at(tmp_path), pytest.raises(FileNotFoundError,
                                                match=r"train-clean-100/5001/500100/5001-500100-0002\.flac does not "
                                                      r"exist, but 5001-500100\.trans\.txt lists"):
        scale.fast_dev_run(CHAPTER, "paper", out_dir=str(tmp_path / "results"), workers=1, progress=False)
    assert not (tmp_path / "results").exists()  # refused before any training


def test_a_subset_folder_without_transcripts_is_refused_naming_it(tmp_path):
    folder = tmp_path / "librispeech" / "LibriSpeech" / "test-clean"
    (folder / "3000" / "300000").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=rf"{folder} holds no <speaker>/<chapter>/"):
        data.load("librispeech", "test", root=tmp_path)

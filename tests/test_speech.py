"""Speech: eSpeak NG synthesis, the Slaney mel filterbank, log-mel, CTC characters and the datasets."""

import math
import re
import sys
import time
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import dstlib.data as data
from dstlib.data import speech
from dstlib.data.speech import (
    CharTokenizer,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    standardize_utterances,
    voice_family,
)
from dstlib.models import ctc_greedy_decode

SMALL = {"words": ("one", "two", "three"), "voices": ("en", "en-us", "en-GB-x-rp"), "rates": (140, 180),
         "pitches": (50,)}
FAMILIES = ("en", "en+f4", "en-US", "en-us+klatt", "en-us+f1", "en-US-nyc", "en-029")  # 4 families


# --- synthesis ---------------------------------------------------------------------------------------------
def test_words_last_a_plausible_time():
    with speech.ESpeak() as engine:
        assert engine.sample_rate == 22050
        for word in speech.DIGITS:
            samples = engine.synthesize(word, "en-us", 175, 50)
            assert samples.dtype == np.int16 and 0.2 <= len(samples) / engine.sample_rate <= 1.0, word
            assert np.abs(samples).max() > 1000


def test_each_engine_repeats_the_same_sequence_exactly():
    # One engine carries state between utterances; a fresh engine starts from the same state.
    sequence = [("seven", "en-us+klatt", 150, 30), ("three", "en-029", 200, 70), ("seven", "en", 120, 50)]
    with speech.ESpeak() as first, speech.ESpeak() as second:
        heard = [first.synthesize(*utterance) for utterance in sequence]
        assert all(np.array_equal(a, second.synthesize(*u)) for a, u in zip(heard, sequence, strict=True))


def test_voices_repeat_in_engines_opened_at_different_times():
    # Variants with `breath` (en+f3, en-us+f2) draw noise from a generator that espeak_Initialize seeds with
    # the time in seconds; ESpeak reseeds it with 0.
    heard = []
    for attempt in range(2):
        time.sleep(1.0 * attempt)
        with speech.ESpeak() as engine:
            heard.append([engine.synthesize("seven", voice, 160, 50) for voice in (*speech.VOICES, "en+f3")])
    assert all(np.array_equal(a, b) for a, b in zip(*heard, strict=True))


@pytest.mark.parametrize("voice", ["en-gb", "en+no-such-variant", "xx"])
def test_unknown_voices_are_named_in_the_error(voice):
    with pytest.raises(ValueError, match=re.escape(f"voice='{voice}'")):
        with speech.ESpeak() as engine:
            engine.check_voice(voice)


def test_resampling_keeps_a_tone_and_scales_the_length():
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 440 * t)
    out = speech.resample(tone, 22050, 16000)
    assert out.shape == (16000,)
    peak = np.argmax(np.abs(np.fft.rfft(out)))  # 1 s of signal: bin k is k Hz
    assert peak == 440


# --- mel filterbank ----------------------------------------------------------------------------------------
def test_slaney_mel_scale_anchor_points_and_inverse():
    hz = torch.tensor([0.0, 500.0, 1000.0, 6400.0], dtype=torch.float64)
    torch.testing.assert_close(hz_to_mel(hz), torch.tensor([0.0, 7.5, 15.0, 42.0], dtype=torch.float64))
    grid = torch.linspace(0, 11025, 200, dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(grid)), grid)


def test_filter_peaks_sit_on_the_bins_nearest_the_mel_centres():
    sample_rate, n_fft, n_mels = 16000, 400, 40
    filters = mel_filterbank(sample_rate, n_fft, n_mels)
    assert filters.shape == (n_mels, n_fft // 2 + 1)
    mels = hz_to_mel(torch.tensor([0.0, sample_rate / 2], dtype=torch.float64))
    centres = mel_to_hz(torch.linspace(float(mels[0]), float(mels[1]), n_mels + 2, dtype=torch.float64))[1:-1]
    bin_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    nearest = (bin_hz[None, :] - centres[:, None]).abs().argmin(dim=1)
    assert torch.equal(filters.argmax(dim=1), nearest)
    assert (filters >= 0).all()


def test_slaney_normalised_filters_have_unit_area_in_hz():
    filters = mel_filterbank(22050, 2048, 40)
    bin_width = 22050 / 2048
    area = filters.sum(dim=1) * bin_width
    wide = area[10:]  # filters spanning many bins; the narrowest ones are sampled too coarsely
    torch.testing.assert_close(wide, torch.ones_like(wide), atol=0.02, rtol=0)


def test_unnormalised_triangles_form_a_partition_of_unity():
    sample_rate, n_fft, n_mels, f_min, f_max = 16000, 512, 24, 300.0, 5000.0
    filters = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)
    mels = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = mel_to_hz(torch.linspace(float(mels[0]), float(mels[1]), n_mels + 2, dtype=torch.float64))
    heights = filters * ((edges[2:] - edges[:-2]) / 2)[:, None]  # undo the 2 / width scaling
    bin_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    inside = (bin_hz >= edges[1]) & (bin_hz <= edges[-2])
    torch.testing.assert_close(heights[:, inside].sum(0), torch.ones(int(inside.sum()), dtype=torch.float64))
    outside = (bin_hz <= f_min) | (bin_hz >= f_max)
    assert (filters[:, outside] == 0).all()


def test_log_mel_of_a_tone_peaks_in_the_band_centred_nearest_it():
    sample_rate, n_mels = 16000, 40
    t = torch.arange(sample_rate, dtype=torch.float32) / sample_rate
    mels = hz_to_mel(torch.tensor([0.0, sample_rate / 2], dtype=torch.float64))
    centres = mel_to_hz(torch.linspace(float(mels[0]), float(mels[1]), n_mels + 2, dtype=torch.float64))[1:-1]
    for frequency in (300.0, 1200.0, 3000.0):
        features = log_mel(torch.sin(2 * math.pi * frequency * t)[None], sample_rate, n_mels=n_mels)
        assert features.shape == (1, n_mels, 1 + sample_rate // 160)
        band = int(features[0].mean(dim=1).argmax())
        assert band == int((centres - frequency).abs().argmin()), frequency
        assert features.min() >= features.max() - 80.0 - 1e-4


def test_log_mel_keeps_batch_shape_dtype_and_rejects_integers():
    waveforms = torch.randn(2, 3, 1600, dtype=torch.float64)
    features = log_mel(waveforms, 16000)
    assert features.shape == (2, 3, 40, 11) and features.dtype == torch.float64
    with pytest.raises(ValueError, match="waveforms"):
        log_mel(torch.zeros(1600, dtype=torch.int16), 16000)


def test_standardized_utterances_have_zero_mean_unit_std_over_valid_frames_only():
    generator = torch.Generator().manual_seed(0)
    features = 20 * torch.randn(3, 5, 12, generator=generator) - 40
    features[1, 2] = -80.0  # a silent channel
    lengths = torch.tensor([12, 7, 2])
    out = standardize_utterances(features, lengths)
    for row, length in enumerate(lengths.tolist()):
        valid = out[row, :, :length]
        torch.testing.assert_close(valid.mean(dim=1), torch.zeros(5), atol=1e-5, rtol=0)
        expected_std = torch.ones(5)
        if row == 1:
            expected_std[2] = 0.0  # stays 0, no division by zero
        torch.testing.assert_close(valid.std(dim=1, unbiased=False), expected_std, atol=1e-4, rtol=0)
        assert (out[row, :, length:] == 0).all()
    # Longer padding, whatever it holds, changes nothing; standardising again changes nothing.
    padded = torch.cat([features, torch.full((3, 5, 9), 1e3)], dim=2)
    torch.testing.assert_close(standardize_utterances(padded, lengths)[:, :, :12], out)
    torch.testing.assert_close(standardize_utterances(out, lengths), out, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="lengths"):
        standardize_utterances(features, torch.tensor([12, 13, 2]))


# --- CTC characters ----------------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_decoding_a_best_path():
    tokenizer = CharTokenizer()
    assert len(tokenizer) == 29 and tokenizer.blank == 0
    ids = tokenizer.encode("It's nine")
    assert min(ids) >= 1 and max(ids) <= 28
    assert tokenizer.decode(ids) == "it's nine"
    assert tokenizer.encode("a z '") == [1, 27, 26, 27, 28]
    best_path = F.one_hot(torch.tensor([[0, 15, 15, 0, 15, 14, 14, 0, 27, 5]]), len(tokenizer)).float()
    assert tokenizer.decode(ctc_greedy_decode(best_path)[0]) == "oon e"
    assert tokenizer.decode([0, 8, 9, 0]) == "hi"  # blank padding is skipped
    with pytest.raises(ValueError, match="text"):
        tokenizer.encode("seven!")
    with pytest.raises(ValueError, match="ids"):
        tokenizer.decode([29])


# --- datasets ----------------------------------------------------------------------------------------------
def test_spoken_words_shapes_labels_and_voice_split(tmp_path):
    train = data.load("spoken_words", "train", root=tmp_path, test_fraction=0.34, **SMALL).tensors
    test = data.load("spoken_words", "test", root=tmp_path, test_fraction=0.34, **SMALL).tensors
    x, y = train
    assert x.dtype == torch.float32 and x.shape[:2] == (12, 40) and y.dtype == torch.int64
    assert test[0].shape == (6, 40, x.shape[2])  # one held-out family of one voice: 3 words x 2 rates
    assert y.bincount().tolist() == [4, 4, 4] and test[1].bincount().tolist() == [2, 2, 2]
    assert torch.isfinite(x).all()
    # Frames are 10 ms: the longest word lasts 0.2..1 s.
    assert 20 <= x.shape[2] <= 101


def test_voice_families_are_case_insensitive_base_names():
    families = [voice_family(voice) for voice in FAMILIES]
    assert families == ["en", "en", "en-us", "en-us", "en-us", "en-us-nyc", "en-029"]
    assert len({voice_family(voice) for voice in speech.VOICES}) == 5


@pytest.mark.parametrize("voices", [FAMILIES, speech.VOICES])
def test_held_out_families_have_no_voice_in_training(voices):
    num_families = len({voice_family(voice) for voice in voices})
    splits = set()
    for seed in range(6):
        test = speech.held_out_voices(voices, 0.3, seed)
        train = [voice for voice in voices if voice not in test]
        test_families, train_families = {voice_family(v) for v in test}, {voice_family(v) for v in train}
        assert len(test_families) == round(0.3 * num_families) and train
        assert not test_families & train_families, seed
        splits.add(test)
    assert len(splits) > 1  # the seed picks the families


def test_the_voice_split_holds_out_whole_families(tmp_path):
    options = {"words": ("one",), "voices": FAMILIES, "rates": (140,), "pitches": (50,), "test_fraction": 0.3}
    utterances = [("one", voice, 140, 50) for voice in FAMILIES]  # the loader's grid, in order
    every = speech.synthesize_features(utterances)[0]
    for seed in range(5):  # held out: families of one, two and three voices
        train = data.load("spoken_words", "train", root=tmp_path, seed=seed, **options).tensors[0]
        test = data.load("spoken_words", "test", root=tmp_path, seed=seed, **options).tensors[0]
        held_out = torch.tensor([voice in speech.held_out_voices(FAMILIES, 0.3, seed) for voice in FAMILIES])
        assert torch.equal(test, every[held_out]) and torch.equal(train, every[~held_out])


def test_the_voice_split_needs_two_families(tmp_path):
    one_family = {**SMALL, "voices": ("en-us", "en-US+f1", "en-us+klatt")}
    with pytest.raises(ValueError, match=re.escape(f"voices={one_family['voices']!r}: allowed voices of 2 families")):
        data.load("spoken_sentences", "train", root=tmp_path, num_utterances=4, **one_family)
    assert len(data.load("spoken_words", "test", root=tmp_path, split_by="random", **one_family)) == 4


def test_random_split_is_a_seeded_fraction_and_noise_depends_on_seed(tmp_path):
    def words(split, **options):
        return data.load("spoken_words", split, root=tmp_path, split_by="random", **SMALL, **options).tensors

    assert len(words("test", test_fraction=0.25)[1]) == round(0.25 * 18)
    assert len(words("train", test_fraction=0.25)[1]) == 18 - round(0.25 * 18)
    noisy, same, other = words("train", noise=0.5, seed=1), words("train", noise=0.5, seed=1), words(
        "train", noise=0.5, seed=2)
    assert torch.equal(noisy[0], same[0]) and not torch.equal(noisy[0], other[0])


def test_generation_is_deterministic_across_fresh_builds(tmp_path):
    first = data.load("spoken_words", "train", root=tmp_path / "a", **SMALL).tensors
    again = data.load("spoken_words", "train", root=tmp_path / "b", **SMALL).tensors
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    first = data.load("spoken_sentences", "test", root=tmp_path, num_utterances=6, **SMALL)

    def must_not_run(*args, **kwargs):
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(speech.corpora, "synthesize_features", must_not_run)
    again = data.load("spoken_sentences", "test", root=tmp_path, num_utterances=6, **SMALL)
    assert all(torch.equal(a, b) for a, b in zip(first.tensors, again.tensors, strict=True))


def test_sentences_are_standardized_per_utterance_after_the_noise(tmp_path):
    options = {**SMALL, "num_utterances": 6, "split_by": "random", "noise": 0.3}
    raw, raw_lengths, _, _ = data.load("spoken_sentences", "train", root=tmp_path, standardize=False,
                                       **options).tensors
    x, x_lengths, _, _ = data.load("spoken_sentences", "train", root=tmp_path, **options).tensors
    assert torch.equal(x_lengths, raw_lengths) and raw.min() < -20  # dB without standardisation
    torch.testing.assert_close(x, standardize_utterances(raw, raw_lengths))
    for row, length in enumerate(x_lengths.tolist()):
        torch.testing.assert_close(x[row, :, :length].mean(dim=1), torch.zeros(40), atol=1e-4, rtol=0)
        torch.testing.assert_close(x[row, :, :length].std(dim=1, unbiased=False), torch.ones(40), atol=1e-3, rtol=0)
        assert (x[row, :, length:] == 0).all()


def test_sentences_have_transcripts_lengths_and_train_with_ctc(tmp_path):
    options = {**SMALL, "num_utterances": 16, "max_words": 3, "split_by": "random"}
    dataset = data.load("spoken_sentences", "train", root=tmp_path, **options)
    x, x_lengths, targets, target_lengths = dataset.tensors
    assert x.shape[:2] == (13, 40) and int(x_lengths.max()) <= x.shape[2]
    tokenizer = CharTokenizer()
    for row in range(len(x)):
        spoken = tokenizer.decode(targets[row, : target_lengths[row]]).split(" ")
        assert 1 <= len(spoken) <= 3 and set(spoken) <= set(SMALL["words"])
        assert (targets[row, target_lengths[row]:] == 0).all()
        assert 0.2 * len(spoken) <= x_lengths[row] / 100 <= 1.0 * len(spoken)  # seconds, 10 ms frames
    features, lengths, padded, padded_lengths = next(iter(DataLoader(dataset, batch_size=4,
                                                                     collate_fn=speech.pad_ctc_batch)))
    assert features.shape[2] == int(lengths.max()) and padded.shape[1] == int(padded_lengths.max())
    log_probs = torch.randn(features.shape[2], 4, len(tokenizer)).log_softmax(-1)
    loss = F.ctc_loss(log_probs, padded, lengths, padded_lengths)
    assert torch.isfinite(loss)


@pytest.mark.parametrize(("option", "value"), [("words", ("one", "One")), ("words", ("one", "one")),
                                               ("voices", ("en-gb", "en")), ("rates", (60,)),
                                               ("pitches", (120,)), ("sample_rate", 44100), ("noise", -1),
                                               ("split_by", "speaker"), ("test_fraction", 1.0),
                                               ("n_mels", 4), ("seed", -3)])
def test_bad_options_name_the_parameter(tmp_path, option, value):
    with pytest.raises(ValueError, match=option.rstrip("s")):
        data.load("spoken_words", "train", root=tmp_path, **{**SMALL, option: value})


# --- LibriSpeech -------------------------------------------------------------------------------------------
def test_librispeech_without_soundfile_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # makes `import soundfile` fail
    with pytest.raises(ModuleNotFoundError, match="soundfile"):
        data.load("librispeech", "test", root=tmp_path)


def fake_soundfile(monkeypatch):
    module = types.ModuleType("soundfile")
    module.read = lambda path, dtype: (np.sin(np.arange(8000) / 5).astype(dtype), 16000)
    monkeypatch.setitem(sys.modules, "soundfile", module)


def test_missing_librispeech_archive_names_url_hash_and_destination(tmp_path, monkeypatch):
    fake_soundfile(monkeypatch)
    with pytest.raises(data.DatasetNotAvailable) as raised:
        data.load("librispeech", "test", root=tmp_path)
    remote = speech.LIBRISPEECH_FILES["test-clean"]
    message = str(raised.value)
    assert remote.url in message and remote.digest in message
    assert str(tmp_path / "librispeech" / "test-clean.tar.gz") in message


def test_extracted_librispeech_is_read_lazily_with_the_ctc_item_layout(tmp_path, monkeypatch):
    fake_soundfile(monkeypatch)
    chapter = tmp_path / "librispeech" / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    transcripts = "84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS\n"
    (chapter / "84-121123.trans.txt").write_text(transcripts)
    for utterance in ("0000", "0001"):
        (chapter / f"84-121123-{utterance}.flac").touch()  # read by the fake soundfile
    dataset = data.load("librispeech", "test", root=tmp_path, subset="dev-clean")
    assert len(dataset) == 2 and dataset.files[1].name == "84-121123-0001.flac"
    features, length, tokens, token_length = dataset[0]
    assert features.shape == (40, 51) and int(length) == 51
    assert CharTokenizer().decode(tokens) == "go do you hear" and int(token_length) == 14
    batch = speech.pad_ctc_batch([dataset[0], dataset[1]])
    assert batch[0].shape == (2, 40, 51) and batch[2].shape == (2, 14)
    with pytest.raises(ValueError, match="subset"):
        data.load("librispeech", "test", root=tmp_path, subset="train-other-960")


# --- package layout ----------------------------------------------------------------------------------------
def test_package_reexports_its_modules_and_registers_its_datasets():
    from dstlib.data.speech import corpora, features, librispeech, synthesis, text

    assert speech.ESpeak is synthesis.ESpeak and speech.log_mel is features.log_mel
    assert speech.CharTokenizer is text.CharTokenizer and speech.load_spoken_words is corpora.load_spoken_words
    assert speech.load_librispeech is librispeech.load_librispeech
    assert not hasattr(speech.CharTokenizer, "ctc_decode")  # one greedy decoder: dstlib.models.ctc_greedy_decode
    assert {"spoken_words", "spoken_sentences", "librispeech"} <= set(data.names())
    assert speech.features.window_and_hop(16000) == (400, 160)
    assert speech.standardize_utterances is features.standardize_utterances
    assert speech.held_out_voices is corpora.held_out_voices and speech.voice_family is corpora.voice_family

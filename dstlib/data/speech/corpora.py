"""Spoken corpora built offline with eSpeak NG, and their registry entries (cached under ``root/cache``).

* ``"spoken_words"``: every word x voice x rate x pitch, one utterance each, for keyword classification.
  ``TensorDataset(x, y)``: ``x: (N, n_mels, T)`` log-mel (dB) of waveforms zero-padded to the longest
  utterance, ``y: (N,)`` int64, the index of the word in ``words``.
* ``"spoken_sentences"``: random sequences of 1..``max_words`` words with character transcripts, for
  CTC speech recognition. ``TensorDataset(x, x_lengths, targets, target_lengths)``: ``x: (N, n_mels,
  T_max)``, ``x_lengths: (N,)`` valid frames, ``targets: (N, S_max)`` :class:`CharTokenizer` ids padded
  with the blank 0, ``target_lengths: (N,)``.

With ``standardize=True`` (the default of ``"spoken_sentences"``; ``"spoken_words"`` keeps dB by
default) each utterance's features, noise included, are brought to zero mean and unit variance per mel
channel over its valid frames, padding frames set to 0 (:func:`standardize_utterances`).

Splits (``split_by``): ``"voice"`` (default) holds out voice *families*, chosen with ``seed``
(:func:`held_out_voices`): ``round(test_fraction * F)`` of the ``F`` families in ``voices``, kept within
1..F-1, with all their voices; no voice of a held-out family is heard in training. The family of a voice
is its base name, the part before ``+``, lowercased (:func:`voice_family`; eSpeak voice names are
case-insensitive): one eSpeak voice file, i.e. one accent with its own phonemes, dictionary rules and
timing, while a ``+variant`` only changes the timbre (formants, pitch range). So ``"en-us"``,
``"en-US+f2"`` and ``"en-us+klatt"`` form the family ``"en-us"``, and ``"en-US-nyc"`` (its own voice
file and phoneme table) is a family of its own. The default :data:`VOICES` are 5 families of 2 voices,
no variant used in two families, so a held-out family is both an unseen accent and unseen timbres.
``"random"`` holds out a seeded ``test_fraction`` of the utterances. The clean audio is a fixed function
of the list of utterances (see :class:`ESpeak`), not of ``seed``; the split, the sentences and the added
noise depend on ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import DatasetSpec, cached, register
from dstlib.data.speech.features import log_mel, num_frames, standardize_utterances, window_and_hop
from dstlib.data.speech.synthesis import ESpeak, resample
from dstlib.data.speech.text import CharTokenizer

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# 5 families of a male and a female voice (en, en-us, en-gb-scotland, en-gb-x-rp, en-029), no variant in two
# families, none with `breath` (f2, f3, f5): eSpeak draws breath noise from a generator that espeak_Initialize
# seeds with the time in seconds, so those voices change from one run to the next.
VOICES = ("en", "en+f4", "en-us+klatt", "en-us+f1", "en-GB-scotland+m2", "en-GB-scotland+linda", "en-GB-x-rp+m3",
          "en-GB-x-rp+aunty", "en-029+m1", "en-029+Annie")
RATES = (120, 140, 160, 180, 200)
PITCHES = (30, 70)
SAMPLE_RATES = (8000, 16000, 22050)
SPLIT_BY = ("voice", "random")
_MAX_SEED = 2**63 - 1


def _is_word(word: object) -> bool:
    return isinstance(word, str) and bool(word.strip()) and set(word) <= set(CharTokenizer.characters)


def _check_options(words: Sequence[str], voices: Sequence[str], rates: Sequence[int], pitches: Sequence[int],
                   sample_rate: int, noise: float, seed: int, split_by: str, test_fraction: float,
                   n_mels: int, standardize: bool) -> None:
    checks.sequence("words", words, f"non-empty lowercase words of {CharTokenizer.characters!r}", _is_word,
                    distinct=True)
    checks.sequence("voices", voices, "eSpeak NG voice names", lambda voice: isinstance(voice, str), distinct=True)
    with ESpeak() as engine:
        for voice in voices:
            engine.check_voice(voice)
    checks.numbers("rates", rates, distinct=True, low=80, high=450, integer=True)
    checks.numbers("pitches", pitches, distinct=True, low=0, high=99, integer=True)
    checks.one_of("sample_rate", sample_rate, SAMPLE_RATES)
    checks.number("noise", noise, low=0, high=10)  # noise-to-signal RMS ratio
    checks.integer("seed", seed, low=0, high=_MAX_SEED)
    checks.one_of("split_by", split_by, SPLIT_BY)
    checks.number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
    checks.integer("n_mels", n_mels, low=8, high=128)
    checks.one_of("standardize", standardize, (True, False))


def synthesize_features(utterances: Sequence[tuple[str, str, int, int]], sample_rate: int = 16000,
                        noise: float = 0.0, seed: int = 0, n_mels: int = 40,
                        chunk: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Speak ``(text, voice, rate, pitch)`` utterances, in order, with one fresh :class:`ESpeak` and
    return their log-mel features.

    Waveforms are scaled to [-1, 1], zero-padded to the longest, resampled to ``sample_rate``, given
    white noise of RMS ``noise`` times their own RMS over their own length (seeded), and passed
    through :func:`log_mel` (25 ms window, 10 ms hop), ``chunk`` utterances at a time. Returns
    ``features (N, n_mels, T)`` float32 and the valid frame counts ``lengths (N,)`` int64.
    """
    generator = np.random.default_rng(seed)
    with ESpeak() as engine:
        spoken = [engine.synthesize(*utterance) for utterance in utterances]
        native_rate = engine.sample_rate
    samples = [math.ceil(len(audio) * sample_rate / native_rate) for audio in spoken]
    longest = max(len(audio) for audio in spoken)
    n_fft, hop = window_and_hop(sample_rate)
    features = []
    for start in range(0, len(spoken), chunk):
        padded = np.zeros((len(spoken[start:start + chunk]), longest), dtype=np.float32)
        for row, audio in enumerate(spoken[start:start + chunk]):
            padded[row, : len(audio)] = audio / 32768.0
        waveforms = resample(padded, native_rate, sample_rate).astype(np.float32)
        if noise:
            for row, length in enumerate(samples[start:start + chunk]):
                rms = np.sqrt(np.mean(waveforms[row, :length] ** 2))
                waveforms[row, :length] += noise * rms * generator.standard_normal(length, dtype=np.float32)
        features.append(log_mel(torch.from_numpy(waveforms), sample_rate, n_fft, hop, n_mels))
    lengths = torch.tensor([num_frames(length, hop) for length in samples], dtype=torch.int64)
    return torch.cat(features), lengths


def _held_out(count: int, test_fraction: float, seed: int) -> np.ndarray:
    """Indices ``(k,)`` of ``k = round(test_fraction * count)`` of ``count`` items, kept within 1..count-1
    so no split is empty, drawn with ``seed``."""
    generator = np.random.default_rng([seed, 1])
    return generator.permutation(count)[: min(max(1, round(test_fraction * count)), count - 1)]


def voice_family(voice: str) -> str:
    """The family of an eSpeak voice: its base name before ``+``, lowercased (``"en-US+f2"`` -> ``"en-us"``)."""
    return voice.partition("+")[0].lower()


def held_out_voices(voices: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> tuple[str, ...]:
    """The voices of the test split with ``split_by="voice"``, in the order of ``voices``: every voice of
    ``round(test_fraction * F)`` of the ``F`` :func:`voice_family` families (at least 1, at most F-1)."""
    families = list(dict.fromkeys(voice_family(voice) for voice in voices))
    checks.require(len(families) >= 2, "voices", voices, "voices of 2 families or more with split_by='voice' "
                   "(a family is the name before '+', case-insensitive: 'en' and 'en+f3' are one family)")
    chosen = {families[index] for index in _held_out(len(families), test_fraction, seed)}
    return tuple(voice for voice in voices if voice_family(voice) in chosen)


def _test_mask(voice_of: Sequence[str], held_out: tuple[str, ...] | None, test_fraction: float,
               seed: int) -> torch.Tensor:
    """Boolean ``(N,)``: which utterances (spoken by ``voice_of``) form the test split: those of the
    ``held_out`` voices (``split_by="voice"``), else a seeded ``test_fraction`` of them."""
    if held_out is not None:
        return torch.tensor([voice in held_out for voice in voice_of], dtype=torch.bool)
    mask = torch.zeros(len(voice_of), dtype=torch.bool)
    mask[_held_out(len(voice_of), test_fraction, seed)] = True
    return mask


def load_spoken_words(split: str, root: Path, download: bool = False, words: Sequence[str] = DIGITS,
                      voices: Sequence[str] = VOICES, rates: Sequence[int] = RATES,
                      pitches: Sequence[int] = PITCHES, sample_rate: int = 16000, noise: float = 0.0,
                      seed: int = 0, split_by: str = "voice", test_fraction: float = 0.2,
                      n_mels: int = 40, standardize: bool = False) -> TensorDataset:
    """Every word spoken by every voice at every rate and pitch (defaults: 10 x 10 x 5 x 2 = 1,000).

    ``x: (N, n_mels, T)`` float32 log-mel in dB (about -100..+30; standardise with train statistics),
    or with ``standardize`` each utterance standardised over its own frames, padding 0; ``y: (N,)``
    int64 index into ``words``. With the defaults the test split is 1 held-out family of 2 voices (200).
    """
    del download  # generated locally
    _check_options(words, voices, rates, pitches, sample_rate, noise, seed, split_by, test_fraction, n_mels,
                   standardize)
    held_out = held_out_voices(voices, test_fraction, seed) if split_by == "voice" else None
    grid = [(word, voice, rate, pitch) for word in words for voice in voices for rate in rates for pitch in pitches]

    def build() -> dict[str, torch.Tensor]:
        features, lengths = synthesize_features(grid, sample_rate, noise, seed, n_mels)
        if standardize:
            features = standardize_utterances(features, lengths)
        labels = torch.tensor([words.index(word) for word, _, _, _ in grid], dtype=torch.int64)
        test = _test_mask([voice for _, voice, _, _ in grid], held_out, test_fraction, seed)
        return {"train_x": features[~test], "train_y": labels[~test], "test_x": features[test],
                "test_y": labels[test]}

    params = {"words": list(words), "voices": list(voices), "rates": list(rates), "pitches": list(pitches),
              "sample_rate": sample_rate, "noise": noise, "seed": seed, "split_by": split_by,
              "test_fraction": test_fraction, "n_mels": n_mels, "standardize": standardize, "version": 2}
    tensors = cached("spoken_words", params, build, root)
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


def load_spoken_sentences(split: str, root: Path, download: bool = False, words: Sequence[str] = DIGITS,
                          voices: Sequence[str] = VOICES, rates: Sequence[int] = RATES,
                          pitches: Sequence[int] = PITCHES, num_utterances: int = 1000, max_words: int = 3,
                          sample_rate: int = 16000, noise: float = 0.0, seed: int = 0,
                          split_by: str = "voice", test_fraction: float = 0.2, n_mels: int = 40,
                          standardize: bool = True) -> TensorDataset:
    """``num_utterances`` random word sequences (1..``max_words`` words, voice, rate and pitch uniform).

    Returns ``TensorDataset(x (N, n_mels, T_max), x_lengths (N,), targets (N, S_max), target_lengths (N,))``
    for ``torch.nn.functional.ctc_loss`` (targets are :class:`CharTokenizer` ids, blank-padded);
    ``CharTokenizer().decode(targets[i, :target_lengths[i]])`` is the transcript. With ``standardize``
    (default) row ``i`` has zero mean and unit variance per mel channel over its ``x_lengths[i]`` frames
    and zeros after them; without it, log-mel in dB.
    """
    del download  # generated locally
    _check_options(words, voices, rates, pitches, sample_rate, noise, seed, split_by, test_fraction, n_mels,
                   standardize)
    checks.integer("num_utterances", num_utterances, low=2, high=100_000)
    checks.integer("max_words", max_words, low=1, high=100_000)
    held_out = held_out_voices(voices, test_fraction, seed) if split_by == "voice" else None

    def build() -> dict[str, torch.Tensor]:
        generator = np.random.default_rng([seed, 0])
        tokenizer, utterances, transcripts = CharTokenizer(), [], []
        for _ in range(num_utterances):
            count = generator.integers(1, max_words + 1)
            text = " ".join(words[index] for index in generator.integers(len(words), size=count))
            voice = voices[int(generator.integers(len(voices)))]
            rate, pitch = int(generator.choice(rates)), int(generator.choice(pitches))
            utterances.append((text, voice, rate, pitch))
            transcripts.append(tokenizer.encode(text))
        features, lengths = synthesize_features(utterances, sample_rate, noise, seed, n_mels)
        if standardize:
            features = standardize_utterances(features, lengths)
        target_lengths = torch.tensor([len(ids) for ids in transcripts], dtype=torch.int64)
        targets = torch.zeros(num_utterances, int(target_lengths.max()), dtype=torch.int64)
        for row, ids in enumerate(transcripts):
            targets[row, : len(ids)] = torch.tensor(ids)
        test = _test_mask([voice for _, voice, _, _ in utterances], held_out, test_fraction, seed)
        tensors = {}
        for part, rows in (("train", ~test), ("test", test)):
            tensors.update({f"{part}_x": features[rows], f"{part}_x_lengths": lengths[rows],
                            f"{part}_targets": targets[rows], f"{part}_target_lengths": target_lengths[rows]})
        return tensors

    params = {"words": list(words), "voices": list(voices), "rates": list(rates), "pitches": list(pitches),
              "num_utterances": num_utterances, "max_words": max_words, "sample_rate": sample_rate,
              "noise": noise, "seed": seed, "split_by": split_by, "test_fraction": test_fraction,
              "n_mels": n_mels, "standardize": standardize, "version": 2}
    tensors = cached("spoken_sentences", params, build, root)
    keys = ("x", "x_lengths", "targets", "target_lengths")
    return TensorDataset(*(tensors[f"{split}_{key}"] for key in keys))


register(DatasetSpec("spoken_words", load_spoken_words, "classification", None, None, True,
                     "words spoken by eSpeak NG voices at several rates and pitches (default: 10 digits, "
                     "1,000 utterances), log-mel features"))
register(DatasetSpec("spoken_sentences", load_spoken_sentences, "speech_recognition", None, None, True,
                     "1-3 word eSpeak NG utterances with character transcripts for CTC (default 1,000)"))

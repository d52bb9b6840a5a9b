"""Speech: words and digit "sentences" spoken by eSpeak NG, a torch log-mel front end, CTC characters.

Offline entries (generated, cached under ``root/cache``):

* ``"spoken_words"``: every word x voice x rate x pitch, one utterance each, for keyword classification.
  ``TensorDataset(x, y)``: ``x: (N, n_mels, T)`` log-mel (dB) of waveforms zero-padded to the longest
  utterance, ``y: (N,)`` int64, the index of the word in ``words``.
* ``"spoken_sentences"``: random sequences of 1..``max_words`` words with character transcripts, for
  CTC speech recognition. ``TensorDataset(x, x_lengths, targets, target_lengths)``: ``x: (N, n_mels,
  T_max)``, ``x_lengths: (N,)`` valid frames, ``targets: (N, S_max)`` :class:`CharTokenizer` ids padded
  with the blank 0, ``target_lengths: (N,)``.

Splits (``split_by``): ``"voice"`` (default) holds out ``round(test_fraction * len(voices))`` voices,
at least one, chosen with ``seed``: the test speakers are never heard in training. ``"random"`` holds
out a seeded ``test_fraction`` of the utterances. The clean audio is a fixed function of the list of
utterances (see :class:`ESpeak`), not of ``seed``; the split, the sentences and the added noise depend
on ``seed``.

Remote entry ``"librispeech"``: the OpenSLR archives (sha256-verified), read lazily into
:class:`SpeechUtterances` with the same item layout as ``"spoken_sentences"``; FLAC needs soundfile.

eSpeak NG is the pip package ``espeakng_loader`` (libespeak-ng 1.52 and its data, GPL-3) driven through
ctypes; 22,050 Hz int16 output is resampled to ``sample_rate`` with a polyphase filter.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from dstlib.data.registry import DatasetSpec, RemoteFile, cached, fetch, register

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en", "en-us", "en-GB-scotland", "en-GB-x-rp", "en-029", "en-US-nyc", "en+f3", "en-us+f2",
          "en-us+klatt", "en-GB-x-rp+m3")
RATES = (120, 140, 160, 180, 200)
PITCHES = (30, 70)
SAMPLE_RATES = (8000, 16000, 22050)
SPLIT_BY = ("voice", "random")

# ---------------------------------------------------------------------------------------------------
# eSpeak NG through ctypes (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when the data is missing
_PARAMETER_RATE, _PARAMETER_PITCH = 1, 3
_POSITION_CHARACTER = 1
_CHARS_UTF8 = 1
_ERRORS = {-1: "EE_INTERNAL_ERROR", 1: "EE_BUFFER_FULL", 2: "EE_NOT_FOUND"}
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class ESpeak:
    """A private instance of the libespeak-ng shipped by ``espeakng_loader``, in synchronous mode.

    eSpeak keeps state in C statics from one utterance to the next (the phase of its pitch flutter,
    for one), and ``espeak_Initialize`` does not reset it. Each ``ESpeak`` therefore loads its own copy
    of the library, so what it says depends only on what it said since it was opened: a fixed list of
    utterances always gives the same samples. Use as a context manager (``close`` unloads the copy).

    ``synthesize(text, voice, rate, pitch)`` returns mono int16 samples at :attr:`sample_rate` (22,050).
    Voices are names the library resolves (``"en"``, ``"en-us"``, ``"en-GB-scotland"``, ``"en-GB-x-rp"``,
    ``"en-029"``, ``"en-US-nyc"``; not ``"en-gb"``) optionally with a variant from ``voices/!v``
    (``"en+f3"``, ``"en-us+klatt"``).
    """

    def __init__(self) -> None:
        import espeakng_loader

        self._data = Path(espeakng_loader.get_data_path())
        self._folder = tempfile.TemporaryDirectory(prefix="dstlib-espeak-")
        private = Path(self._folder.name) / "libespeak-ng.so"
        shutil.copyfile(espeakng_loader.get_library_path(), private)
        lib = ctypes.CDLL(str(private))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self._lib = lib
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data).encode(),
                                                 _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate}) with data at {self._data}")
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def __enter__(self) -> ESpeak:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Terminate and unload this copy of the library."""
        import _ctypes

        if self._lib is not None:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
            self._lib = None
        self._folder.cleanup()

    def _collect(self, samples, count: int, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = continue synthesis

    def _check(self, code: int, call: str, voice: str) -> None:
        if code != 0:
            raise RuntimeError(f"{call} failed with {_ERRORS.get(code, code)} for voice {voice!r}")

    def check_voice(self, voice: str) -> None:
        """Raise ``ValueError`` naming ``voice`` unless the library knows its base and its variant exists."""
        base, _, variant = voice.partition("+")
        known = self._lib.espeak_SetVoiceByName(base.encode()) == 0
        if not known or (variant and not (self._data / "voices" / "!v" / variant).is_file()):
            raise ValueError(f"voice={voice!r} is not allowed; expected an eSpeak NG voice such as 'en', "
                             "'en-us', 'en-GB-scotland', 'en-GB-x-rp', 'en-029', 'en-US-nyc', optionally "
                             "with a variant from espeak-ng-data/voices/!v ('en+f3', 'en-us+klatt')")

    def synthesize(self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
        """``text`` spoken by ``voice`` at ``rate`` words per minute and ``pitch`` (0..99): int16 ``(L,)``."""
        lib = self._lib
        self._check(lib.espeak_SetVoiceByName(voice.encode()), "espeak_SetVoiceByName", voice)
        self._check(lib.espeak_SetParameter(_PARAMETER_RATE, rate, 0), "espeak_SetParameter(rate)", voice)
        self._check(lib.espeak_SetParameter(_PARAMETER_PITCH, pitch, 0), "espeak_SetParameter(pitch)", voice)
        encoded = text.encode() + b"\0"
        self._chunks = []
        code = lib.espeak_Synth(encoded, len(encoded), 0, _POSITION_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._check(code, "espeak_Synth", voice)
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)


def resample(waveform: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``, Kaiser window) of ``(..., L)`` float samples."""
    if orig_rate == new_rate:
        return waveform
    from scipy.signal import resample_poly

    common = math.gcd(orig_rate, new_rate)
    return resample_poly(waveform, new_rate // common, orig_rate // common, axis=-1)


# ---------------------------------------------------------------------------------------------------
# Log-mel front end (Slaney mel scale and area normalisation, as librosa's defaults)
_SLANEY_HZ_PER_MEL = 200.0 / 3.0  # linear part: 3 mels per 200 Hz below 1 kHz
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # log part: 27 mels per factor 6.4 above 1 kHz


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz (15 mel at 1 kHz), logarithmic above (42 mel at 6.4 kHz)."""
    linear = hz / _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL + torch.log(hz.clamp(min=_SLANEY_BREAK_HZ)
                                                                    / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return torch.where(hz >= _SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_BREAK_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - break_mel))
    return torch.where(mel >= break_mel, logarithmic, mel * _SLANEY_HZ_PER_MEL)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular mel filters ``(n_mels, n_fft // 2 + 1)`` float64 for a one-sided power spectrum.

    Filter ``m`` rises from edge ``m`` to centre ``m + 1`` and falls to edge ``m + 2``, the ``n_mels + 2``
    edges equally spaced in mel between ``f_min`` and ``f_max`` (default Nyquist). Slaney area
    normalisation scales each triangle by ``2 / (upper edge - lower edge)`` so each has unit area in Hz.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"f_min={f_min!r}, f_max={f_max!r} are not allowed; expected 0 <= f_min < f_max <= "
                         f"sample_rate / 2 = {sample_rate / 2}")
    bin_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_range = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = mel_to_hz(torch.linspace(float(mel_range[0]), float(mel_range[1]), n_mels + 2,
                                     dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    triangles = torch.minimum(rising, falling).clamp(min=0.0)
    return triangles * (2.0 / (upper - lower))


def num_frames(num_samples: int | torch.Tensor, hop: int = 160) -> int | torch.Tensor:
    """Frames :func:`log_mel` gives for ``num_samples`` samples (centred frames: ``1 + L // hop``)."""
    return 1 + num_samples // hop


def log_mel(waveforms: torch.Tensor, sample_rate: int, n_fft: int = 400, hop: int = 160, n_mels: int = 40,
            top_db: float | None = 80.0) -> torch.Tensor:
    """Log-mel power spectrogram in dB: ``(..., L)`` -> ``(..., n_mels, 1 + L // hop)``.

    Hann window of ``n_fft`` samples (25 ms at 16 kHz), hop ``hop`` (10 ms), centred frames with
    reflection padding (so ``L`` must exceed ``n_fft // 2``); power ``|STFT|^2`` through
    :func:`mel_filterbank`; ``10 log10(max(power, 1e-10))``, then, per waveform, values more than
    ``top_db`` below its maximum are raised to that floor (librosa's ``power_to_db`` convention).
    Runs on the device and in the float dtype of ``waveforms``.
    """
    if not torch.is_floating_point(waveforms) or waveforms.shape[-1] <= n_fft // 2:
        raise ValueError(f"waveforms of dtype {waveforms.dtype} and shape {tuple(waveforms.shape)} are not "
                         f"allowed; expected floating point samples, longer than n_fft // 2 = {n_fft // 2}")
    batch_shape = waveforms.shape[:-1]
    flat = waveforms.reshape(-1, waveforms.shape[-1])
    window = torch.hann_window(n_fft, dtype=flat.dtype, device=flat.device)
    spectrum = torch.stft(flat, n_fft, hop_length=hop, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
    filters = mel_filterbank(sample_rate, n_fft, n_mels).to(device=flat.device, dtype=flat.dtype)
    decibels = 10.0 * torch.log10((filters @ spectrum.abs().square()).clamp(min=1e-10))
    if top_db is not None:
        decibels = torch.maximum(decibels, decibels.amax(dim=(-2, -1), keepdim=True) - top_db)
    return decibels.reshape(*batch_shape, n_mels, decibels.shape[-1])


# ---------------------------------------------------------------------------------------------------
# Characters for CTC
class CharTokenizer:
    """Character ids for CTC: 0 is the blank, 1..26 are ``a``..``z``, 27 is space, 28 the apostrophe.

    ``encode`` lowercases and rejects other characters; ``decode`` skips blanks; ``ctc_decode`` turns a
    frame-wise best path into text (merge repeats, then drop blanks).
    """

    blank = 0
    characters = "abcdefghijklmnopqrstuvwxyz '"

    def __init__(self) -> None:
        self._ids = {character: index + 1 for index, character in enumerate(self.characters)}

    def __len__(self) -> int:
        return len(self.characters) + 1

    def encode(self, text: str) -> list[int]:
        """``"Hi there"`` -> ``[8, 9, 27, 20, 8, 5, 18, 5]``."""
        unknown = sorted(set(text.lower()) - set(self._ids))
        if unknown:
            raise ValueError(f"text={text!r} is not allowed: characters {unknown} are not in "
                             f"{self.characters!r}")
        return [self._ids[character] for character in text.lower()]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids back to text, blanks skipped."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if any(not 0 <= value < len(self) for value in values):
            raise ValueError(f"ids={values!r} are not allowed; expected integers in 0..{len(self) - 1}")
        return "".join(self.characters[value - 1] for value in values if value != self.blank)

    def ctc_decode(self, best_path: Sequence[int] | torch.Tensor) -> str:
        """Greedy CTC: ``[0, 8, 8, 0, 9, 9]`` -> ``"hi"`` (repeats merged first, then blanks removed)."""
        values = best_path.tolist() if isinstance(best_path, torch.Tensor) else list(best_path)
        merged = [value for index, value in enumerate(values) if index == 0 or value != values[index - 1]]
        return self.decode(merged)


def pad_ctc_batch(items: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collate ``(features (n_mels, T), T, tokens (S,), S)`` items, padded or not, for CTC.

    Returns ``features (B, n_mels, T_max)`` zero-padded (or trimmed) to the batch's longest valid
    length, ``lengths (B,)``, ``targets (B, S_max)`` padded with the blank 0 and ``target_lengths (B,)``.
    Use as ``DataLoader(..., collate_fn=pad_ctc_batch)`` for both ``spoken_sentences`` and ``librispeech``.
    """
    lengths = torch.stack([torch.as_tensor(item[1], dtype=torch.int64) for item in items])
    target_lengths = torch.stack([torch.as_tensor(item[3], dtype=torch.int64) for item in items])
    first = items[0][0]
    features = first.new_zeros(len(items), first.shape[0], int(lengths.max()))
    targets = torch.zeros(len(items), int(target_lengths.max()), dtype=torch.int64)
    for row, (feature, length, tokens, target_length) in enumerate(items):
        features[row, :, :length] = feature[:, :length]
        targets[row, :target_length] = tokens[:target_length]
    return features, lengths, targets, target_lengths


# ---------------------------------------------------------------------------------------------------
# Synthesised datasets
def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _is_distinct_list(values: object) -> bool:
    return isinstance(values, list | tuple) and len(values) > 0 and len(set(values)) == len(values)


def _check_options(words: Sequence[str], voices: Sequence[str], rates: Sequence[int], pitches: Sequence[int],
                   sample_rate: int, noise: float, seed: int, split_by: str, test_fraction: float,
                   n_mels: int) -> None:
    characters = set(CharTokenizer.characters)
    if not _is_distinct_list(words) or any(not isinstance(word, str) or not word.strip()
                                           or set(word) - characters for word in words):
        raise ValueError(f"words={words!r} is not allowed; expected distinct non-empty lowercase words of "
                         f"{CharTokenizer.characters!r}")
    if not _is_distinct_list(voices) or not all(isinstance(voice, str) for voice in voices):
        raise ValueError(f"voices={voices!r} is not allowed; expected distinct eSpeak NG voice names")
    with ESpeak() as engine:
        for voice in voices:
            engine.check_voice(voice)
    for name, values, low, high in (("rates", rates, 80, 450), ("pitches", pitches, 0, 99)):
        if not _is_distinct_list(values) or not all(_is_int(value, low, high) for value in values):
            raise ValueError(f"{name}={values!r} is not allowed; expected distinct integers in {low}..{high}")
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"sample_rate={sample_rate!r} is not allowed; "
                         f"allowed: {', '.join(map(str, SAMPLE_RATES))}")
    if not _is_number(noise, 0, 10):
        raise ValueError(f"noise={noise!r} is not allowed; expected a noise-to-signal RMS ratio in [0, 10]")
    if not _is_int(seed, 0, 2**63 - 1):
        raise ValueError(f"seed={seed!r} is not allowed; expected an integer >= 0")
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by={split_by!r} is not allowed; allowed: {', '.join(SPLIT_BY)}")
    if split_by == "voice" and len(voices) < 2:
        raise ValueError(f"voices={voices!r} is not allowed with split_by='voice'; expected 2 voices or more")
    if not _is_number(test_fraction, 0, 1) or test_fraction in (0, 1):
        raise ValueError(f"test_fraction={test_fraction!r} is not allowed; expected a number in (0, 1)")
    if not _is_int(n_mels, 8, 128):
        raise ValueError(f"n_mels={n_mels!r} is not allowed; expected an integer in 8..128")


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
    n_fft, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
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


def _test_mask(voice_of: np.ndarray, num_voices: int, split_by: str, test_fraction: float,
               seed: int) -> np.ndarray:
    """Boolean ``(N,)``: which utterances (with voice indices ``voice_of``) form the test split.

    ``round(test_fraction * count)`` voices or utterances, kept within 1..count-1 so no split is empty.
    """
    generator = np.random.default_rng([seed, 1])
    count = num_voices if split_by == "voice" else len(voice_of)
    chosen = generator.permutation(count)[: min(max(1, round(test_fraction * count)), count - 1)]
    if split_by == "voice":
        return np.isin(voice_of, chosen)
    mask = np.zeros(len(voice_of), dtype=bool)
    mask[chosen] = True
    return mask


def load_spoken_words(split: str, root: Path, download: bool = False, words: Sequence[str] = DIGITS,
                      voices: Sequence[str] = VOICES, rates: Sequence[int] = RATES,
                      pitches: Sequence[int] = PITCHES, sample_rate: int = 16000, noise: float = 0.0,
                      seed: int = 0, split_by: str = "voice", test_fraction: float = 0.2,
                      n_mels: int = 40) -> TensorDataset:
    """Every word spoken by every voice at every rate and pitch (defaults: 10 x 10 x 5 x 2 = 1,000).

    ``x: (N, n_mels, T)`` float32 log-mel in dB (about -100..+30; standardise with train statistics),
    ``y: (N,)`` int64 index into ``words``. With the defaults the test split is 2 held-out voices (200).
    """
    del download  # generated locally
    _check_options(words, voices, rates, pitches, sample_rate, noise, seed, split_by, test_fraction, n_mels)
    grid = [(word_index, voice_index, rate, pitch) for word_index in range(len(words))
            for voice_index in range(len(voices)) for rate in rates for pitch in pitches]

    def build() -> dict[str, torch.Tensor]:
        features, _ = synthesize_features([(words[w], voices[v], rate, pitch) for w, v, rate, pitch in grid],
                                          sample_rate, noise, seed, n_mels)
        labels = torch.tensor([w for w, _, _, _ in grid], dtype=torch.int64)
        test = torch.from_numpy(_test_mask(np.array([v for _, v, _, _ in grid]), len(voices), split_by,
                                           test_fraction, seed))
        return {"train_x": features[~test], "train_y": labels[~test], "test_x": features[test],
                "test_y": labels[test]}

    params = {"words": list(words), "voices": list(voices), "rates": list(rates), "pitches": list(pitches),
              "sample_rate": sample_rate, "noise": noise, "seed": seed, "split_by": split_by,
              "test_fraction": test_fraction, "n_mels": n_mels, "version": 1}
    tensors = cached("spoken_words", params, build, root)
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


def load_spoken_sentences(split: str, root: Path, download: bool = False, words: Sequence[str] = DIGITS,
                          voices: Sequence[str] = VOICES, rates: Sequence[int] = RATES,
                          pitches: Sequence[int] = PITCHES, num_utterances: int = 1000, max_words: int = 3,
                          sample_rate: int = 16000, noise: float = 0.0, seed: int = 0,
                          split_by: str = "voice", test_fraction: float = 0.2,
                          n_mels: int = 40) -> TensorDataset:
    """``num_utterances`` random word sequences (1..``max_words`` words, voice, rate and pitch uniform).

    Returns ``TensorDataset(x (N, n_mels, T_max), x_lengths (N,), targets (N, S_max), target_lengths (N,))``
    for ``torch.nn.functional.ctc_loss`` (targets are :class:`CharTokenizer` ids, blank-padded);
    ``CharTokenizer().decode(targets[i, :target_lengths[i]])`` is the transcript.
    """
    del download  # generated locally
    _check_options(words, voices, rates, pitches, sample_rate, noise, seed, split_by, test_fraction, n_mels)
    for name, value, low in (("num_utterances", num_utterances, 2), ("max_words", max_words, 1)):
        if not _is_int(value, low, 100_000):
            raise ValueError(f"{name}={value!r} is not allowed; expected an integer in {low}..100000")

    def build() -> dict[str, torch.Tensor]:
        generator = np.random.default_rng([seed, 0])
        tokenizer, utterances, voice_of, transcripts = CharTokenizer(), [], [], []
        for _ in range(num_utterances):
            count = generator.integers(1, max_words + 1)
            text = " ".join(words[index] for index in generator.integers(len(words), size=count))
            voice = int(generator.integers(len(voices)))
            rate, pitch = int(generator.choice(rates)), int(generator.choice(pitches))
            utterances.append((text, voices[voice], rate, pitch))
            voice_of.append(voice)
            transcripts.append(tokenizer.encode(text))
        features, lengths = synthesize_features(utterances, sample_rate, noise, seed, n_mels)
        target_lengths = torch.tensor([len(ids) for ids in transcripts], dtype=torch.int64)
        targets = torch.zeros(num_utterances, int(target_lengths.max()), dtype=torch.int64)
        for row, ids in enumerate(transcripts):
            targets[row, : len(ids)] = torch.tensor(ids)
        test = torch.from_numpy(_test_mask(np.array(voice_of), len(voices), split_by, test_fraction, seed))
        tensors = {}
        for part, rows in (("train", ~test), ("test", test)):
            tensors.update({f"{part}_x": features[rows], f"{part}_x_lengths": lengths[rows],
                            f"{part}_targets": targets[rows], f"{part}_target_lengths": target_lengths[rows]})
        return tensors

    params = {"words": list(words), "voices": list(voices), "rates": list(rates), "pitches": list(pitches),
              "num_utterances": num_utterances, "max_words": max_words, "sample_rate": sample_rate,
              "noise": noise, "seed": seed, "split_by": split_by, "test_fraction": test_fraction,
              "n_mels": n_mels, "version": 1}
    tensors = cached("spoken_sentences", params, build, root)
    keys = ("x", "x_lengths", "targets", "target_lengths")
    return TensorDataset(*(tensors[f"{split}_{key}"] for key in keys))


# ---------------------------------------------------------------------------------------------------
# LibriSpeech (real, downloaded)
_LIBRISPEECH_SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
}
LIBRISPEECH_FILES = {subset: RemoteFile(f"https://www.openslr.org/resources/12/{subset}.tar.gz", digest,
                                        f"{subset}.tar.gz") for subset, digest in _LIBRISPEECH_SHA256.items()}
LIBRISPEECH_DEFAULT_SUBSET = {"train": "train-clean-100", "test": "test-clean"}
LIBRISPEECH_SAMPLE_RATE = 16000


class SpeechUtterances(Dataset):
    """Audio files with transcripts, featurised when read.

    Item ``i``: ``(features (n_mels, T) float32, T, tokens (S,) int64, S)`` with ``T`` and ``S`` as 0-d
    int64 tensors, the layout of ``spoken_sentences`` rows; batch with :func:`pad_ctc_batch`.
    ``read_audio(path) -> (samples float (L,), sample_rate)``.
    """

    def __init__(self, files: Sequence[Path], transcripts: Sequence[str],
                 read_audio: Callable[[Path], tuple[np.ndarray, int]], n_mels: int = 40) -> None:
        if len(files) != len(transcripts):
            raise ValueError(f"{len(files)} files but {len(transcripts)} transcripts; expected one each")
        self.files, self.transcripts = list(files), list(transcripts)
        self.read_audio, self.n_mels, self.tokenizer = read_audio, n_mels, CharTokenizer()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        samples, sample_rate = self.read_audio(self.files[index])
        n_fft, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
        waveform = torch.as_tensor(samples, dtype=torch.float32)
        features = log_mel(waveform, sample_rate, n_fft, hop, self.n_mels)
        tokens = torch.tensor(self.tokenizer.encode(self.transcripts[index]), dtype=torch.int64)
        return features, torch.tensor(features.shape[-1]), tokens, torch.tensor(len(tokens))


def librispeech_index(folder: Path) -> tuple[list[Path], list[str]]:
    """FLAC paths and transcripts of an extracted LibriSpeech subset (``<speaker>/<chapter>/*.trans.txt``)."""
    files, transcripts = [], []
    for listing in sorted(Path(folder).glob("*/*/*.trans.txt")):
        for line in listing.read_text().splitlines():
            if line.strip():
                utterance, _, text = line.strip().partition(" ")
                files.append(listing.parent / f"{utterance}.flac")
                transcripts.append(text)
    return files, transcripts


def _soundfile_reader() -> Callable[[Path], tuple[np.ndarray, int]]:
    try:
        import soundfile
    except ImportError as error:
        raise ModuleNotFoundError("reading LibriSpeech FLAC files needs soundfile, which is not installed: "
                                  "pip install soundfile==0.14.0") from error
    return lambda path: soundfile.read(path, dtype="float32")


def _extract(archive: Path, destination: Path) -> None:
    """Unpack ``archive`` into a temporary folder beside ``destination``, then rename it into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent) as scratch:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(scratch, filter="data")
        os.replace(Path(scratch) / "LibriSpeech" / destination.name, destination)


def load_librispeech(split: str, root: Path, download: bool = False, subset: str | None = None,
                     n_mels: int = 40) -> SpeechUtterances:
    """A LibriSpeech subset (default: train-clean-100 for ``"train"``, test-clean for ``"test"``).

    Uses ``root/librispeech/LibriSpeech/<subset>/`` if already extracted, else the archive
    ``root/librispeech/<subset>.tar.gz`` (sha256-checked; fetched only with ``download=True``), unpacked
    once. Returns a lazily read :class:`SpeechUtterances` (16 kHz, 25 ms / 10 ms log-mel, transcripts
    as :class:`CharTokenizer` ids). Reading FLAC needs ``soundfile`` (not in requirements.txt).
    """
    subset = LIBRISPEECH_DEFAULT_SUBSET[split] if subset is None else subset
    if subset not in LIBRISPEECH_FILES:
        raise ValueError(f"subset={subset!r} is not allowed; allowed: {', '.join(LIBRISPEECH_FILES)}")
    if not _is_int(n_mels, 8, 128):
        raise ValueError(f"n_mels={n_mels!r} is not allowed; expected an integer in 8..128")
    read_audio = _soundfile_reader()
    folder = Path(root) / "librispeech" / "LibriSpeech" / subset
    if not folder.is_dir():
        _extract(fetch("librispeech", LIBRISPEECH_FILES[subset], root, download), folder)
    files, transcripts = librispeech_index(folder)
    return SpeechUtterances(files, transcripts, read_audio, n_mels)


register(DatasetSpec("spoken_words", load_spoken_words, "classification", None, None, True,
                     "words spoken by eSpeak NG voices at several rates and pitches (default: 10 digits, "
                     "1,000 utterances), log-mel features"))
register(DatasetSpec("spoken_sentences", load_spoken_sentences, "speech_recognition", None, None, True,
                     "1-3 word eSpeak NG utterances with character transcripts for CTC (default 1,000)"))
register(DatasetSpec("librispeech", load_librispeech, "speech_recognition", None, None, False,
                     "LibriSpeech (OpenSLR 12) subsets, read lazily; needs soundfile",
                     tuple(LIBRISPEECH_FILES.values())))

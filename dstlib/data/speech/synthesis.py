"""eSpeak NG through ctypes, and polyphase resampling of what it says.

eSpeak NG is the pip package ``espeakng_loader`` (libespeak-ng 1.52 and its data, GPL-3) driven through
ctypes (``speak_lib.h``); it speaks 22,050 Hz int16 samples, which :func:`resample` brings to other rates.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from dstlib import checks

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
    of the library, and seeds its noise generator (breath, in variants such as ``+f3``) with 0, so what it
    says depends only on what it said since it was opened: a fixed list of utterances always gives the
    same samples. Use as a context manager (``close`` unloads the copy).

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
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib = lib
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data).encode(),
                                                 _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate}) with data at {self._data}")
        lib.espeak_ng_SetRandSeed(0)  # espeak_Initialize seeds the breath noise of variants with the clock
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
        checks.require(known and (not variant or (self._data / "voices" / "!v" / variant).is_file()), "voice",
                       voice, "an eSpeak NG voice such as 'en', 'en-us', 'en-GB-scotland', 'en-GB-x-rp', "
                       "'en-029', 'en-US-nyc', optionally with a variant from espeak-ng-data/voices/!v "
                       "('en+f3', 'en-us+klatt')")

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

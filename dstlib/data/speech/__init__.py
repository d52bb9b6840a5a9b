"""Speech: words and digit "sentences" spoken by eSpeak NG, a torch log-mel front end, CTC characters.

One module per concept; everything is importable from ``dstlib.data.speech`` as well:

* :mod:`~dstlib.data.speech.synthesis`: :class:`ESpeak` (the pip-installed eSpeak NG library through
  ctypes) and :func:`resample`.
* :mod:`~dstlib.data.speech.features`: the Slaney mel filterbank, :func:`log_mel`, :func:`num_frames`,
  :func:`standardize_utterances`.
* :mod:`~dstlib.data.speech.text`: :class:`CharTokenizer` (ids <-> text) and :func:`pad_ctc_batch`.
  Greedy CTC decoding of model outputs is :func:`dstlib.models.ctc_greedy_decode`.
* :mod:`~dstlib.data.speech.corpora`: the offline registry entries ``"spoken_words"`` and
  ``"spoken_sentences"``, synthesised, featurised and cached; :func:`voice_family` and
  :func:`held_out_voices`, their split by voice family.
* :mod:`~dstlib.data.speech.librispeech`: the remote registry entry ``"librispeech"``, read lazily.

Importing this package registers the three datasets.
"""

from dstlib.data.speech.corpora import (
    DIGITS,
    PITCHES,
    RATES,
    SAMPLE_RATES,
    SPLIT_BY,
    VOICES,
    held_out_voices,
    load_spoken_sentences,
    load_spoken_words,
    synthesize_features,
    voice_family,
)
from dstlib.data.speech.features import (
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    num_frames,
    standardize_utterances,
    window_and_hop,
)
from dstlib.data.speech.librispeech import (
    LIBRISPEECH_DEFAULT_SUBSET,
    LIBRISPEECH_FILES,
    LIBRISPEECH_SAMPLE_RATE,
    SpeechUtterances,
    librispeech_index,
    load_librispeech,
)
from dstlib.data.speech.synthesis import ESpeak, resample
from dstlib.data.speech.text import CharTokenizer, pad_ctc_batch

__all__ = [
    "DIGITS",
    "LIBRISPEECH_DEFAULT_SUBSET",
    "LIBRISPEECH_FILES",
    "LIBRISPEECH_SAMPLE_RATE",
    "PITCHES",
    "RATES",
    "SAMPLE_RATES",
    "SPLIT_BY",
    "VOICES",
    "CharTokenizer",
    "ESpeak",
    "SpeechUtterances",
    "held_out_voices",
    "hz_to_mel",
    "librispeech_index",
    "load_librispeech",
    "load_spoken_sentences",
    "load_spoken_words",
    "log_mel",
    "mel_filterbank",
    "mel_to_hz",
    "num_frames",
    "pad_ctc_batch",
    "resample",
    "standardize_utterances",
    "synthesize_features",
    "voice_family",
    "window_and_hop",
]

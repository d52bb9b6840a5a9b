"""LibriSpeech (OpenSLR 12), real and downloaded: sha256-verified archives read lazily into
:class:`SpeechUtterances`, with the item layout of ``"spoken_sentences"``; FLAC is read by soundfile."""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dstlib import checks
from dstlib.data.registry import DatasetSpec, RemoteFile, fetch, register
from dstlib.data.speech.features import log_mel, window_and_hop
from dstlib.data.speech.text import CharTokenizer

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
# Utterances of every subset (the corpus's own listings, as published with OpenSLR 12's mirrors, e.g. the
# openslr/librispeech_asr dataset card) and its hours of speech (Panayotov et al. 2015, Table 1).
LIBRISPEECH_UTTERANCES = {"dev-clean": 2_703, "dev-other": 2_864, "test-clean": 2_620, "test-other": 2_939,
                          "train-clean-100": 28_539, "train-clean-360": 104_014, "train-other-500": 148_688}
LIBRISPEECH_HOURS = {"dev-clean": 5.4, "dev-other": 5.3, "test-clean": 5.4, "test-other": 5.1,
                     "train-clean-100": 100.6, "train-clean-360": 363.6, "train-other-500": 496.7}


class SpeechUtterances(Dataset):
    """Audio files with transcripts, featurised when read.

    Item ``i``: ``(features (n_mels, T) float32, T, tokens (S,) int64, S)`` with ``T`` and ``S`` as 0-d
    int64 tensors, the layout of ``spoken_sentences`` rows; batch with :func:`pad_ctc_batch`.
    ``read_audio(path) -> (samples float (L,), sample_rate)``.
    """

    def __init__(self, files: Sequence[Path], transcripts: Sequence[str],
                 read_audio: Callable[[Path], tuple[np.ndarray, int]], n_mels: int = 40) -> None:
        checks.require(len(transcripts) == len(files), "len(transcripts)", len(transcripts),
                       f"one transcript per file ({len(files)})")
        self.files, self.transcripts = list(files), list(transcripts)
        self.read_audio, self.n_mels, self.tokenizer = read_audio, n_mels, CharTokenizer()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        samples, sample_rate = self.read_audio(self.files[index])
        n_fft, hop = window_and_hop(sample_rate)
        waveform = torch.as_tensor(samples, dtype=torch.float32)
        features = log_mel(waveform, sample_rate, n_fft, hop, self.n_mels)
        tokens = torch.tensor(self.tokenizer.encode(self.transcripts[index]), dtype=torch.int64)
        return features, torch.tensor(features.shape[-1]), tokens, torch.tensor(len(tokens))


def librispeech_index(folder: Path) -> tuple[list[Path], list[str]]:
    """FLAC paths and transcripts of an extracted LibriSpeech subset: every line ``<utterance> <TEXT>`` of
    every ``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt``, whose ``<utterance>.flac`` lies beside it.

    Raises ``FileNotFoundError`` naming the folder when it holds no transcript, and naming the first
    FLAC file a transcript lists that is not there (a partly extracted archive)."""
    listings = sorted(Path(folder).glob("*/*/*.trans.txt"))
    if not listings:
        raise FileNotFoundError(f"{folder} holds no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt: allowed an "
                                "extracted LibriSpeech subset (its archive unpacked whole)")
    files, transcripts = [], []
    for listing in listings:
        for line in listing.read_text().splitlines():
            if line.strip():
                utterance, _, text = line.strip().partition(" ")
                path = listing.parent / f"{utterance}.flac"
                if not path.is_file():
                    raise FileNotFoundError(f"{path} does not exist, but {listing.name} lists {utterance!r}: an "
                                            "extracted LibriSpeech subset has every FLAC file its transcripts list "
                                            "(unpack the subset's archive again)")
                files.append(path)
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
    as :class:`CharTokenizer` ids). Every FLAC file the transcripts list must be there
    (:func:`librispeech_index`). Reading FLAC needs ``soundfile``.
    """
    subset = LIBRISPEECH_DEFAULT_SUBSET[split] if subset is None else subset
    checks.one_of("subset", subset, LIBRISPEECH_FILES)
    checks.integer("n_mels", n_mels, low=8, high=128)
    read_audio = _soundfile_reader()
    folder = Path(root) / "librispeech" / "LibriSpeech" / subset
    if not folder.is_dir():
        _extract(fetch("librispeech", LIBRISPEECH_FILES[subset], root, download), folder)
    files, transcripts = librispeech_index(folder)
    return SpeechUtterances(files, transcripts, read_audio, n_mels)


register(DatasetSpec("librispeech", load_librispeech, "speech_recognition", None, None, False,
                     "LibriSpeech (OpenSLR 12) subsets, read lazily; needs soundfile",
                     tuple(LIBRISPEECH_FILES.values())))

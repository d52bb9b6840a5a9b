"""The log-mel front end, in torch: Slaney mel scale and filterbank (librosa's defaults), log-mel in dB,
per-utterance standardisation."""

from __future__ import annotations

import math

import torch

from dstlib import checks

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
    checks.require(0 <= f_min < f_max <= sample_rate / 2, "(f_min, f_max)", (f_min, f_max),
                   f"0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}")
    bin_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_range = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    edges = mel_to_hz(torch.linspace(float(mel_range[0]), float(mel_range[1]), n_mels + 2,
                                     dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    triangles = torch.minimum(rising, falling).clamp(min=0.0)
    return triangles * (2.0 / (upper - lower))


def window_and_hop(sample_rate: int) -> tuple[int, int]:
    """Samples of the 25 ms analysis window and of the 10 ms hop at ``sample_rate``: ``(n_fft, hop)``."""
    return round(0.025 * sample_rate), round(0.010 * sample_rate)


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
    checks.require(torch.is_floating_point(waveforms) and waveforms.shape[-1] > n_fft // 2,
                   "(waveforms.dtype, waveforms.shape)", (waveforms.dtype, tuple(waveforms.shape)),
                   f"floating-point samples, more than n_fft // 2 = {n_fft // 2} of them")
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


def standardize_utterances(features: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each utterance to zero mean and unit variance per mel channel over its valid frames:
    ``(N, n_mels, T)`` features, ``(N,)`` valid frame counts -> ``(N, n_mels, T)``.

    Utterance ``n`` keeps frames ``t < lengths[n]``, standardised with the mean and (population) variance
    of those frames, ``(x - mean) / sqrt(var + eps)`` (a constant, silent channel becomes 0); its padding
    frames are set to 0. The statistics ignore padding, so they do not depend on how long the batch is,
    and standardising twice changes nothing beyond the ``eps`` (a factor ``1 / sqrt(1 + eps)``).
    """
    frames = features.shape[-1]
    checks.require(torch.is_floating_point(features) and features.dim() == 3 and lengths.shape == features.shape[:1],
                   "(features.dtype, features.shape, lengths.shape)",
                   (features.dtype, tuple(features.shape), tuple(lengths.shape)),
                   "floating-point features (N, n_mels, T) and lengths (N,)")
    checks.require(bool(((lengths >= 1) & (lengths <= frames)).all()), "lengths", lengths.tolist(),
                   f"frame counts in [1, T = {frames}]")
    valid = (torch.arange(frames, device=features.device) < lengths[:, None])[:, None, :]
    count = lengths[:, None, None].to(features.dtype)
    mean = torch.where(valid, features, 0.0).sum(dim=2, keepdim=True) / count
    centred = torch.where(valid, features - mean, 0.0)
    variance = centred.square().sum(dim=2, keepdim=True) / count
    return centred / torch.sqrt(variance + eps)

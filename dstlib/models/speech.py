"""A small CTC speech recogniser for the DDP-ASR chapter (Xiao et al., "Dynamic Data Pruning for Automatic
Speech Recognition", Interspeech 2024, which trains a ~243M-parameter Conformer on LibriSpeech).

``ASREncoder``: log-mel ``(B, n_mels, T)`` -> two stride-2 Conv1d + GELU (4x time subsampling) -> sinusoidal
positions -> ``num_layers`` encoder layers -> linear CTC head, logits ``(B, ceil(ceil(T/2)/2), num_classes)``.
Layers are Conformer-lite (Gulati et al. 2020: half feed-forward, self-attention, convolution module,
half feed-forward, LayerNorm) or pre-norm Transformer (``layer_type="transformer"``).
``ctc_greedy_decode`` turns the logits into label sequences (best path, repeats collapsed, blanks removed):
the one greedy CTC decoder of dstlib (``CharTokenizer.decode`` then maps labels to text).

Parameter names (for a sparse engine, although DDP-ASR prunes data, not weights):
    ``subsample.{0,1}.weight`` (Conv1d); attention ``layers.{l}.attn.in_proj_weight``,
    ``layers.{l}.attn.out_proj.weight``; feed-forward ``layers.{l}.ff{1,2}.{1,4}.weight``; convolution module
    ``layers.{l}.conv.pointwise_in.weight``,
    ``layers.{l}.conv.depthwise.weight``, ``layers.{l}.conv.pointwise_out.weight``, ``head.weight``;
    LayerNorms and biases are 1-D.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from dstlib import checks

LAYER_TYPES = ("conformer", "transformer")


def strided_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after one stride-2 conv with kernel 3 and padding 1: ``ceil(T / 2)``."""
    return torch.div(lengths - 1, 2, rounding_mode="floor") + 1


def valid_frames(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Boolean ``(B, frames)``, True for the first ``lengths[b]`` frames of each sample."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def sinusoidal_positions(length: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Transformer position encodings ``(length, dim)`` on the device and dtype of ``like``."""
    position = torch.arange(length, device=like.device, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, dim, 2, device=like.device, dtype=torch.float32) * (-math.log(1e4) / dim)
    )
    table = torch.zeros(length, dim, device=like.device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table.to(like.dtype)


def feed_forward(dim: int, mult: int, dropout: float) -> nn.Sequential:
    """Pre-norm feed-forward: LayerNorm -> Linear(d, mult*d) -> SiLU -> Dropout -> Linear -> Dropout."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, mult * dim),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(mult * dim, dim),
        nn.Dropout(dropout),
    )


class ConvModule(nn.Module):
    """Conformer convolution module on ``(B, T, d)``: LN -> pointwise (GLU) -> depthwise conv -> LN -> SiLU ->
    pointwise -> dropout. Padded frames (``pad_mask`` True) are zeroed before the depthwise conv.

    LayerNorm replaces the original BatchNorm so that padding never enters normalisation statistics.
    """

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm_mid = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        y = F.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        if pad_mask is not None:
            y = y.masked_fill(pad_mask[..., None], 0.0)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.pointwise_out(F.silu(self.norm_mid(y))))


class EncoderLayer(nn.Module):
    """One encoder layer on ``(B, T, d)``.

    ``conv_kernel`` given: Conformer-lite, ``x + FF/2 -> + MHSA -> + Conv -> + FF/2 -> LayerNorm``.
    ``conv_kernel=None``: pre-norm Transformer, ``x + MHSA -> + FF``.
    """

    def __init__(self, dim: int, heads: int, ff_mult: int, conv_kernel: int | None, dropout: float) -> None:
        super().__init__()
        self.conformer = conv_kernel is not None
        self.ff1 = feed_forward(dim, ff_mult, dropout) if self.conformer else None
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, conv_kernel, dropout) if self.conformer else None
        self.ff2 = feed_forward(dim, ff_mult, dropout)
        self.final_norm = nn.LayerNorm(dim) if self.conformer else None

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        scale = 0.5 if self.conformer else 1.0
        if self.ff1 is not None:
            x = x + scale * self.ff1(x)
        y = self.attn_norm(x)
        x = x + self.attn_dropout(self.attn(y, y, y, key_padding_mask=pad_mask, need_weights=False)[0])
        if self.conv is not None:
            x = x + self.conv(x, pad_mask)
        x = x + scale * self.ff2(x)
        return x if self.final_norm is None else self.final_norm(x)


class ASREncoder(nn.Module):
    """CTC acoustic model: log-mel ``(B, n_mels, T)`` -> logits ``(B, T', num_classes)``, T' = ceil(T / 4).

    Args:
        num_classes: output vocabulary including the CTC blank (index 0 by convention).
        n_mels: mel bands of the input.
        d_model: model width (the tutorial's 96; DDP-ASR's Conformer is far larger).
        num_layers: encoder layers.
        num_heads: attention heads (must divide ``d_model``).
        ff_mult: feed-forward expansion.
        conv_kernel: depthwise kernel of the Conformer convolution module (odd).
        layer_type: ``"conformer"`` (Conformer-lite) or ``"transformer"``.
        dropout: dropout rate.
    """

    def __init__(
        self,
        num_classes: int = 29,
        n_mels: int = 40,
        d_model: int = 96,
        num_layers: int = 2,
        num_heads: int = 4,
        ff_mult: int = 4,
        conv_kernel: int = 15,
        layer_type: str = "conformer",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        checks.positive_ints(
            num_classes=num_classes,
            n_mels=n_mels,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            ff_mult=ff_mult,
            conv_kernel=conv_kernel,
        )
        checks.require(d_model % num_heads == 0, "num_heads", num_heads, f"a divisor of d_model ({d_model})")
        checks.require(d_model % 2 == 0, "d_model", d_model, "an even integer")
        checks.require(conv_kernel % 2 == 1, "conv_kernel", conv_kernel, "an odd integer")
        checks.one_of("layer_type", layer_type, LAYER_TYPES)
        checks.number("dropout", dropout, low=0, high=1, high_open=True)
        self.n_mels = n_mels
        self.subsample = nn.ModuleList(
            nn.Conv1d(channels, d_model, 3, stride=2, padding=1) for channels in (n_mels, d_model)
        )
        kernel = conv_kernel if layer_type == "conformer" else None
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, ff_mult, kernel, dropout) for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, num_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames for input lengths ``(B,)`` (what ``F.ctc_loss`` needs as ``input_lengths``)."""
        return strided_lengths(strided_lengths(lengths))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n_mels, T)`` [+ valid lengths ``(B,)``] -> logits ``(B, T', num_classes)``.

        With ``lengths``, frames beyond a sample's length are zeroed before each subsampling conv and masked
        out of attention and convolution, so a sample's valid logits do not depend on how it was padded;
        logits of padded frames are meaningless. For ``F.ctc_loss`` use
        ``logits.log_softmax(-1).transpose(0, 1)`` and ``output_lengths(lengths)``.
        """
        checks.require(x.dim() == 3 and x.shape[1] == self.n_mels, "x.shape", tuple(x.shape),
                       f"(B, {self.n_mels}, T)")
        if lengths is not None:
            lengths = lengths.to(x.device)
            ok = lengths.shape == x.shape[:1] and lengths.min() >= 1 and lengths.max() <= x.shape[2]
            checks.require(ok, "lengths", lengths.tolist(), f"B = {x.shape[0]} integers in [1, T = {x.shape[2]}]")
        h = x
        for conv in self.subsample:
            if lengths is not None:
                h = h.masked_fill(~valid_frames(lengths, h.shape[2])[:, None, :], 0.0)
                lengths = strided_lengths(lengths)
            h = F.gelu(conv(h))
        h = h.transpose(1, 2)
        h = self.dropout(h + sinusoidal_positions(h.shape[1], h.shape[2], h))
        pad_mask = None if lengths is None else ~valid_frames(lengths, h.shape[1])
        for layer in self.layers:
            h = layer(h, pad_mask)
        return self.head(h)


def ctc_greedy_decode(
    logits: torch.Tensor, lengths: torch.Tensor | None = None, blank: int = 0
) -> list[list[int]]:
    """Best-path CTC decoding of ``(B, T', V)`` logits (or log-probabilities) into B label lists.

    Takes the arg-max label per frame, collapses runs of the same label and drops ``blank``: frames
    ``[a, a, -, a, b, b]`` -> ``[a, a, b]``. ``lengths`` ``(B,)`` are the valid *output* frames of each
    sample (``ASREncoder.output_lengths(input_lengths)``, at most ``T'``); only those are decoded. Input
    lengths of a subsampling encoder exceed ``T'`` and are rejected rather than silently clipped.
    """
    checks.require(logits.dim() == 3, "logits.shape", tuple(logits.shape), "(B, T', V)")
    best = logits.argmax(dim=-1).cpu()
    batch, frames = best.shape
    if lengths is None:
        limits = [frames] * batch
    else:
        limits = lengths.tolist()
        ok = lengths.shape == (batch,) and all(0 <= limit <= frames for limit in limits)
        checks.require(ok, "lengths", limits, f"B = {batch} output lengths in [0, T' = {frames}] "
                       "(the encoder's output_lengths of the input lengths)")
    decoded = []
    for path, limit in zip(best.tolist(), limits, strict=True):
        labels = []
        previous = None
        for label in path[:limit]:
            if label != previous and label != blank:
                labels.append(label)
            previous = label
        decoded.append(labels)
    return decoded

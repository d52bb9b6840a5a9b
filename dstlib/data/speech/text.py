"""Transcripts for CTC: character ids, and the collation of padded utterance batches.

Decoding a frame-wise best path (collapse repeats, drop blanks) is :func:`dstlib.models.ctc_greedy_decode`;
:meth:`CharTokenizer.decode` turns the labels it returns into text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dstlib import checks


class CharTokenizer:
    """Character ids for CTC: 0 is the blank, 1..26 are ``a``..``z``, 27 is space, 28 the apostrophe.

    ``encode`` lowercases and rejects other characters; ``decode`` maps ids back to text, skipping blanks
    (so blank-padded targets decode to their transcript).
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
        checks.require(not unknown, "text", text, f"the characters {self.characters!r} in any case, not {unknown}")
        return [self._ids[character] for character in text.lower()]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids back to text, blanks skipped: ``[8, 9, 0, 27]`` -> ``"hi "``."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        checks.require(all(0 <= value < len(self) for value in values), "ids", values,
                       f"integers in [0, {len(self) - 1}]")
        return "".join(self.characters[value - 1] for value in values if value != self.blank)


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

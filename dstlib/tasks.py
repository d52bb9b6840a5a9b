"""Tasks: how :func:`dstlib.train.fit` turns a batch of any structure into model inputs and per-sample losses.

A batch arrives as a tuple (``(x, y)``, ``(features, lengths, targets, target_lengths)``, ...) or a dict.
A :class:`Task` names the tuple positions (``fields``), says which of them the model takes
(``input_fields``) and computes one loss **per sample**, shape ``(N,)``. The loop averages those for
the gradient, records them by sample index when asked (data selection, difficulty scores) and never
needs a second forward pass. Metrics (:mod:`dstlib.metrics`) read the same batch and outputs.

Built in: :class:`Classification` (also per-voxel or per-frame classification), :class:`Segmentation`
(cross-entropy + soft Dice, for 2-D/3-D volumes), :class:`CTC` (variable-length sequences) and
:class:`DeepSupervision` (several outputs, one weighted loss). A new task subclasses :class:`Task` and
implements :meth:`Task.loss`.

Example::

    task = Classification()
    batch = task.as_dict((x, y))              # {"input": x, "target": y}
    losses = task.loss(model(*task.model_inputs(batch)), batch)   # (N,)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dstlib import checks
from dstlib.metrics import Accuracy, Dice, ErrorRate

Batch = dict[str, Any]


def move_to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (nested tuples, lists, dicts) moved to ``device``."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: move_to(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(move_to(item, device) for item in value)
    return value


def as_float(outputs: Any) -> Any:
    """Model outputs (a tensor or a sequence of tensors) in float32, e.g. after bf16 autocast."""
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, list | tuple):
        return type(outputs)(as_float(o) for o in outputs)
    return outputs


class Task:
    """Base class: batch layout and per-sample loss.

    Subclasses set ``fields`` (names of the tuple positions of a batch), ``input_fields`` (the fields
    passed to the model, in order), ``target_field`` and implement :meth:`loss`.
    """

    fields: tuple[str, ...] = ("input", "target")
    input_fields: tuple[str, ...] = ("input",)
    target_field: str = "target"

    def as_dict(self, batch: Any) -> Batch:
        """A tuple batch as ``{field: value}``; a dict batch is checked to hold every field.

        Extra tuple positions are an error (a dataset that returns more than the task knows); extra
        dict keys (such as ``"index"``) are kept.
        """
        if isinstance(batch, Mapping):
            missing = [f for f in self.fields if f not in batch]
            if missing:
                raise ValueError(f"batch keys={sorted(batch)}: allowed dicts holding {list(self.fields)} "
                                 f"for {type(self).__name__}; missing {missing}")
            return dict(batch)
        if not isinstance(batch, list | tuple) or len(batch) != len(self.fields):
            size = len(batch) if isinstance(batch, list | tuple) else type(batch).__name__
            raise ValueError(f"batch of {size} items: allowed a tuple {self.fields} or a dict with those keys "
                             f"for {type(self).__name__}")
        return dict(zip(self.fields, batch, strict=True))

    def model_inputs(self, batch: Batch) -> tuple[Any, ...]:
        """The positional arguments of ``model(...)``."""
        return tuple(batch[f] for f in self.input_fields)

    def with_input(self, batch: Batch, value: Tensor) -> Batch:
        """A copy of ``batch`` whose first model input is ``value`` (augmentation, perturbation)."""
        return {**batch, self.input_fields[0]: value}

    def targets(self, batch: Batch) -> Any:
        return batch[self.target_field]

    def size(self, batch: Batch) -> int:
        """Number of samples in ``batch``."""
        return int(batch[self.input_fields[0]].shape[0])

    def primary(self, outputs: Any) -> Tensor:
        """The output that metrics read (the main head when a model has several)."""
        return outputs

    def loss(self, outputs: Any, batch: Batch) -> Tensor:
        """Per-sample losses ``(N,)`` of ``outputs`` for ``batch``."""
        raise NotImplementedError

    def default_metrics(self) -> dict[str, Any]:
        """The metrics :func:`dstlib.evaluation.evaluate` reports when none are given."""
        return {}


def _resize_labels(labels: Tensor, spatial: Sequence[int]) -> Tensor:
    """Integer labels ``(N, *S)`` resized to ``(N, *spatial)`` by nearest neighbour (deep supervision)."""
    if tuple(labels.shape[1:]) == tuple(spatial):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=tuple(spatial), mode="nearest")
    return resized[:, 0].long()


class Classification(Task):
    """Cross-entropy over classes: logits ``(N, C)`` with targets ``(N,)``, or dense predictions
    ``(N, C, *S)`` with targets ``(N, *S)`` (the loss of a sample is then its mean over positions)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = checks.number("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        targets = self.targets(batch)
        losses = F.cross_entropy(outputs, targets, reduction="none", label_smoothing=self.label_smoothing)
        return losses.flatten(1).mean(1) if losses.dim() > 1 else losses

    def default_metrics(self) -> dict[str, Any]:
        return {"accuracy": Accuracy()}


class Segmentation(Task):
    """Dense labelling of 2-D/3-D images: logits ``(N, C, *S)``, labels ``(N, *S)`` or ``(N, 1, *S)``.

    Per-sample loss ``ce_weight * CE + dice_weight * (1 - soft Dice)``, the Dice averaged over the
    classes (the background too unless ``include_background=False``), computed by MONAI's ``DiceLoss``.
    Labels are resized (nearest) to the output's size, so deep-supervision heads at lower resolution work.
    """

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, include_background: bool = False) -> None:
        self.ce_weight = checks.number("ce_weight", ce_weight, low=0.0)
        self.dice_weight = checks.number("dice_weight", dice_weight, low=0.0)
        self.include_background = include_background

    def targets(self, batch: Batch) -> Tensor:
        labels = batch[self.target_field]
        return labels[:, 0] if labels.dim() >= 3 and labels.shape[1] == 1 else labels

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        from monai.losses import DiceLoss

        labels = _resize_labels(self.targets(batch), outputs.shape[2:])
        ce = F.cross_entropy(outputs, labels, reduction="none").flatten(1).mean(1)
        if self.dice_weight == 0:
            return self.ce_weight * ce
        dice = DiceLoss(to_onehot_y=True, softmax=True, include_background=self.include_background,
                        reduction="none")(outputs, labels[:, None])
        return self.ce_weight * ce + self.dice_weight * dice.flatten(1).mean(1)

    def default_metrics(self) -> dict[str, Any]:
        return {"dice": Dice(include_background=self.include_background)}


class CTC(Task):
    """Connectionist temporal classification on padded variable-length batches.

    Batch ``(features, lengths, targets, target_lengths)`` as made by ``dstlib.data.speech.pad_ctc_batch``;
    the model takes ``(features, lengths)`` and returns logits ``(N, T', V)``. ``output_lengths`` maps
    input lengths to valid output frames (the encoder's subsampling; identity when ``None``). The loss
    of a sample is its CTC negative log-likelihood divided by its target length (what PyTorch's
    ``reduction="mean"`` averages). ``zero_infinity`` zeroes impossible alignments (needed when frames
    are dropped). ``decode`` turns a label list into text for WER/CER.
    """

    fields = ("features", "lengths", "targets", "target_lengths")
    input_fields = ("features", "lengths")
    target_field = "targets"

    def __init__(self, output_lengths: Callable[[Tensor], Tensor] | None = None, blank: int = 0,
                 zero_infinity: bool = True, decode: Callable[[Sequence[int]], str] | None = None) -> None:
        self.output_lengths = output_lengths
        self.blank = checks.integer("blank", blank, low=0)
        self.zero_infinity = zero_infinity
        self.decode = decode

    def frames(self, batch: Batch) -> Tensor:
        """Valid output frames per sample ``(N,)``."""
        lengths = batch["lengths"]
        return self.output_lengths(lengths) if self.output_lengths is not None else lengths

    def loss(self, outputs: Tensor, batch: Batch) -> Tensor:
        log_probs = outputs.log_softmax(-1).transpose(0, 1)
        target_lengths = batch["target_lengths"]
        losses = F.ctc_loss(log_probs, batch["targets"], self.frames(batch), target_lengths, blank=self.blank,
                            reduction="none", zero_infinity=self.zero_infinity)
        return losses / target_lengths.clamp(min=1).to(losses.dtype)

    def transcripts(self, outputs: Tensor, batch: Batch) -> tuple[list[str], list[str]]:
        """Greedy (best-path) hypotheses and the references, as text."""
        from dstlib.models.speech import ctc_greedy_decode

        if self.decode is None:
            raise ValueError("decode=None: allowed a function from label ids to text, needed for WER/CER")
        hypotheses = ctc_greedy_decode(outputs, self.frames(batch), blank=self.blank)
        references = [row[:n].tolist() for row, n in zip(batch["targets"].cpu(), batch["target_lengths"].tolist(),
                                                          strict=True)]
        return [self.decode(h) for h in hypotheses], [self.decode(r) for r in references]

    def default_metrics(self) -> dict[str, Any]:
        return {"wer": ErrorRate("word"), "cer": ErrorRate("char")} if self.decode is not None else {}


class DeepSupervision(Task):
    """Several outputs, one loss: ``sum_i weights[i] * base.loss(outputs[i])``.

    The model returns a sequence of outputs, the full-resolution head first (in eval mode it may return
    that head alone). Metrics read ``outputs[0]``. For segmentation the labels are resized to each head.
    """

    def __init__(self, base: Task, weights: Sequence[float]) -> None:
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"weights={list(weights)!r}: allowed a non-empty list of numbers >= 0")
        self.base = base
        self.weights = [float(w) for w in weights]
        self.fields, self.input_fields, self.target_field = base.fields, base.input_fields, base.target_field

    def targets(self, batch: Batch) -> Any:
        return self.base.targets(batch)

    def primary(self, outputs: Any) -> Tensor:
        return self.base.primary(outputs[0] if isinstance(outputs, list | tuple) else outputs)

    def loss(self, outputs: Any, batch: Batch) -> Tensor:
        heads = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
        if len(heads) > len(self.weights):
            raise ValueError(f"the model returned {len(heads)} outputs: allowed at most len(weights)="
                             f"{len(self.weights)}")
        return sum(w * self.base.loss(head, batch) for w, head in zip(self.weights, heads, strict=False))

    def default_metrics(self) -> dict[str, Any]:
        return self.base.default_metrics()


def sliding_window(roi_size: Sequence[int], sw_batch_size: int = 4, overlap: float = 0.25,
                   mode: str = "gaussian") -> Callable[[nn.Module, tuple[Any, ...]], Tensor]:
    """A ``forward(model, inputs)`` for :func:`dstlib.evaluation.evaluate` that runs MONAI's
    ``sliding_window_inference`` over volumes larger than the training patches."""

    def forward(model: nn.Module, inputs: tuple[Any, ...]) -> Tensor:
        from monai.inferers import sliding_window_inference

        def head(x: Tensor) -> Tensor:
            out = model(x)
            return out[0] if isinstance(out, list | tuple) else out

        return sliding_window_inference(inputs[0], tuple(roi_size), sw_batch_size, head, overlap=overlap, mode=mode)

    return forward

"""Training-time data selection: which samples (and which parts of them) a run trains on.

* :mod:`dstlib.selection.difficulty`: per-sample difficulty scores (EL2N, GraNd, forgetting events) and the
  hardest fraction of a training set;
* :mod:`dstlib.selection.pruning`: dynamic data pruning, an epoch sampler that chooses the samples of
  every epoch from their losses, and time dropping inside speech utterances (DDP-ASR).
"""

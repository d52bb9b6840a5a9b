"""dstlib: dynamic sparse training and its relatives, the library behind the Dynamic Sparsity book.

Subpackages: :mod:`dstlib.sparse` (the DST engine), :mod:`dstlib.data` (datasets, corruptions),
:mod:`dstlib.selection` (training-time data selection: difficulty scores, dynamic data pruning),
:mod:`dstlib.models` (1D, 2D and 3D networks), :mod:`dstlib.experiments` (one module per chapter and
the grid and record layer they share).
Modules: :mod:`dstlib.train` (one loop for every task), :mod:`dstlib.callbacks` (what the loop does
besides the step), :mod:`dstlib.optimisation`, :mod:`dstlib.batches`, :mod:`dstlib.evaluation`,
:mod:`dstlib.tasks`, :mod:`dstlib.metrics`, :mod:`dstlib.adversarial`, :mod:`dstlib.stats` (the evidence
behind every verdict), :mod:`dstlib.checks`, :mod:`dstlib.config`, :mod:`dstlib.results`,
:mod:`dstlib.plotting`.
"""

__version__ = "0.1.0"

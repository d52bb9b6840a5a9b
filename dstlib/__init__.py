"""dstlib: dynamic sparse training and its relatives, the library behind the Dynamic Sparsity book.

Subpackages: :mod:`dstlib.sparse` (the DST engine), :mod:`dstlib.data` (datasets, corruptions),
:mod:`dstlib.models` (1D, 2D and 3D networks), :mod:`dstlib.experiments` (one module per chapter).
Modules: :mod:`dstlib.config`, :mod:`dstlib.train`, :mod:`dstlib.results`, :mod:`dstlib.plotting`.
"""

__version__ = "0.1.0"

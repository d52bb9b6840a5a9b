"""Datasets: the registry, offline loaders, real-dataset loaders, corruptions and spectral filters.

``dstlib.data.load(name, split)`` is the one entry point; ``dstlib.data.names()`` lists what exists.
"""

from dstlib.data.registry import DatasetNotAvailable, data_root, load, names, spec
from dstlib.data.subsets import subset

__all__ = ["DatasetNotAvailable", "data_root", "load", "names", "spec", "subset"]

"""mae-nb: the helper package of a notebook course on masked autoencoders for spatial imagery.

The notebooks in ``notebooks/`` teach each idea in a few lines, then call the finished
version kept here. Modules are the concepts of the course:

- :mod:`mae_nb.data`: dataset registry, GeoTIFF helpers, synthetic scenes, tiling
- :mod:`mae_nb.runner`: executing notebooks with papermill and recording their metrics
- :mod:`mae_nb.cli`: the ``mae-nb`` command

Lower layers never import higher ones: ``viz`` and ``widgets`` may import ``models``,
``models`` never import ``viz`` or ``widgets``.
"""

from __future__ import annotations

from mae_nb.notebook import DEFAULT_BRANCH, REPOSITORY
from mae_nb.runner import record_metrics  # re-exported for notebooks

__version__ = "0.1.0"

__all__ = ["REPOSITORY", "DEFAULT_BRANCH", "record_metrics", "__version__"]

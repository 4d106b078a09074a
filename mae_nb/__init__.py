"""mae-nb: the helper package of a notebook course on masked autoencoders for spatial imagery.

The notebooks in ``notebooks/`` teach each idea in a few lines, then call the finished
version kept here. Each module is one concept of the course; from the top layer down (a
module imports only from layers below it, as the import contract in pyproject.toml checks):

- :mod:`mae_nb.cli`: the ``mae-nb`` command
- :mod:`mae_nb.studies`: each chapter's study (comparison, statistics, verdict, tables)
- :mod:`mae_nb.widgets`: sliders wired to the compute and plotting functions
- :mod:`mae_nb.viz` (plots), :mod:`mae_nb.notebook` (chapter conventions),
  :mod:`mae_nb.runner` (executing notebooks, recording their metrics)
- :mod:`mae_nb.reconstruct`, :mod:`mae_nb.features`, :mod:`mae_nb.finetune`,
  :mod:`mae_nb.pretrained` (getting a model), :mod:`mae_nb.scene` (a scene tile by tile)
- :mod:`mae_nb.train`, :mod:`mae_nb.metrics`, :mod:`mae_nb.stats`, :mod:`mae_nb.data`,
  :mod:`mae_nb.distributed`
- :mod:`mae_nb.models`: the networks alone (torch, timm, masking and errors only)
- :mod:`mae_nb.masking`, then :mod:`mae_nb.errors` at the bottom
"""

from __future__ import annotations

from mae_nb.notebook import DEFAULT_BRANCH, REPOSITORY
from mae_nb.runner import record_metrics  # re-exported for notebooks

__version__ = "0.1.0"

__all__ = ["REPOSITORY", "DEFAULT_BRANCH", "record_metrics", "__version__"]

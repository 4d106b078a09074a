"""Sliders for the chapters: each widget only wires ipywidgets to a compute function and a
plotting function of ``mae_nb.viz``, so the same work runs headless by calling those two.

Sliders use ``continuous_update=False``: the model runs when the slider is released, not on
every pixel of the drag.
"""

from __future__ import annotations

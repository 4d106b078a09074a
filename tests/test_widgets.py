"""The sliders' static strip: what a widget shows at a few positions, for a static page."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import tiny_mae
from PIL import Image

from mae_nb import widgets
from mae_nb.errors import InputError
from mae_nb.runner import STATIC_STRIPS_ENV

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def image():
    return np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)


def pixels(jpeg: bytes) -> np.ndarray:
    assert jpeg[:3] == b"\xff\xd8\xff", "not a JPEG"
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def test_a_live_kernel_gets_only_the_widget(image, monkeypatch):
    monkeypatch.delenv(STATIC_STRIPS_ENV, raising=False)
    box = widgets.reconstruction_sliders(tiny_mae(), image)
    assert box.strip is None
    data = box._repr_mimebundle_()
    assert WIDGET_VIEW in data and "image/jpeg" not in data


def test_a_runner_run_also_gets_the_strip_of_the_widgets_own_figures(image, monkeypatch):
    monkeypatch.setenv(STATIC_STRIPS_ENV, "1")
    box = widgets.reconstruction_sliders(tiny_mae(), image, mask_ratio=0.5, seed=2)
    data = box._repr_mimebundle_()
    assert WIDGET_VIEW in data, "the live widget must stay in the output"
    import base64

    assert base64.b64decode(data["image/jpeg"]) == box.strip
    strip = pixels(box.strip)
    # one row per position (25 %, 50 %, 75 %, 3 x 25 %), each the widget's own figure
    single = pixels(box.controls["picture"].value)
    assert strip.shape[0] >= 4 * single.shape[0]
    assert strip.shape[1] == single.shape[1]
    # the slider itself is where it was: the strip does not move it
    assert box.controls["mask_ratio"].value == 0.5 and box.result.mask_ratio == 0.5


def test_strip_rows_come_from_draw_and_skip_what_cannot_run():
    from matplotlib.figure import Figure

    calls = []

    def draw(ratio, seed):
        if ratio > 0.9:
            raise ValueError("no visible patch")
        calls.append((ratio, seed))
        fig = Figure(figsize=(2, 1))
        fig.add_subplot().imshow(np.full((4, 8), ratio), vmin=0, vmax=1)
        return fig, f"<b>score {ratio}</b><br>more", None

    two = pixels(
        widgets.static_strip(draw, {"ratio": 0.5, "seed": 3}, [{"ratio": 0.1}, {"ratio": 0.7}])
    )
    assert calls == [(0.1, 3), (0.7, 3)], "each position over the controls' values"
    one = pixels(
        widgets.static_strip(draw, {"ratio": 0.5, "seed": 3}, [{"ratio": 0.1}, {"ratio": 0.95}])
    )
    assert one.shape[0] * 2 == pytest.approx(two.shape[0], abs=4), "0.95 cannot run: left out"
    with pytest.raises(InputError, match="not controls of this widget"):
        widgets.static_strip(draw, {"ratio": 0.5, "seed": 3}, [{"ratoi": 0.1}])
    with pytest.raises(InputError, match="could be drawn"):
        widgets.static_strip(draw, {"ratio": 0.5, "seed": 3}, [{"ratio": 0.99}])

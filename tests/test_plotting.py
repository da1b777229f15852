"""Diagnostic figures build from real results and hold the expected artists."""

import matplotlib

matplotlib.use("Agg")

from coalign import Transform, apply_transform
from coalign.plotting import plot_before_after
from tests.sample import sample


def test_before_after_has_image_and_contours(tmp_path):
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(10, -5))
    fig = plot_before_after(target, raster, reference)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.images) == 1
        assert len(ax.collections) >= 1  # the contour sets
    fig.savefig(tmp_path / "before_after.png")
    assert (tmp_path / "before_after.png").stat().st_size > 10_000

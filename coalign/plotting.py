"""Diagnostic figures. matplotlib is imported lazily; every function returns the Figure."""

import numpy as np

__all__ = ["plot_before_after"]


def _limits(data):
    finite = np.asarray(data, dtype=float)[np.isfinite(data)]
    return (np.percentile(finite, 1), np.percentile(finite, 99)) if finite.size else (0, 1)


def plot_before_after(target_map, corrected_map, reference_map, *, levels=None):
    """Reference image with the target's contours before and after the correction.

    Parameters
    ----------
    target_map, corrected_map : `~sunpy.map.GenericMap`
        The target with its original and its corrected WCS (same data).
    reference_map : `~sunpy.map.GenericMap`
        The reference image.
    levels : sequence of float, optional
        Contour levels in target data units (default: the 90th and 97th percentiles).

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    data = np.nan_to_num(np.asarray(target_map.data, dtype=float), nan=np.nanmin(target_map.data))
    levels = levels if levels is not None else np.nanpercentile(target_map.data, [90, 97])
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    vmin, vmax = _limits(reference_map.data)
    for i, (smap, title) in enumerate(
        ((target_map, "header pointing"), (corrected_map, "corrected pointing"))
    ):
        ax = fig.add_subplot(1, 2, i + 1, projection=reference_map.wcs)
        ax.imshow(reference_map.data, origin="lower", cmap="gray", vmin=vmin, vmax=vmax)
        ax.contour(
            data,
            levels=levels,
            colors=["tab:orange", "tab:red"],
            linewidths=0.8,
            transform=ax.get_transform(smap.wcs),
        )
        ax.set_title(f"target contours, {title}")
        ax.set_xlabel("Solar X")
        ax.set_ylabel("Solar Y")
    return fig

"""Tests for coalign.stages.correlate: the NaN-safe Pearson score and the correlation objective."""

import numpy as np
import pytest
from scipy import ndimage

from coalign.stages.correlate import correlate, correlation_for_params, pearson
from coalign.transform import TargetGrid, Transform

# --------------------------------------------------------------------------------------------------
# pearson
# --------------------------------------------------------------------------------------------------


def test_pearson_perfect_linear_relation(image_yx):
    assert pearson(image_yx, 3.0 * image_yx - 7.0) == pytest.approx(1.0, abs=1e-12)


def test_pearson_anti_correlation(image_yx):
    assert pearson(image_yx, -0.5 * image_yx + 2.0) == pytest.approx(-1.0, abs=1e-12)


def test_pearson_matches_numpy(image_yx, make_field):
    other = make_field(image_yx.shape, seed=5) + 0.5 * image_yx
    assert pearson(image_yx, other) == pytest.approx(
        np.corrcoef(image_yx.ravel(), other.ravel())[0, 1], abs=1e-12
    )


def test_pearson_insufficient_pixel_count():
    a = np.arange(16.0).reshape(4, 4)
    b = a.copy()
    b[0, 0] = np.nan  # 15 overlapping pixels < 16
    assert np.isnan(pearson(a, b))
    assert pearson(a, b, min_overlap_pixels=15) == pytest.approx(1.0)


def test_pearson_insufficient_fraction(image_yx):
    b = image_yx.copy()
    b[:, 12:] = np.nan  # 20 % of the target's valid pixels overlap
    assert np.isnan(pearson(image_yx, b, min_overlap_fraction=0.3))
    assert pearson(image_yx, b, min_overlap_fraction=0.2) == pytest.approx(1.0)


def test_pearson_fraction_counts_against_target_valid_pixels(image_yx):
    a = image_yx.copy()
    a[:, 30:] = np.nan  # the target itself covers half the grid
    b = image_yx.copy()
    b[:, 20:] = np.nan  # overlap = 20 columns = 2/3 of the target's valid pixels
    assert pearson(a, b, min_overlap_fraction=0.6) == pytest.approx(1.0)
    assert np.isnan(pearson(a, b, min_overlap_fraction=0.7))


def test_pearson_constant_image_gives_nan(image_yx):
    assert np.isnan(pearson(image_yx, np.full(image_yx.shape, 4.0)))
    assert np.isnan(pearson(np.ones((10, 10)), image_yx[:10, :10]))


def test_pearson_ignores_nan_in_either_image(image_yx):
    a = image_yx.copy()
    b = 2.0 * image_yx + 1.0
    rng = np.random.default_rng(1)
    a[rng.random(a.shape) < 0.1] = np.nan
    b[rng.random(b.shape) < 0.1] = np.nan
    # NaN pixels carry garbage partners: a perfect relation elsewhere must still give exactly 1.
    b[np.isnan(a)] = 1e6
    a[np.isnan(b)] = -1e6
    a[rng.random(a.shape) < 0.05] = np.nan
    assert pearson(a, b) == pytest.approx(1.0, abs=1e-12)


def test_pearson_ignores_nan_value_check():
    a = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 100.0])
    b = np.array([2.0, 4.0, 6.0, 9.0, 5.0, np.nan])
    expected = np.corrcoef(a[:4], b[:4])[0, 1]
    assert pearson(a, b, min_overlap_pixels=2) == pytest.approx(expected, abs=1e-12)


def test_pearson_all_nan_reference():
    assert np.isnan(pearson(np.ones((5, 5)), np.full((5, 5), np.nan)))


# --------------------------------------------------------------------------------------------------
# correlate
# --------------------------------------------------------------------------------------------------


def test_correlate_identity_without_pad_equals_pearson(image_yx, make_field):
    target = image_yx + 0.3 * make_field(image_yx.shape, seed=9)
    grid = TargetGrid(crpix=(29.5, 29.5), matrix=((2.0, 0.0), (0.0, 2.0)), pad=(0, 0))
    expected = pearson(target, image_yx)
    assert 0.5 < expected < 0.999
    assert correlate(target, image_yx, Transform(), grid) == pytest.approx(expected, abs=1e-12)


def test_correlate_identity_with_pad_uses_the_centre(make_field):
    reference = make_field((70, 66), seed=3)
    target = reference[5:65, 3:63]
    grid = TargetGrid(crpix=(29.5, 29.5), matrix=((2.0, 0.0), (0.0, 2.0)), pad=(5, 3))
    assert correlate(target, reference, Transform(), grid) == pytest.approx(1.0, abs=1e-12)
    # The same reference without the pad offset is a shifted scene.
    assert correlate(target, reference[:60, :60], Transform(), grid.with_pad((0, 0))) < 0.5


def test_correlate_insufficient_overlap_is_nan(image_yx):
    grid = TargetGrid(crpix=(29.5, 29.5), matrix=((1.0, 0.0), (0.0, 1.0)), pad=(0, 0))
    # A 45-pixel shift leaves 15 of 60 columns: 25 % < 30 %.
    assert np.isnan(correlate(image_yx, image_yx, Transform(dx=45.0), grid))
    assert np.isfinite(correlate(image_yx, image_yx, Transform(dx=45.0), grid, min_overlap_fraction=0.2))


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize(
    ("matrix", "shift_xy"),
    [
        (((2.0, 0.0), (0.0, 2.0)), (1.37, -0.62)),
        (((1.5, -0.2), (0.3, 2.5)), (-2.3, 0.85)),  # rotated, sheared, non-square pixels
    ],
)
def test_correlate_peaks_at_known_truth(order, matrix, shift_xy, make_field):
    ny = nx = 80
    pad = 10
    field = make_field((ny + 2 * pad, nx + 2 * pad), sigma=3.0, seed=2)
    sx, sy = shift_xy
    # The target pixel p truly observed what the uncorrected padded grid shows at q = p + pad + s, so the
    # target is the field shifted by -s (cubic spline, independent of coalign's own sampling), cropped.
    target = ndimage.shift(field, (-sy, -sx), order=3, mode="nearest")[pad:-pad, pad:-pad]
    grid = TargetGrid(crpix=((nx - 1) / 2, (ny - 1) / 2), matrix=matrix, pad=(pad, pad))
    # The shift in arcsec that corresponds to the pixel shift s: d = M s.
    dx_true, dy_true = np.asarray(matrix) @ [sx, sy]

    offsets = np.arange(-0.5, 0.5001, 0.02)  # pixels
    scores_x = [
        correlate(target, field, Transform(*(np.asarray(matrix) @ [sx + o, sy])), grid, order=order)
        for o in offsets
    ]
    scores_y = [
        correlate(target, field, Transform(*(np.asarray(matrix) @ [sx, sy + o])), grid, order=order)
        for o in offsets
    ]
    assert abs(offsets[int(np.argmax(scores_x))]) <= 0.1
    assert abs(offsets[int(np.argmax(scores_y))]) <= 0.1
    assert correlate(target, field, Transform(dx_true, dy_true), grid, order=order) > 0.99
    # The opposite sign (a reversed convention) is clearly worse.
    assert correlate(target, field, Transform(-dx_true, -dy_true), grid, order=order) < 0.9


def test_correlate_nan_in_reference_is_ignored(image_yx):
    reference = image_yx.copy()
    reference[10:20, 10:20] = np.nan
    grid = TargetGrid(crpix=(29.5, 29.5), matrix=((1.0, 0.0), (0.0, 1.0)), pad=(0, 0))
    assert correlate(image_yx, reference, Transform(), grid) == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# correlation_for_params
# --------------------------------------------------------------------------------------------------


def test_correlation_for_params_integer_roll(make_field):
    ref = make_field((40, 40), sigma=1.5, seed=4)
    target = np.roll(ref, (-3, 4), axis=(0, 1))  # target[y, x] = ref[y + 3, x - 4]
    assert correlation_for_params(ref, target, dx=-4, dy=3, sx=1, sy=1) == pytest.approx(1.0, abs=1e-9)
    # The opposite shift is wrong.
    assert correlation_for_params(ref, target, dx=4, dy=-3, sx=1, sy=1) < 0.5


def test_correlation_for_params_scale_about_centre(make_field):
    ref = make_field((41, 41), sigma=2.0, seed=6)
    # Target = ref zoomed by 1/1.1 about the centre: target(p) = ref(c + 1.1 (p - c)).
    yy, xx = np.mgrid[0:41, 0:41].astype(float)
    target = ndimage.map_coordinates(
        ref, [20 + 1.1 * (yy - 20), 20 + 1.1 * (xx - 20)], order=3, mode="nearest"
    )
    good = correlation_for_params(ref, target, dx=0, dy=0, sx=1.1, sy=1.1)
    assert good > 0.98
    assert good > correlation_for_params(ref, target, dx=0, dy=0, sx=1.0, sy=1.0)

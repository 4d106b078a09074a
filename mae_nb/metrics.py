"""Image and classification metrics over valid pixels only.

Images are numpy arrays or torch tensors of shape (C, H, W) or (N, C, H, W); ``valid`` is a
bool mask (H, W) or (N, H, W), False for nodata. Non-finite pixels (NaN, inf) in either
image are excluded as well, so a nodata hole never poisons a score. SSIM comes from
scikit-image; classification scores from scikit-learn.

**The course's data-range convention.** PSNR and SSIM need the *data range*, the span of
values the data can take. In this course it is a property of the **data source**, in the
source's own units, never of the crop or tile being scored: the range the source declares
(``Sample.data_range``: uint8 Landsat samples 255, BigEarthNet reflectance x 10000 and the
synthetic scene 10000), else :func:`mae_nb.data.value_range` of the whole source (uint8:
255; floats already within 0..1: 1.0; otherwise max - min of its valid values). So the same
error on the same pixels gets the same PSNR in every chapter, the CLI and the widgets, and a
dark crop is not scored against its own small span. Images scaled for a model are scored
after mapping back to the source's units (or with the equivalent range). ``psnr`` and
``ssim`` therefore take ``data_range`` without a default.

**Scoring a region.** ``ssim(..., valid=..., region=...)`` keeps two things apart: ``valid``
says where there is data (nodata is filled identically in both images and never scored),
``region`` says which valid pixels to average the SSIM map over (e.g. the masked patches).
The map itself is computed on the full images, so visible pixels are real context for the
windows around a scored pixel, never zeros standing in for "not scored".
"""

from __future__ import annotations

import numpy as np

from mae_nb.errors import InputError


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _prepare(pred, target, valid):
    p, t = _np(pred), _np(target)
    if p.shape != t.shape:
        raise InputError(f"pred and target must have the same shape, got {p.shape} and {t.shape}")
    if p.ndim == 3:
        p, t = p[None], t[None]
    if p.ndim != 4:
        raise InputError(f"expected images of shape (C, H, W) or (N, C, H, W), got {p.shape}")
    n, c, h, w = p.shape
    m = np.ones((n, h, w), bool) if valid is None else np.asarray(_np(valid) > 0, bool)
    if m.ndim == 2:
        m = np.broadcast_to(m, (n, h, w))
    if m.shape != (n, h, w):
        raise InputError(f"valid must have shape (H, W) or (N, H, W) = {(n, h, w)}, got {m.shape}")
    m = m & np.isfinite(p).all(axis=1) & np.isfinite(t).all(axis=1)
    if not m.any():
        raise InputError("no valid pixel to score: every pixel is nodata or non-finite")
    return p, t, m


def mse(pred, target, valid=None, per_band: bool = False):
    """Mean squared error over valid pixels (float, or (C,) array with ``per_band``)."""
    p, t, m = _prepare(pred, target, valid)
    sq = (p - t) ** 2  # (N, C, H, W)
    per = np.array([sq[:, b][m].mean() for b in range(p.shape[1])])
    return per if per_band else float(sq.transpose(1, 0, 2, 3)[:, m].mean())


def psnr(pred, target, data_range: float, valid=None, per_band: bool = False, *, region=None):
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, over valid pixels.

    ``data_range``: the data source's range in its units (see the module docstring); there is
    no default, so no caller scores with a range it did not choose. ``region`` (H, W) or
    (N, H, W): score only these pixels (with ``valid``, which says where there is data).
    """
    data_range = check_data_range(data_range)
    if region is not None:
        valid = _where(valid, region, pred)
    err = np.asarray(mse(pred, target, valid, per_band), dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = 10 * np.log10(data_range**2 / np.maximum(err, 1e-20))
    return out if per_band else float(out)


def check_data_range(data_range) -> float:
    """``data_range`` as a float, or an :class:`~mae_nb.errors.InputError` unless it is a
    positive finite number (every score's range goes through this one check)."""
    if isinstance(data_range, bool) or not np.isscalar(data_range):
        raise InputError(f"data_range must be a positive number, got {data_range!r}")
    if not (np.isfinite(data_range) and data_range > 0):
        raise InputError(f"data_range must be a positive number, got {data_range!r}")
    return float(data_range)


def _where(valid, region, like) -> np.ndarray:
    """``valid & region`` as a bool array (either may be None)."""
    r = np.asarray(_np(region) > 0, bool)
    if valid is None:
        return r
    v = np.asarray(_np(valid) > 0, bool)
    try:
        return v & r
    except ValueError:
        raise InputError(
            f"valid {v.shape} and region {r.shape} must both be (H, W) or (N, H, W)"
        ) from None


def ssim(
    pred,
    target,
    data_range: float,
    valid=None,
    region=None,
    per_band: bool = False,
):
    """Structural similarity (scikit-image, Gaussian window sigma 1.5) averaged over a region.

    The SSIM map is computed per band and image on the *full* images: every valid pixel is
    context for its neighbours' windows, whether it is scored or not. ``valid`` (H, W) or
    (N, H, W): False at nodata (non-finite pixels count as nodata too); nodata pixels are
    filled with the same value in both images (the target's mean over its valid pixels, per
    band), so they add no difference, and are never scored. ``region`` (same shapes): the
    pixels whose SSIM is averaged, e.g. the masked patches (default: every valid pixel); only
    valid pixels of it count. ``data_range``: the data source's range (no default).
    """
    from skimage.metrics import structural_similarity

    data_range = check_data_range(data_range)
    p, t, m = _prepare(pred, target, valid)
    n, c, h, w = p.shape
    if min(h, w) < 11:  # the Gaussian window (sigma 1.5) is 11 x 11 pixels
        raise InputError(f"SSIM needs images of at least 11 x 11 pixels, got {h} x {w}")
    score = m
    if region is not None:
        r = np.asarray(_np(region) > 0, bool)
        if r.ndim == 2:
            r = np.broadcast_to(r, (n, h, w))
        if r.shape != (n, h, w):
            raise InputError(
                f"region must have shape (H, W) or (N, H, W) = {(n, h, w)}, got {r.shape}"
            )
        score = m & r
        if not score.any():
            raise InputError("no valid pixel in the region to score")
    # nodata: one value, the same in both images, so it adds no difference inside a window
    fill = np.stack(
        [[t[i, b][m[i]].mean() if m[i].any() else 0.0 for b in range(c)] for i in range(n)]
    )[:, :, None, None]
    t = np.where(m[:, None], t, fill)
    p = np.where(m[:, None], p, fill)
    scores = np.zeros(c)
    for b in range(c):
        vals = []
        for i in range(n):
            if not score[i].any():
                continue
            _, smap = structural_similarity(
                t[i, b],
                p[i, b],
                data_range=data_range,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                full=True,
            )
            vals.append(smap[score[i]])
        scores[b] = np.concatenate(vals).mean()
    return scores if per_band else float(scores.mean())


def classification_report(
    y_true, y_pred, n_classes: int | None = None, ignore_label: int | None = None
) -> dict:
    """Overall accuracy, average (per-class) accuracy, Cohen's kappa, confusion matrix.

    Labels are integers 0..n_classes-1; pixels whose true label is ``ignore_label`` are
    left out. Classes absent from ``y_true`` do not count in the average accuracy.
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    yt, yp = np.asarray(_np(y_true), int).ravel(), np.asarray(_np(y_pred), int).ravel()
    if yt.shape != yp.shape:
        raise InputError(
            f"y_true and y_pred must have the same length, got {yt.size} and {yp.size}"
        )
    if ignore_label is not None:
        keep = yt != ignore_label
        yt, yp = yt[keep], yp[keep]
    if yt.size == 0:
        raise InputError("no labelled sample to score")
    n = int(max(yt.max(), yp.max()) + 1) if n_classes is None else int(n_classes)
    cm = confusion_matrix(yt, yp, labels=list(range(n)))
    support = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), support, out=np.full(n, np.nan), where=support > 0)
    kappa = cohen_kappa_score(yt, yp, labels=list(range(n)))
    return {
        "oa": float(np.trace(cm) / cm.sum()),
        "aa": float(np.nanmean(per_class)),
        "kappa": float(0.0 if np.isnan(kappa) else kappa),
        "confusion": cm,
        "per_class": per_class,
    }


def multilabel_report(targets, scores, threshold: float = 0.5) -> dict:
    """Multi-label scores of ``scores`` (N, K) probabilities against ``targets`` (N, K) 0/1.

    ``"map"``: the mean over labels of the average precision (scikit-learn), over the labels
    with at least one positive target (average precision is undefined without one; NaN when
    none has); ``"sample_f1"``: the mean over samples of the F1 of the labels above
    ``threshold``; ``"micro_f1"``; ``"n_labels"``: the labels that count in ``"map"``.
    """
    from sklearn.metrics import average_precision_score, f1_score

    y, s = np.asarray(_np(targets)), np.asarray(_np(scores), np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise InputError(f"targets and scores must both be (N, K), got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise InputError("targets must be 0 or 1 (each label present or not)")
    y = y.astype(int)
    pos = y.sum(0) > 0
    ap = [average_precision_score(y[:, k], s[:, k]) for k in np.flatnonzero(pos)]
    pred = (s >= threshold).astype(int)
    return {
        "map": float(np.mean(ap)) if ap else float("nan"),
        "sample_f1": float(f1_score(y, pred, average="samples", zero_division=0)),
        "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
        "n_labels": int(pos.sum()),
    }

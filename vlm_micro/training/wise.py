"""Weight-space ensembling of a fine-tuned model with its base model (WiSE-FT).

``theta(alpha) = (1 - alpha) * theta_base + alpha * theta_finetuned`` (Wortsman et al.,
"Robust fine-tuning of zero-shot models", CVPR 2022). Small ``alpha`` keeps more of what
the base model knew; ``alpha = 1`` is the fine-tuned model. The weight is chosen on
validation data from a sweep.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def interpolate_state(base_state: dict, tuned_state: dict, alpha: float) -> dict:
    """Return the interpolated state dict; non-float tensors are taken from the fine-tuned model.

    Raises
    ------
    ValueError
        When the two state dicts have different keys or shapes.
    """
    if set(base_state) != set(tuned_state):
        missing = sorted(set(base_state) ^ set(tuned_state))[0]
        raise ValueError(f"base and fine-tuned models differ in parameter {missing!r}; WiSE-FT needs one architecture")
    out = {}
    for name, tuned in tuned_state.items():
        base = base_state[name]
        if base.shape != tuned.shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(base.shape)} in the base and {tuple(tuned.shape)} after fine-tuning")
        out[name] = torch.lerp(base.to(tuned.dtype), tuned, alpha) if tuned.is_floating_point() else tuned.clone()
    return out


def sweep_alphas(model, base_state: dict, tuned_state: dict, alphas, score_fn) -> list[dict]:
    """Score the interpolated model at each alpha.

    Parameters
    ----------
    model : torch.nn.Module
        Loaded with each interpolated state in turn, and left with the last one.
    alphas : iterable of float in [0, 1]
    score_fn : callable
        ``score_fn() -> dict`` of metrics for the model as it is loaded; it must hold a
        ``score`` entry used for the choice.

    Returns
    -------
    list of dict
        ``{"alpha": a, **score_fn()}`` per alpha, in the order given.
    """
    results = []
    for alpha in alphas:
        model.load_state_dict(interpolate_state(base_state, tuned_state, float(alpha)))
        scores = score_fn()
        results.append({"alpha": float(alpha), **scores})
        log.info("WiSE-FT alpha %.2f: %s", alpha, ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)))
    return results


def choose_alpha(sweep: list[dict], tolerance: float = 0.005, reference_floor: float | None = None) -> float:
    """Return the smallest alpha whose score is within ``tolerance`` of the best score.

    Preferring the smallest such alpha keeps the model as close to the base as the
    validation data allows, which limits the accuracy lost on the base domain. With
    ``reference_floor``, only entries whose ``reference_macro_f1`` (macro-F1 on tiles of
    the base domain) is at least that value compete. When none of them qualifies, the
    smallest alpha of the sweep is returned. Entries whose score is None are ignored,
    and with no scored entry the largest alpha is returned.
    """
    candidates = sweep
    if reference_floor is not None:
        candidates = [e for e in sweep if e.get("reference_macro_f1") is None or e["reference_macro_f1"] >= reference_floor]
        if not candidates:
            log.warning("no WiSE-FT alpha keeps the reference macro-F1 above %.4f; using the smallest alpha", reference_floor)
            return float(min(entry["alpha"] for entry in sweep))
    scored = [entry for entry in candidates if entry.get("score") is not None]
    if not scored:
        return float(max(entry["alpha"] for entry in candidates))
    best = max(entry["score"] for entry in scored)
    return float(min(entry["alpha"] for entry in scored if entry["score"] >= best - tolerance))

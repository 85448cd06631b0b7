"""Model cards (``MODEL_CARD.md``) for fine-tuned models and the bundled demo model."""

from __future__ import annotations

from pathlib import Path

from vlm_micro.atomic import write_text


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(rows: dict[str, dict]) -> str:
    """Return a Markdown table: one row per named metrics dict, columns for the usual metrics."""
    columns = ("macro_f1", "accuracy", "balanced_accuracy", "anomaly_auroc", "ece", "n")
    present = [c for c in columns if any(c in metrics for metrics in rows.values())]
    lines = ["| | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_number(metrics.get(c)) for c in present) + " |")
    return "\n".join(lines)


def counts_table(title: str, counts: dict[str, dict]) -> str:
    """Return a Markdown table of label counts, one column per split."""
    splits = list(counts)
    labels = list(dict.fromkeys(label for split in splits for label in counts[split]))
    lines = [f"| {title} | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(str(counts[s].get(label, 0)) for s in splits) + " |")
    return "\n".join(lines)


def sweep_table(sweep: list[dict], chosen: float) -> str:
    """Return the WiSE-FT sweep as a Markdown table, marking the chosen alpha."""
    with_reference = any("reference_macro_f1" in entry for entry in sweep)
    header = "| alpha | validation macro-F1 | validation anomaly AUROC |"
    header += " reference macro-F1 | |" if with_reference else " |"
    lines = [header, "|---" * (5 if with_reference else 4) + "|"]
    for entry in sweep:
        mark = "chosen" if abs(entry["alpha"] - chosen) < 1e-9 else ""
        row = f"| {entry['alpha']:.2f} | {_number(entry.get('macro_f1'))} | {_number(entry.get('anomaly_auroc'))} |"
        if with_reference:
            row += f" {_number(entry.get('reference_macro_f1'))} |"
        lines.append(f"{row} {mark} |")
    return "\n".join(lines)


def finetune_card(summary: dict, meta: dict) -> str:
    """Render the card of a model written by ``vlm-micro finetune``."""
    data = summary["data"]
    recipe = summary["recipe"]
    base = summary["base_model"]
    locked = [tower for tower in ("image", "text") if recipe.get(f"lock_{tower}")]
    sections = [
        f"# {meta['name']}\n\nFine-tuned with `vlm-micro finetune` from `{base['spec']}` ({base['name']}, weights "
        f"SHA-256 `{base['checksum'][:16]}...`). Load it with `--model local-dir:PATH` or `model.spec` in the config.",
        "## Data\n\n"
        f"Annotations: `{summary['annotations']}`: {data['tiles']} tiles from {data['images']} images. "
        f"Training and validation are split by image: {data['train']['images']} training images "
        f"({data['train']['tiles']} tiles), {data['validation']['images']} validation images "
        f"({data['validation']['tiles']} tiles).\n\n"
        + counts_table("cell type", {"train": data["train"]["cell_types"], "validation": data["validation"]["cell_types"]})
        + "\n\n"
        + counts_table("anomaly state", {"train": data["train"]["anomaly_states"], "validation": data["validation"]["anomaly_states"]}),
        "## Recipe\n\n"
        "Contrastive (CLIP) loss with every caption of a tile's cell type or anomaly state counted as a positive; "
        "captions are the class synonyms times the templates of `labels.yaml` and the anomaly state phrases times "
        f"the anomaly templates. Towers trained: {'both' if not locked else 'all but the ' + ' and '.join(locked) + ' tower'}. "
        f"AdamW (learning rate {recipe['learning_rate']}, weight decay {recipe['weight_decay']}), cosine schedule "
        f"with {recipe['warmup_fraction']:.0%} warm-up, batch {recipe['batch_size']}, up to {recipe['epochs']} epochs, "
        f"early stopping after {recipe['patience']} epochs without a better validation macro-F1 "
        f"(best epoch {summary['best_epoch']}{', stopped early' if summary['stopped_early'] else ''}). "
        "Class-balanced sampling; flips, 90-degree rotations and small intensity and stain jitter. "
        f"Seed {recipe['seed']}; training took {summary['train_seconds']} s.",
        "## Weight-space ensemble (WiSE-FT)\n\n"
        "The weights are `(1 - alpha) * base + alpha * fine-tuned`. The smallest alpha whose validation macro-F1 is "
        f"within {recipe['alpha_tolerance']} of the best is kept{reference_rule(summary)}: "
        f"alpha = {summary['wise_ft']['alpha']:.2f}.\n\n"
        + sweep_table(summary["wise_ft"]["sweep"], summary["wise_ft"]["alpha"]),
        "## Calibration\n\n"
        + calibration_text(summary["calibration"]),
        "## Validation metrics\n\nZero-shot labelling of the validation images, before and after fine-tuning"
        + (", and of the reference tiles of the base model's domain" if "reference" in summary else "") + ".\n\n"
        + metrics_table(validation_rows(summary)),
        "## Limits\n\n"
        "The metrics come from validation images of the same annotation set, so they say nothing about images "
        "from another microscope, stain or lab. The model knows only the cell types and anomaly kinds of the "
        "vocabulary it was trained with (checksum in `vlm_micro.json`).",
    ]
    return "\n\n".join(sections) + "\n"


def reference_rule(summary: dict) -> str:
    """Describe the reference constraint on alpha, or return '' without reference tiles."""
    reference = summary.get("reference")
    if not reference:
        return ""
    return (f", among the alphas that lose at most {reference['max_drop']} macro-F1 on {reference['tiles']} reference "
            f"tiles of the base model's domain (`{reference['annotations']}`, never trained on)")


def validation_rows(summary: dict) -> dict:
    """Return the rows of the validation metrics table."""
    rows = {"base model": summary["validation_before"], "fine-tuned": summary["validation_after"]}
    if "reference" in summary:
        rows["base model, reference tiles"] = summary["reference"]["before"]
        rows["fine-tuned, reference tiles"] = summary["reference"]["after"]
    return rows


def calibration_text(temperatures: dict) -> str:
    """Describe the fitted temperatures in one paragraph."""
    if not temperatures:
        return "No temperature was fitted (the validation images have no labels to fit on); the learned logit scale is used."
    parts = []
    if "temperature" in temperatures:
        parts.append(f"cell type softmax temperature {temperatures['temperature']:.4f}")
    if "anomaly_temperature" in temperatures:
        parts.append(f"anomaly softmax temperature {temperatures['anomaly_temperature']:.4f}")
    return ("Fitted on the validation images by minimum negative log-likelihood and stored in `vlm_micro.json`: "
            + "; ".join(parts) + ".")


def append_card_section(folder: str | Path, title: str, text: str) -> None:
    """Add or replace a ``## title`` section at the end of ``folder/MODEL_CARD.md``."""
    path = Path(folder) / "MODEL_CARD.md"
    card = path.read_text(encoding="utf-8") if path.is_file() else ""
    heading = f"## {title}"
    if heading in card:
        start = card.index(heading)
        end = card.find("\n## ", start + len(heading))
        card = card[:start] + card[end + 1:] if end >= 0 else card[:start]
    write_text(path, card.rstrip("\n") + f"\n\n{heading}\n\n{text.strip()}\n")


def demo_card(meta: dict, model_cfg: dict) -> str:
    """Render the card of the bundled demo model from its ``vlm_micro.json`` metadata."""
    training = meta["training"]
    data = training["data"]
    recipe = training["recipe"]
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    heldout = {
        "held-out (all)": {
            "macro_f1": meta.get("heldout_macro_f1"), "accuracy": meta.get("heldout_accuracy"),
            "balanced_accuracy": meta.get("heldout_balanced_accuracy"),
            "anomaly_auroc": meta.get("heldout_anomaly_auroc"), "ece": meta.get("heldout_ece"),
            "n": meta.get("heldout_tiles"),
        }
    }
    for modality, values in (meta.get("heldout_per_modality") or {}).items():
        heldout[f"held-out {modality}"] = {"macro_f1": values.get("macro_f1"),
                                           "anomaly_auroc": values.get("anomaly_auroc"), "n": values.get("n_tiles")}
    per_class = "\n".join(
        f"| {name} | {_number(values.get('precision'))} | {_number(values.get('recall'))} | {values.get('support')} |"
        for name, values in (meta.get("heldout_per_class") or {}).items()
    )
    sections = [
        f"# {meta['name']}\n\n"
        "A small open_clip CLIP model trained from scratch on synthetic microscopy by `vlm-micro train-demo` "
        "(`make model`). It exists so that the pipeline runs end to end without downloading weights; it is "
        "not a model for real tissue.",
        "## Architecture\n\n"
        f"Image tower: ViT, {vision['image_size']} px input, patch {vision['patch_size']}, width {vision['width']}, "
        f"{vision['layers']} layers. Text tower: width {text['width']}, {text['layers']} layers, context "
        f"{text['context_length']} tokens, open_clip's BPE tokenizer (49408 tokens). Joint embedding: "
        f"{model_cfg['embed_dim']} dimensions. Tiles are {meta['tile_size_px']} px at {meta['pixel_size_um']} um/px "
        f"({meta['tile_size_px'] * meta['pixel_size_um']:g} um across).",
        "## Data\n\n"
        f"Synthetic fields of view from `vlm-micro synth` (seed {meta['training_seed']}, 512 x 512 px, "
        "fluorescence nuclear stain and H&E brightfield alternating): "
        f"{data['tiles']} annotated 64 px tiles from {data['images']} images, split by image into "
        f"{data['train']['images']} training and {data['validation']['images']} validation images.\n\n"
        + counts_table("cell type", {"train": data["train"]["cell_types"], "validation": data["validation"]["cell_types"]})
        + "\n\n"
        + counts_table("anomaly state", {"train": data["train"]["anomaly_states"], "validation": data["validation"]["anomaly_states"]}),
        "## Recipe\n\n"
        "Contrastive training with the project's own code (`vlm_micro.training`). Each tile is paired with two "
        "captions: one drawn from its cell type's synonyms times the modality templates of `config/labels.yaml`, one "
        "from its anomaly state's phrases (normal or a kind) times the anomaly templates. Two CLIP losses, tiles "
        "against cell type captions and tiles against state captions, count every caption of the tile's class or "
        f"state in the batch as a positive ({training.get('n_captions', 'n/a')} distinct captions in all). "
        f"AdamW, peak learning rate {recipe['learning_rate']}, weight decay {recipe['weight_decay']}, "
        f"{recipe['warmup_fraction']:.0%} linear warm-up then cosine decay, batch {recipe['batch_size']}, "
        f"up to {recipe['epochs']} epochs with early stopping on the mean of validation macro-F1 and anomaly AUROC "
        f"(best epoch {training['best_epoch']} of {training['epochs_run']} run). Class-balanced sampling, "
        "flips, 90-degree rotations, small intensity and stain jitter. "
        f"Training took {training['train_seconds']} s with {training['torch_threads']} torch CPU thread(s) "
        f"({training.get('total_seconds', 'n/a')} s in all with data rendering and evaluation). "
        "`make model` (`vlm-micro train-demo --out vlm_micro/models/demo`) rebuilds it; with the same torch version "
        f"({training.get('torch_version', 'n/a')}), thread count and CPU type the weights are bit-identical.\n\n"
        + calibration_text({k: meta[k] for k in ("temperature", "anomaly_temperature") if k in meta}),
        "## Held-out accuracy\n\n"
        f"`vlm-micro evaluate` on {meta.get('heldout_images')} synthetic images rendered with seed "
        f"{meta.get('heldout_seed')}, which training never used ({meta.get('heldout_tiles')} tiles), zero-shot with "
        "the prompts of `config/labels.yaml`:\n\n"
        + metrics_table(heldout)
        + f"\n\nAnomaly kind accuracy (anomalous tiles flagged with the right kind): "
        f"{_number(meta.get('heldout_anomaly_kind_accuracy'))}."
        + "\n\n| cell type | precision | recall | tiles |\n|---|---|---|---|\n" + per_class,
        "## What it cannot do\n\n"
        "- It has never seen a real image: only synthetic renderings of nuclei and stained cells. On real tissue or "
        "cell images its labels are a placeholder for a real model (see docs/models.md), not a measurement.\n"
        "- It knows six cell types (lymphocyte, neutrophil, macrophage, fibroblast, epithelial, tumor) and five "
        "anomaly kinds, and only the words of `config/labels.yaml`; other classes or prompts give arbitrary scores.\n"
        "- It expects 64 px tiles at 0.5 um/px and two looks: dark-background nuclear fluorescence and H&E "
        "brightfield. Other stains (for example IHC) and magnifications are out of its domain; "
        "`vlm-micro finetune` adapts it to labelled tiles of a new domain.\n"
        f"- Its text tower has seen only the {training.get('n_captions', 'n/a')} training captions, so free-text "
        "search works only with words from that vocabulary.",
    ]
    return "\n\n".join(sections) + "\n"

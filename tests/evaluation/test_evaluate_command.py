"""``vlm-micro evaluate`` end to end with a tiny model, and its output files."""

from __future__ import annotations

import json

import pandas as pd

from vlm_micro.cli import main
from vlm_micro.evaluation.evaluate import METRICS_FILE, write_evaluation


def _empty_config(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


def test_evaluate_writes_metrics_figure_and_page(tiny_dir, annotated_images, labels_file, tmp_path, capsys):
    out = tmp_path / "evaluation"
    status = main(["evaluate", "--model", f"local-dir:{tiny_dir}", "--annotations", str(annotated_images),
                   "--out", str(out), "--labels", str(labels_file), "--config", str(_empty_config(tmp_path)),
                   "--device", "cpu"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "macro_f1:" in printed

    metrics = json.loads((out / METRICS_FILE).read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "anomaly_auroc", "ece", "n_tiles"):
        assert key in metrics, key
    assert metrics["n_tiles"] == 8
    assert set(metrics["per_class"]) == {"alpha", "beta"}
    assert {"precision", "recall"} <= set(metrics["per_class"]["alpha"])
    assert 0.0 <= metrics["anomaly_auroc"] <= 1.0
    assert metrics["model"]["spec"] == f"local-dir:{tiny_dir}"

    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert len(predictions) == 8
    assert {"cell_type_pred", "anomaly_score", "prob_alpha"} <= set(predictions.columns)
    page = (out / "index.html").read_text()
    assert "tiny &lt;model&gt;" in page
    assert "<model>" not in page
    assert 'src="confusion_matrix.png"' in page
    assert not list(out.glob("*.tmp"))


def test_evaluate_without_annotations_fails(tmp_path, capsys):
    status = main(["evaluate", "--out", str(tmp_path / "x"), "--config", str(_empty_config(tmp_path))])
    assert status == 1
    assert "no annotations given" in capsys.readouterr().err


def test_metrics_json_has_no_nan(tmp_path):
    metrics = {"macro_f1": float("nan"), "nested": {"value": float("inf")}, "confusion_matrix": None}
    write_evaluation(tmp_path, metrics, pd.DataFrame({"a": [1]}))
    text = (tmp_path / METRICS_FILE).read_text()
    assert "NaN" not in text
    assert "Infinity" not in text
    assert json.loads(text)["macro_f1"] is None
    assert not (tmp_path / "confusion_matrix.png").exists()

"""Stage ``evaluate``: score one model bundle on the test partition (unseen speakers) only.

Refuses a test set that shares a speaker with the bundle's training speakers. Writes
``metrics/<model>.json`` (accuracy, uar, macro_f1, roc_auc, per_class.<label>.{precision,
recall,f1,support}, per_corpus.<corpus>.{uar,accuracy,macro_f1,n,recall.<label>}, n, n_speakers), the rows of a
confusion matrix for DVC's ``confusion`` template, per-class F1 for a bar plot, a PNG heat
map, and every test clip's probabilities (``<eval.out>/<model>.csv``, for parity checks).

Run: ``dvc repro evaluate@cnn`` (``dvc.yaml`` gives ``--metrics`` and ``--plots``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from pipeline import bundle as B, dataset, feed, params as P, stage
from pipeline.metrics import compute_metrics, prediction_table
from pipeline.speakers import LeakageError, check_unseen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write (dvc.yaml: metrics/<model>.json)")
    ap.add_argument("--plots", type=Path, required=True, help="folder of the plots (dvc.yaml: plots/<model>)")
    args = ap.parse_args(argv)
    params = P.load()
    train, data, features, evaluate = (P.section(params, s) for s in ("train", "data", "features", "evaluate"))
    name = args.model
    bundle = B.load(Path(train["out"]) / name)
    rows = pd.read_csv(Path(data["interim"]) / "split.csv", dtype={"source_label": str})
    test_rows = rows[rows.split == "test"]
    if test_rows.empty:
        raise P.ParamsError("split.csv has no test clips; check split.proportions / split.assign")
    check_unseen(test_rows.speaker.unique(), bundle.info["train_speakers"])
    sources = feed.open_inputs(test_rows, features_dir=Path(features["out"]), kinds=bundle.input_kinds)
    test = next(iter(sources.values()))
    proba = feed.predict(bundle, sources)
    label_index = {c: i for i, c in enumerate(bundle.labels)}
    y_true = test.rows.label.map(label_index).to_numpy()
    metrics = compute_metrics(y_true, proba, labels=bundle.labels, corpus=test.rows.corpus)
    metrics["n_speakers"] = int(test.rows.speaker.nunique())
    metrics["missing_features"] = len(test.missing)

    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    plot_dir = args.plots
    plot_dir.mkdir(parents=True, exist_ok=True)
    pred_labels = [bundle.labels[i] for i in proba.argmax(axis=1)]
    pd.DataFrame({"actual": test.rows.label, "predicted": pred_labels}).to_csv(plot_dir / "confusion.csv", index=False)
    pd.DataFrame({"label": bundle.labels, "f1": [metrics["per_class"][c]["f1"] for c in bundle.labels]}).to_csv(
        plot_dir / "per_class_f1.csv", index=False)
    pred_out = Path(evaluate["out"])
    pred_out.mkdir(parents=True, exist_ok=True)
    prediction_table(test.rows, proba, labels=bundle.labels).to_csv(pred_out / f"{name}.csv", index=False)
    from pipeline.plots import confusion_heatmap
    confusion_heatmap(test.rows.label, pred_labels, labels=bundle.labels, path=plot_dir / "confusion.png",
                      title=f"{name}: test speakers, UAR {metrics['uar']:.3f}")
    print(f"evaluate {name}: {metrics['n']} test clips from {metrics['n_speakers']} unseen speakers: "
          f"accuracy {metrics['accuracy']:.3f}, UAR {metrics['uar']:.3f}, macro F1 {metrics['macro_f1']:.3f}, "
          f"ROC-AUC {metrics['roc_auc']:.3f}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="evaluate", errors=(LeakageError, dataset.CacheError), allocator="unmap")

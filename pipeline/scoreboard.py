"""Stage ``scoreboard``: every model's protocol results side by side, as Markdown tables.

Reads ``metrics/<model>_protocol.json`` (the ``protocol`` stage, :func:`pipeline.folds.summarise`)
for each ``--models`` name and writes ``evaluate.scoreboard``:

1. per corpus, UAR mean ± sample std over folds (each fold's UAR averaged over seeds), the
   pooled UAR (every test clip of every fold at once, mean over seeds) ± its std over seeds,
   and the pooled macro-F1;
2. per class, the pooled recall over every corpus, and its lowest value over the corpora
   (``min``), so a class that a model never predicts on some corpus shows at a glance.

Run: ``dvc repro scoreboard`` (``python -m pipeline.scoreboard --models cnn svm --metrics metrics``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Mapping

from pipeline import params as P, stage
from pipeline.vocab import EMOTIONS


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def render(summaries: Mapping[str, dict]) -> str:
    """Markdown for ``{model: protocol summary}`` (all from the same protocol and seeds)."""
    first = next(iter(summaries.values()))
    corpora = sorted({c for s in summaries.values() for c in s["per_corpus"]})
    lines = [f"Protocol `{first['protocol']}`: {first['n_folds']} fold(s) x {first['n_seeds']} seed(s) "
             f"{first['seeds']}, {first['n']} test clips per seed, every test speaker unseen in training.", "",
             "UAR: mean ± std over folds | pooled UAR ± std over seeds | pooled macro-F1", "",
             "| model | " + " | ".join(corpora) + " | all |", "|---|" + "---:|" * (len(corpora) + 1)]
    for model, s in summaries.items():
        cells = []
        for c in corpora:
            b = s["per_corpus"].get(c)
            cells.append("n/a" if b is None else f"{_pm(b['uar_mean'], b['uar_std'])} \\| "
                         f"{_pm(b['uar_pooled'], b['uar_pooled_seed_std'])} \\| {b.get('macro_f1_pooled', float('nan')):.3f}")
        cells.append(f"{_pm(s['uar_mean'], s['uar_std'])} \\| {_pm(s['uar_pooled'], s['uar_pooled_seed_std'])} \\| "
                     f"{s['macro_f1_pooled']:.3f}")
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    classes = [c for c in EMOTIONS if any(c in s.get("recall", {}) for s in summaries.values())]
    lines += ["", "Recall per class, pooled over every corpus (lowest over the corpora in brackets):", "",
              "| model | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for model, s in summaries.items():
        cells = []
        for c in classes:
            per = [b["recall"][c] for b in s["per_corpus"].values() if c in b.get("recall", {})]
            cells.append(f"{s['recall'][c]:.2f} ({min(per):.2f})" if c in s.get("recall", {}) else "n/a")
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--metrics", type=Path, required=True, help="folder of <model>_protocol.json (dvc.yaml: metrics)")
    args = ap.parse_args(argv)
    params = P.load()
    out = Path(P.section(params, "evaluate")["scoreboard"])
    summaries = {}
    for model in args.models:
        path = args.metrics / f"{model}_protocol.json"
        if not path.is_file():
            raise P.ParamsError(f"{path}: no protocol results for {model!r}; run `dvc repro protocol@{model}` first")
        summaries[model] = json.loads(path.read_text())
    protocols = {(s["protocol"], tuple(s["seeds"]), s["n_folds"]) for s in summaries.values()}
    if len(protocols) > 1:
        raise P.ParamsError(f"the models were scored under different protocols/seeds {sorted(protocols)}; "
                            "rerun `dvc repro` so every protocol stage follows params.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(summaries))
    print(f"scoreboard: {len(summaries)} model(s) -> {out}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="scoreboard")

"""Stage ``scoreboard``: every model's protocol results side by side, as Markdown tables.

Reads ``metrics/<model>_protocol.json`` (the ``protocol`` stage, :func:`pipeline.folds.summarise`)
for each ``--models`` name and writes ``evaluate.scoreboard``:

1. per corpus, UAR mean ± sample std over folds (each fold's UAR averaged over seeds), the
   pooled UAR (every test clip of every fold at once, mean over seeds) ± its std over seeds,
   and the pooled macro-F1;
2. per class, the pooled recall over every corpus, and its lowest value over the corpora
   (``min``), so a class that a model never predicts on some corpus shows at a glance;
3. with ``--balanced``, both tables again for the speaker-balanced setting
   (``metrics/<model>_protocol_balanced.json``), under a heading of their own.

Run: ``dvc repro scoreboard`` (``python -m pipeline.scoreboard --models cnn svm --metrics metrics --balanced``).
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


def _stage(model: str) -> str:
    """The dvc.yaml stage that scores ``model`` under the protocol."""
    return "protocol_fusion" if model == "fusion" else f"protocol@{model}"


def _tables(summaries: Mapping[str, dict], corpora: list[str]) -> list[str]:
    """The UAR table and the per-class recall table of ``{model: protocol summary}``."""
    lines = ["| model | " + " | ".join(corpora) + " | all |", "|---|" + "---:|" * (len(corpora) + 1)]
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
    return lines


def render(summaries: Mapping[str, dict], balanced: Mapping[str, dict] | None = None) -> str:
    """Markdown for ``{model: protocol summary}`` (all from the same protocol and seeds), and
    for ``balanced`` (``{model: speaker-balanced summary}``, the protocol stage's ``--balanced``)
    as a section of its own: a transductive setting, never mixed with the inductive rows."""
    first = next(iter(summaries.values()))
    corpora = sorted({c for s in summaries.values() for c in s["per_corpus"]})
    lines = [f"Protocol `{first['protocol']}`: {first['n_folds']} fold(s) x {first['n_seeds']} seed(s) "
             f"{first['seeds']}, {first['n']} test clips per seed, every test speaker unseen in training.", "",
             "UAR: mean ± std over folds | pooled UAR ± std over seeds | pooled macro-F1", "",
             *_tables(summaries, corpora)]
    if balanced:
        left = {m: s["unbalanced_speakers"] for m, s in balanced.items() if s.get("unbalanced_speakers")}
        lines += ["", "Speaker-balanced decoding (transductive: per fold and seed, each test speaker's probabilities "
                  "divided by their mean over the speaker's test clips, over the classes the fold's labelled "
                  "(training and validation) speakers of its corpus show; `pipeline/balance.py`), the same runs:", "",
                  *_tables(balanced, corpora)]
        if left:
            floor = next(iter(balanced.values()))["min_clips"]
            lines += ["", f"Test speakers with fewer than {floor} clips, left unbalanced (per seed, over every fold): "
                      + ", ".join(f"`{m}` {n}" for m, n in left.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--metrics", type=Path, required=True, help="folder of <model>_protocol.json (dvc.yaml: metrics)")
    ap.add_argument("--balanced", action="store_true",
                    help="add the speaker-balanced section from <model>_protocol_balanced.json (protocol --balanced)")
    args = ap.parse_args(argv)
    params = P.load()
    out = Path(P.section(params, "evaluate")["scoreboard"])
    summaries = {}
    for model in args.models:
        path = args.metrics / f"{model}_protocol.json"
        if not path.is_file():
            raise P.ParamsError(f"{path}: no protocol results for {model!r}; run `dvc repro {_stage(model)}` first")
        summaries[model] = json.loads(path.read_text())
    balanced = {}
    for model in args.models if args.balanced else []:
        path = args.metrics / f"{model}_protocol_balanced.json"
        if not path.is_file():
            raise P.ParamsError(f"{path}: no speaker-balanced results for {model!r}; run `dvc repro {_stage(model)}` "
                                "(its command passes --balanced)")
        balanced[model] = json.loads(path.read_text())
    protocols = {(s["protocol"], tuple(s["seeds"]), s["n_folds"]) for s in [*summaries.values(), *balanced.values()]}
    if len(protocols) > 1:
        raise P.ParamsError(f"the models were scored under different protocols/seeds {sorted(protocols)}; "
                            "rerun `dvc repro` so every protocol stage follows params.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(summaries, balanced))
    print(f"scoreboard: {len(summaries)} model(s) -> {out}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="scoreboard")

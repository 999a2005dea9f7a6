"""Stage ``split``: class selection, then a speaker-independent train/val/test split.

Applies ``split.merge`` and ``split.classes`` to the manifest (every excluded clip is counted
in the report) and assigns every remaining clip to ``train``, ``val`` or ``test`` so that no
speaker is in two partitions. Speakers are split per corpus, interleaved by sex so that each
partition gets both sexes in proportion, deterministically for ``base.seed``.

Small corpora: a corpus listed in ``split.assign`` gets exactly that speaker assignment
(TESS: OAF train, YAF test; SAVEE: DC, JE train, JK val, KL test by default). Any other
corpus with fewer than 3 speakers is used for training only. The report says what happened.

Run: ``python -m pipeline.split`` (reads ``base.seed``, ``corpora``, ``data.interim``, ``split``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from pipeline import params as P, stage
from pipeline.speakers import PARTITIONS, assign_speakers, check_disjoint, corpus_rng
from pipeline.vocab import check_selection, map_label


def fixed_assignment(corpus: str, speakers: Sequence[str], rule: Mapping[str, Sequence]) -> dict[str, str]:
    """Apply ``split.assign.<corpus>`` (short speaker names, e.g. ``OAF``) to ``speakers``.

    A name YAML read as a number (``[01, 02]`` is ``[1, 2]``) matches the speaker whose
    numeric name has that value (``ravdess:01``); a name given twice is refused."""
    if not isinstance(rule, Mapping):
        raise P.ParamsError(f"params.yaml: split.assign.{corpus}={rule!r} must map train/val/test to lists of speakers")
    numeric = {int(s.split(":", 1)[1]): s for s in speakers if s.split(":", 1)[1].isdigit()}
    table = {}
    for part, names in rule.items():
        P.choice(part, key=f"split.assign.{corpus}", valid=PARTITIONS)
        for name in names or []:
            key = numeric.get(name, f"{corpus}:{name}") if isinstance(name, int) else f"{corpus}:{name}"
            if key in table:
                raise P.ParamsError(f"params.yaml: split.assign.{corpus} places speaker {name!r} twice "
                                    f"({table[key]} and {part}); list each speaker once")
            table[key] = part
    missing = sorted(set(speakers) - set(table))
    if missing:
        raise P.ParamsError(f"split.assign.{corpus} does not place speaker(s) {missing}; "
                            "add each to its train, val or test list")
    return {s: table[s] for s in speakers}


def split(manifest: pd.DataFrame, *, classes: Sequence[str], merge: Mapping[str, str],
          proportions: Mapping[str, float], assign: Mapping[str, Mapping], seed: int) -> tuple[pd.DataFrame, dict]:
    """Select classes and assign partitions; returns (split rows, notes per corpus)."""
    labels = manifest.emotion.map(lambda e: map_label(e, classes=classes, merge=merge))
    selected = manifest.assign(label=labels)[labels.notna()].copy()
    notes, parts = {}, {}
    for corpus, rows in selected.groupby("corpus", sort=True):
        sexes = rows.groupby("speaker").gender.first().to_dict()
        if corpus in assign:
            parts.update(fixed_assignment(corpus, list(sexes), assign[corpus]))
            notes[corpus] = f"fixed assignment from split.assign.{corpus}"
        elif len(sexes) < 3:
            parts.update({s: "train" for s in sexes})
            notes[corpus] = f"only {len(sexes)} speaker(s): training only (add split.assign.{corpus} to change)"
        else:
            parts.update(assign_speakers(sexes, proportions=proportions, rng=corpus_rng(seed, corpus)))
            notes[corpus] = "automatic, per sex, proportions from split.proportions"
    selected["split"] = selected.speaker.map(parts)
    return selected.reset_index(drop=True), notes


def report(manifest: pd.DataFrame, rows: pd.DataFrame, notes: Mapping[str, str], *, classes, merge) -> str:
    lines = ["# Split report\n", f"Classes: {', '.join(classes)}; merges: "
             + (", ".join(f"{a} -> {b}" for a, b in merge.items()) or "none") + "\n"]
    dropped = manifest[~manifest.clip_id.isin(rows.clip_id)]
    lines.append(f"Excluded by class selection: {len(dropped)} of {len(manifest)} clips\n")
    if len(dropped):
        lines.append(pd.crosstab(dropped.corpus, dropped.emotion).to_markdown() + "\n")
    lines.append("## Speakers per partition\n")
    for corpus, g in rows.groupby("corpus"):
        lines.append(f"### {corpus} ({notes[corpus]})\n")
        for part in PARTITIONS:
            spk = g[g.split == part].groupby("speaker").gender.first()
            desc = ", ".join(f"{s.split(':', 1)[1]} ({sex[0]})" for s, sex in spk.items()) or "none"
            lines.append(f"- {part}: {len(spk)} speakers, {int((g.split == part).sum())} clips: {desc}")
        lines.append("")
    lines.append("## Clips per partition and label\n")
    lines.append(pd.crosstab([rows.corpus, rows.split], rows.label, margins=True, margins_name="total").to_markdown())
    return "\n".join(lines) + "\n"


def main() -> int:
    params = P.load()
    seed, corpora = P.section(params, "base")["seed"], P.section(params, "corpora")
    interim = Path(P.section(params, "data")["interim"])
    cfg = P.section(params, "split")
    merge, proportions, assign = cfg["merge"], cfg["proportions"], cfg["assign"]
    classes = check_selection(classes=cfg["classes"], merge=merge)

    manifest = pd.read_csv(interim / "manifest.csv", dtype={"source_label": str})
    rows, notes = split(manifest, classes=classes, merge=merge, proportions=proportions, assign=assign, seed=seed)
    check_disjoint(rows)
    (interim / "splits").mkdir(parents=True, exist_ok=True)
    rows.to_csv(interim / "split.csv", index=False)
    for corpus in corpora:
        rows[rows.corpus == corpus].to_csv(interim / "splits" / f"{corpus}.csv", index=False)
    (interim / "split_report.md").write_text(report(manifest, rows, notes, classes=classes, merge=merge))
    counts = rows.split.value_counts()
    print(f"split: {len(rows)} clips of {len(manifest)} selected; " + ", ".join(
        f"{p} {counts.get(p, 0)} clips / {rows[rows.split == p].speaker.nunique()} speakers" for p in PARTITIONS))
    return 0


if __name__ == "__main__":
    stage.run(main, name="split")

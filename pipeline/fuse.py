"""Stage ``fuse``: the late-fusion bundle ``<train.out>/fusion`` from trained member bundles.

``models.fusion`` names the members (e.g. ``[cnn, svm]``, each trained by its ``train`` stage
on the same split) and their weights; the fusion predicts the weighted mean of the members'
class probabilities (:class:`pipeline.bundle.FusionBundle`). The member bundles are copied in,
so ``<train.out>/fusion`` is self-contained for ``ser predict``, ``ser timeline`` and the web
app. Its protocol results come from the members' protocol predictions
(``dvc repro protocol_fusion``): the same folds and seeds, no extra training.

Run: ``python -m pipeline.fuse``.
"""
from __future__ import annotations

from pathlib import Path

from pipeline import bundle as B, params as P, stage


def main(argv: list[str] | None = None) -> int:
    params = P.load()
    cfg = P.section(params, "models")["fusion"]
    out = Path(P.section(params, "train")["out"])
    members = {m: out / m for m in cfg["members"]}
    for name, folder in members.items():
        if not (folder / "bundle.json").is_file():
            raise P.ParamsError(f"{folder}: no trained {name!r} bundle for the fusion; run `dvc repro train@{name}`")
    try:
        B.save_fusion(out / "fusion", members=members, weights=cfg["weights"])
    except ValueError as err:
        raise P.ParamsError(str(err)) from err
    print(f"fuse: {' + '.join(f'{w:g} x {m}' for m, w in zip(cfg['members'], cfg['weights'], strict=True))} -> {out / 'fusion'}")
    return 0


if __name__ == "__main__":
    stage.run(main, name="fuse")

"""``ser``: predict emotions with a trained bundle, plot an emotion timeline, export to TFLite.

::

    ser predict PATH... [--list FILE] [--model DIR] [--json | --csv]
    ser timeline FILE [--window S] [--hop S] [--min-speech S] [--out PREFIX] [--json | --csv] [--model DIR]
    ser export [--model DIR] [--out FILE.tflite] [--check PATH...]
    ser sweep SPACE.yaml [--trials N] [--jobs J] [--dry-run | --no-start | --rank-only] [--apply]

Also ``python -m pipeline.cli``. Without ``--model`` the bundle of the last ``dvc repro``
with the best test UAR is used (``metrics/<model>.json`` -> ``<train.out>/<model>``, from
the project root: the nearest folder up from the current one holding ``params.yaml``).
Timeline defaults come from params.yaml's ``infer`` section (built-in defaults outside a
project). Each file gets one answer by the rule of ``Predictor.predict_recording`` (the web
app's too): one utterance cropped or padded as in training if shorter than two
``infer.window_s`` windows, else the mean over the timeline's speech windows. An input that
cannot be predicted (not audio, too short or long, silent, no speech, ...) gets one line on
stderr naming the file and the reason, and the others are still processed. Exit status: 0 all inputs done, 1 some input
failed, 2 usage error (bad arguments, no model).
"""
from __future__ import annotations

import argparse
import dataclasses
import contextlib
import csv
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from pipeline import params as P
from pipeline.corpora import AUDIO_SUFFIXES, audio_files
from pipeline.stage import quiet_tensorflow

if TYPE_CHECKING:
    from pipeline.infer import InferSettings

NO_MODEL = "no trained model found; run `dvc repro` or pass --model"


class UsageError(Exception):
    """Bad arguments or no model: reported on one line, exit status 2."""


# -- settings -----------------------------------------------------------------------------------
def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder from ``start`` (default: cwd) upwards holding ``params.yaml``."""
    start = (start or Path.cwd()).resolve()
    return next((d for d in (start, *start.parents) if (d / "params.yaml").is_file()), None)


def infer_settings(root: Path | None) -> InferSettings:
    """params.yaml's ``infer`` section under ``root`` (:class:`~pipeline.infer.InferSettings`),
    or params.yaml's defaults outside a project."""
    from pipeline.infer import InferSettings

    if root is None:
        return InferSettings.outside_project()
    return InferSettings.from_params(P.require(P.load(root / "params.yaml"), "infer"))


def best_bundle(root: Path | None) -> Path:
    """``<train.out>/<model>`` with the highest ``uar`` in ``metrics/<model>.json`` under ``root``."""
    from pipeline.infer import best_bundle as best

    if root is None:
        raise UsageError(NO_MODEL)
    try:
        return best(metrics_dir=root / "metrics", models_dir=root / P.require(P.load(root / "params.yaml"), "train.out"))
    except FileNotFoundError:
        raise UsageError(NO_MODEL) from None


def with_flags(settings: InferSettings, args: argparse.Namespace) -> InferSettings:
    """``settings`` with the command line's ``--max-duration`` (0: no limit), ``--window``,
    ``--hop`` and ``--min-speech`` applied, validated as the params are (a bad one: UsageError)."""
    max_duration = getattr(args, "max_duration", None)
    if max_duration is not None and max_duration < 0:
        raise UsageError(f"--max-duration {max_duration}: give seconds > 0, or 0 for no limit")
    try:
        if max_duration is not None:
            settings = dataclasses.replace(settings, max_duration_s=max_duration or None)
        return settings.replace(window_s=getattr(args, "window", None), hop_s=getattr(args, "hop", None),
                                min_speech_s=getattr(args, "min_speech", None))
    except P.ParamsError as err:
        flags = {"infer.window_s": "--window", "infer.hop_s": "--hop", "infer.min_speech_s": "--min-speech"}
        message = str(err).removeprefix("params.yaml: ")
        for key, flag in flags.items():
            message = message.replace(key, flag)
        raise UsageError(message) from None


def load_predictor(folder: Path, *, settings: InferSettings):
    """A :class:`~pipeline.infer.Predictor` for a bundle folder with the ``infer`` settings'
    input limits; a bad folder is a UsageError."""
    from pipeline.infer import InferenceError, Predictor

    from pipeline import vad

    try:
        if settings.min_speech_s > 0:
            vad.check()        # a detector that cannot run is a setup error, not every input's
        return Predictor(folder, **settings.predictor_kwargs())
    except (FileNotFoundError, InferenceError, P.ParamsError, vad.VADError) as err:
        raise UsageError(str(err)) from None


# -- inputs -------------------------------------------------------------------------------------
def expand_inputs(paths: Iterable[str], *, list_file: Path | None = None) -> list[Path]:
    """Files as given, folders as their audio files (recursive, sorted), then ``list_file``'s
    lines (blank lines and ``#`` comments skipped). Missing paths are kept: they fail later
    with the reason."""
    items = list(paths)
    if list_file is not None:
        try:
            lines = Path(list_file).read_text().splitlines()
        except OSError as err:
            raise UsageError(f"{list_file}: cannot read the list file ({err.strerror})") from None
        items += [s for line in lines if (s := line.strip()) and not s.startswith("#")]
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = audio_files(path)
            out += found if found else [path]  # an empty folder fails with the reason
        else:
            out.append(path)
    return out


def _fail(path: Path, reason: str, progress) -> None:
    message = reason if reason.startswith(str(path)) else f"{path}: {reason}"
    progress.write(f"ser: {message}", file=sys.stderr)


# -- predict ------------------------------------------------------------------------------------
def _row(path: Path, rec=None, error: str | None = None) -> dict[str, Any]:
    """``rec``: a :class:`~pipeline.infer.Recording`, or a bare Prediction (``--one-speaker``)."""
    if rec is None:
        return {"path": str(path), "error": error}
    pred, basis = (rec.prediction, rec.basis) if hasattr(rec, "basis") else (rec, "clip")
    return {"path": str(path), "emotion": pred.emotion, "confidence": pred.confidence,
            "probabilities": pred.probabilities, "basis": basis}


def cmd_predict(args: argparse.Namespace, root: Path | None) -> int:
    from tqdm import tqdm

    from pipeline.infer import SPEAKER_NORM_HINT, InferenceError

    inputs = expand_inputs(args.paths, list_file=args.list)
    if not inputs:
        raise UsageError("no input: pass audio files or folders, or --list FILE")
    if args.balance and not args.one_speaker:
        raise UsageError("--balance needs --one-speaker: it balances the classes over one speaker's clips")
    if args.classes and not args.balance:
        raise UsageError("--classes only applies with --balance (the classes a speaker's clips cover)")
    if args.balance:
        from pipeline.balance import BalanceError, check_clip_count
        try:
            check_clip_count(len(inputs))
        except BalanceError as err:
            raise UsageError(str(err)) from None
    predictor = load_predictor(args.model or best_bundle(root), settings=with_flags(infer_settings(root), args))
    labels = predictor.labels
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.csv else None
    if writer:
        writer.writerow(["path", "emotion", "confidence", *[f"p_{c}" for c in labels], "error"])
    rows, failed, results = [], 0, []
    progress = tqdm(inputs, desc="predict", unit="file", file=sys.stderr,
                    disable=len(inputs) < 2 or not sys.stderr.isatty())
    if predictor.speaker_norm and not args.one_speaker:
        raise UsageError(f"{predictor.folder}: {SPEAKER_NORM_HINT}")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if classes:
        try:
            predictor.class_mask(classes)
        except InferenceError as err:
            raise UsageError(f"--classes: {err}") from None
    for path in progress:
        try:
            if path.is_dir():
                raise InferenceError(f"{path}: no audio files ({' '.join(AUDIO_SUFFIXES)}) in this folder")
            results.append((path, predictor.load(path) if args.one_speaker else predictor.predict_recording_file(path), None))
        except (InferenceError, OSError) as err:
            failed += 1
            _fail(path, str(err), progress)
            results.append((path, None, str(err)))
    if args.one_speaker:  # every readable input is one speaker's clip: predicted together
        try:
            predictions = iter(predictor.predict_clips([y for _, y, err in results if err is None], one_speaker=True,
                                                       balance=args.balance, classes=classes))
        except InferenceError as err:   # e.g. too few readable clips to balance: nothing can be predicted
            raise UsageError(str(err)) from None
        results = [(path, next(predictions) if err is None else None, err) for path, _, err in results]
    for path, pred, err in results:
        row = _row(path, pred) if err is None else _row(path, error=err)
        if args.json:
            print(json.dumps(row), flush=True)
        elif writer:
            probs = row.get("probabilities", {})
            writer.writerow([row["path"], row.get("emotion", ""), row.get("confidence", ""),
                             *[probs.get(c, "") for c in labels], row.get("error", "")])
        elif "error" not in row:
            rows.append(row)
    if not (args.json or args.csv) and rows:
        print(_table(rows, labels))
    return 1 if failed else 0


def _table(rows: list[dict[str, Any]], labels: list[str]) -> str:
    from tabulate import tabulate

    body = [[r["path"], r["emotion"], r["confidence"], *[r["probabilities"][c] for c in labels]] for r in rows]
    return tabulate(body, headers=["path", "emotion", "confidence", *labels], floatfmt=".3f")


# -- timeline -----------------------------------------------------------------------------------
def plot_timeline(table, *, labels: list[str], hop_s: float, duration_s: float, title: str, path: Path) -> None:
    """Stacked class probabilities per speech window (at the window's centre, ``hop_s`` wide)
    and a band coloured by each window's top emotion; windows without speech are grey in the
    band and blank below."""
    from matplotlib import colormaps

    from pipeline.plots import subplots

    colours = dict(zip(labels, colormaps["tab10"].colors, strict=False))   # 10 colours, <= 10 labels
    fig, (band, ax) = subplots(2, 1, sharex=True, figsize=(10, 4),
                                   gridspec_kw={"height_ratios": [1, 6], "hspace": 0.05})
    speech = table[table["speech"].astype(bool)]
    centres = ((speech["start_s"] + speech["end_s"]) / 2).to_numpy(dtype=float)
    bottom = 0.0 * centres
    for c in labels:
        p = speech[f"p_{c}"].to_numpy(dtype=float)
        ax.bar(centres, p, width=hop_s, bottom=bottom, color=colours[c], label=c, linewidth=0)
        bottom = bottom + p
    all_centres = ((table["start_s"] + table["end_s"]) / 2).to_numpy(dtype=float)
    band.bar(all_centres, 1.0, width=hop_s, linewidth=0,
             color=[colours[e] if s else "#d0d4da" for e, s in zip(table["emotion"], table["speech"], strict=True)])
    band.set_yticks([])
    band.set_ylabel("top", rotation=0, ha="right", va="center")
    band.set_title(title + " (grey: no speech)")
    ax.set(xlim=(0, max(duration_s, 1e-3)), ylim=(0, 1), xlabel="time (s, window centre)", ylabel="probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def cmd_timeline(args: argparse.Namespace, root: Path | None) -> int:
    from pipeline.infer import InferenceError

    settings = with_flags(infer_settings(root), args)
    predictor = load_predictor(args.model or best_bundle(root), settings=settings)
    try:
        y = predictor.decode(args.file)
        table = predictor.timeline(y, name=str(args.file))
    except InferenceError as err:
        print(f"ser: {err}", file=sys.stderr)
        return 1
    window_s, hop_s = settings.window_s, settings.hop_s
    prefix = Path(args.out) if args.out else Path.cwd() / f"{Path(args.file).stem}_timeline"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    duration_s = len(y) / predictor.config.sr
    data = prefix.with_name(prefix.name + (".json" if args.json else ".csv"))
    if args.json:
        windows = json.loads(table.to_json(orient="records"))     # NaN (windows without speech) as null
        data.write_text(json.dumps({"file": str(args.file), "duration_s": duration_s, "window_s": window_s,
                                    "hop_s": hop_s, "min_speech_s": settings.min_speech_s,
                                    "labels": predictor.labels, "windows": windows}, indent=1) + "\n")
    else:
        table.to_csv(data, index=False)
    png = prefix.with_name(prefix.name + ".png")
    plot_timeline(table, labels=predictor.labels, hop_s=hop_s, duration_s=duration_s,
                  title=f"{Path(args.file).name}: {window_s:g} s windows every {hop_s:g} s", path=png)
    n_speech = int(table.speech.sum())
    print(f"timeline: {n_speech} of {len(table)} windows hold speech, {duration_s:.1f} s -> {data}, {png}")
    if not n_speech:
        print(f"ser: {args.file}: no window holds {settings.min_speech_s:g} s of speech; lower --min-speech",
              file=sys.stderr)
    return 0


# -- export -------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace, root: Path | None) -> int:
    from pipeline.export import TFLitePredictor, export_bundle
    from pipeline.infer import InferenceError

    if args.out is not None and args.out.suffix != ".tflite":
        raise UsageError(f"--out {args.out}: the file name must end in .tflite")
    settings = infer_settings(root)
    folder = args.model or best_bundle(root)
    keras_predictor = load_predictor(folder, settings=settings)
    try:
        out = export_bundle(folder, out=args.out)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"export: {folder} -> {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.parent / 'export.json'}")
    if not args.check:
        return 0
    with _native_stderr_silenced():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" notice
        lite = TFLitePredictor(folder, tflite=out, **settings.predictor_kwargs())
    failed = 0
    for path in expand_inputs(args.check):
        try:
            a, b = keras_predictor.predict_file(path), lite.predict_file(path)
        except InferenceError as err:
            failed += 1
            print(f"ser: {err}", file=sys.stderr)
            continue
        diff = max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities)
        same = a.emotion == b.emotion and diff <= args.tolerance
        failed += not same
        print(f"{'ok  ' if same else 'DIFF'} {path}: keras {a.emotion} tflite {b.emotion}, max |dp| {diff:.1e}")
    return 1 if failed else 0


# -- entry point --------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ser", description="Speech emotion recognition with a trained model bundle.",
        epilog="exit status: 0 every input done, 1 some input failed (one line each on stderr), 2 usage error")
    sub = ap.add_subparsers(dest="command", required=True)
    model_help = "bundle folder (default: the best by test UAR from the last `dvc repro`)"

    p = sub.add_parser("predict", help="emotion and class probabilities of audio files")
    p.add_argument("paths", nargs="*", metavar="PATH", help="audio files, or folders searched recursively")
    p.add_argument("--list", type=Path, metavar="FILE", help="a file of paths, one per line")
    p.add_argument("--model", type=Path, metavar="DIR", help=model_help)
    p.add_argument("--max-duration", type=float, metavar="S",
                   help="refuse longer inputs, in s (default: infer.max_duration_s; 0: no limit)")
    p.add_argument("--one-speaker", action="store_true",
                   help="the inputs are clips of one speaker: predict them together (required by a model trained "
                        "with train.speaker_norm: true, and by --balance)")
    p.add_argument("--balance", action="store_true",
                   help="with --one-speaker: speaker-balanced decoding (transductive; assumes the clips cover the "
                        "emotions about evenly; at least 14 clips): each class's probabilities divided by their "
                        "mean over the clips")
    p.add_argument("--classes", metavar="A,B,...",
                   help="with --balance: the emotions the speaker's clips cover (default: all the model's); the "
                        "others get probability 0")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per input per line")
    fmt.add_argument("--csv", action="store_true", help="CSV: path, emotion, confidence, p_<label>..., error")
    p.set_defaults(run=cmd_predict)

    t = sub.add_parser("timeline", help="emotion over time in a long recording: a table and a PNG")
    t.add_argument("file", metavar="FILE")
    t.add_argument("--window", type=float, metavar="S", help="window length in s (default: infer.window_s)")
    t.add_argument("--hop", type=float, metavar="S", help="hop between windows in s (default: infer.hop_s)")
    t.add_argument("--min-speech", type=float, metavar="S",
                   help="skip windows with less speech than this, in s, by the voice-activity detector "
                        "(default: infer.min_speech_s)")
    t.add_argument("--max-duration", type=float, metavar="S",
                   help="refuse longer recordings, in s (default: infer.max_duration_s; 0: no limit)")
    t.add_argument("--out", metavar="PREFIX", help="writes PREFIX.csv (or .json) and PREFIX.png "
                   "(default: ./<file stem>_timeline)")
    t.add_argument("--model", type=Path, metavar="DIR", help=model_help)
    fmt = t.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="write the table as JSON")
    fmt.add_argument("--csv", action="store_true", help="write the table as CSV (the default)")
    t.set_defaults(run=cmd_timeline)

    e = sub.add_parser("export", help="TensorFlow Lite export of a bundle")
    e.add_argument("--model", type=Path, metavar="DIR", help=model_help)
    e.add_argument("--out", type=Path, metavar="FILE.tflite", help="default: <bundle>/model.tflite")
    e.add_argument("--check", nargs="+", metavar="PATH", help="compare Keras and TFLite predictions on these")
    e.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed probability difference")
    e.set_defaults(run=cmd_export)

    from pipeline import sweep
    s = sub.add_parser("sweep", help="hyperparameter search on the DVC experiment queue (see pipeline/sweep.py)")
    sweep.add_arguments(s)
    s.set_defaults(run=lambda args, root: sweep.run(args))
    return ap


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send writes to file descriptor 2 from native code to /dev/null: TensorFlow prints its
    oneDNN notice while loading, before TF_CPP_MIN_LOG_LEVEL applies."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    from pipeline.sweep import SweepError
    args = parser().parse_args(argv)
    quiet_tensorflow()   # TensorFlow's C++ start-up notices (set TF_CPP_MIN_LOG_LEVEL=0 to see them)
    if args.command != "sweep":
        from pipeline.egemaps import preload

        preload()  # openSMILE before TensorFlow (the other order aborts an SVM bundle's extraction)
        with _native_stderr_silenced():
            import tensorflow  # noqa: F401  (loaded here so its start-up notices stay off stderr)
    try:
        return args.run(args, project_root())
    except (UsageError, P.ParamsError, SweepError) as err:
        print(f"ser {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

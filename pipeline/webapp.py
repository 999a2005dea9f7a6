"""Web app: upload or record a clip in the browser and see the emotion the model hears.

One page (``pipeline/webapp_static/``: plain HTML, CSS and vanilla JavaScript, no build step,
nothing from a CDN) over a small JSON API, documented by OpenAPI at ``/docs`` (Swagger UI) and
``/redoc``, both served from the ``fastapi-offline`` wheel's assets (no CDN: they work without
internet), and ``/openapi.json``:

- ``POST /predict``: a multipart upload (field ``file``) → :class:`PredictionOut`, by the one
  rule of :meth:`Predictor.predict_recording` that ``ser predict`` uses too: audio of at
  least two ``infer.window_s`` windows also gets a timeline, and its headline emotion is the
  mean over the windows holding speech (the model hears ``features.seconds``, or a cropping
  model's ``crop_s``, at a time; one crop of a long recording would ignore most of it); input
  without speech gets 422.
- ``GET /health``: the model in use, its labels and the upload limit.

Errors are JSON ``{"detail": "..."}`` naming the upload and the reason: 413 over
``infer.max_upload_mb`` (refused from the ``Content-Length`` header before the body is read,
or as soon as a streamed body passes the limit) or audio longer than ``infer.max_duration_s``
(from the header, or while decoding: never more is decoded), 415 not audio libsndfile can
decode, 422 empty, truncated, too short, silent, or NaN, infinite or constant samples. An upload is decoded from a
``tempfile.TemporaryDirectory`` that is removed when the request ends; nothing else is written.

Run: ``python -m pipeline.webapp [--model models/cnn] [--host 127.0.0.1] [--port 8000]``;
without ``--model`` the bundle with the best test UAR in ``metrics/*.json`` is served.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from pipeline import audio, params as P, vad
from pipeline.infer import InferenceError, InferSettings, Predictor, best_bundle

STATIC_DIR = Path(__file__).with_name("webapp_static")
EMOJI = {"neutral": "😐", "calm": "😌", "happy": "😄", "sad": "😢", "angry": "😠", "fearful": "😨",
         "disgust": "🤢", "surprised": "😲", "boredom": "🥱"}
_FORM_SLACK_BYTES = 64 * 1024      # multipart boundaries and part headers around the file


class TimelineWindow(BaseModel):
    start_s: float = Field(description="window start, seconds from the beginning")
    end_s: float = Field(description="window end, seconds")
    speech_s: float = Field(description="seconds of the window the voice-activity detector calls speech")
    speech: bool = Field(description="at least infer.min_speech_s of speech: predicted; else skipped")
    emotion: str | None = Field(description="the most probable class; null for a window without speech")
    emoji: str | None
    confidence: float | None = Field(ge=0, le=1)
    probabilities: dict[str, float] | None


class PredictionOut(BaseModel):
    emotion: str = Field(description="the most probable class")
    emoji: str
    confidence: float = Field(ge=0, le=1, description="probability of `emotion`")
    probabilities: dict[str, float] = Field(description="every class, in the model's output order; sums to 1")
    duration_s: float = Field(description="length of the decoded audio, seconds")
    basis: Literal["clip", "timeline"] = Field(
        description="clip: the recording as one utterance, cropped or padded as in training; "
                    "timeline: the mean over the timeline's windows that hold speech")
    timeline: list[TimelineWindow] | None = Field(
        description="every window (speech or not) for audio of at least two windows, else null")


class HealthOut(BaseModel):
    status: Literal["ok"]
    model: str
    labels: list[str]
    sample_rate: int
    max_upload_mb: float


class ErrorOut(BaseModel):
    detail: str


def _refusal(status: int, detail: str) -> tuple[dict, dict]:
    body = json.dumps({"detail": detail}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]},
            {"type": "http.response.body", "body": body})


class UploadLimit:
    """ASGI middleware refusing a request body over ``max_bytes`` with 413.

    A declared ``Content-Length`` over the limit is refused before any of the body is read; a
    streamed (chunked) body is refused as soon as the bytes received pass the limit, and the
    app then sees a client disconnect whose response is dropped.
    """

    def __init__(self, app, *, max_bytes: int, max_upload_mb: float):
        self.app, self.max_bytes = app, max_bytes
        self.detail = f"upload too large: the limit is {max_upload_mb:g} MB (infer.max_upload_mb); send a shorter clip"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            for message in _refusal(413, self.detail):
                await send(message)
            return
        seen, refused = 0, False

        async def counted_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    for reply in _refusal(413, self.detail):
                        await send(reply)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)


def decode_upload(path: Path, *, name: str, sr: int, max_duration_s: float) -> np.ndarray:
    """Mono float32 samples at ``sr`` Hz of the uploaded file at ``path``, or HTTPException:
    415 for bytes libsndfile cannot open, 413 for audio longer than ``max_duration_s`` (from
    the header before decoding, or while decoding when the header gives no length, so a small
    compressed file cannot claim hours of memory), 422 for a file truncated, without frames, or
    with NaN, infinite or constant samples. Messages name the upload by ``name`` (never the
    temporary path)."""
    def fail(status: int, err: Exception) -> HTTPException:
        return HTTPException(status, detail=str(err).replace(str(path), name))

    try:
        audio.info(path)
    except audio.AudioError as err:
        raise fail(415, err) from None
    try:
        return audio.load(path, sr=sr, max_duration_s=max_duration_s)
    except audio.AudioTooLong as err:
        raise HTTPException(413, detail=str(err).replace(str(path), name).replace(
            "cut it into shorter files", f"the web app takes at most {max_duration_s:g} s (infer.max_duration_s); "
                                         "cut it, or use `ser timeline --max-duration`")) from None
    except audio.AudioError as err:
        raise fail(422, err) from None


def analyse(predictor: Predictor, y: np.ndarray, *, name: str) -> PredictionOut:
    """The response for mono samples ``y`` at ``predictor.config.sr``: the recording-level
    answer of :meth:`Predictor.predict_recording` (InferenceError for what it refuses)."""
    rec = predictor.predict_recording(y, name=name)
    pred, labels = rec.prediction, predictor.labels
    timeline = None if rec.timeline is None else [
        TimelineWindow(start_s=row.start_s, end_s=row.end_s, speech_s=row.speech_s, speech=bool(row.speech),
                       emotion=row.emotion if row.speech else None,
                       emoji=EMOJI.get(row.emotion, "🎭") if row.speech else None,
                       confidence=float(row.confidence) if row.speech else None,
                       probabilities={c: float(getattr(row, f"p_{c}")) for c in labels} if row.speech else None)
        for row in rec.timeline.itertuples(index=False)]
    return PredictionOut(emotion=pred.emotion, emoji=EMOJI.get(pred.emotion, "🎭"), confidence=pred.confidence,
                         probabilities=pred.probabilities, duration_s=rec.duration_s, basis=rec.basis,
                         timeline=timeline)


def create_app(predictor: Predictor, *, settings: InferSettings | None = None, model_name: str = "model") -> FastAPI:
    """The FastAPI app serving ``predictor`` (the page, ``/predict``, ``/health``, ``/docs``),
    with ``settings``' upload limits (default: params.yaml's, :meth:`InferSettings.outside_project`)."""
    settings = settings or InferSettings.outside_project()
    from fastapi_offline import FastAPIOffline

    # FastAPIOffline serves Swagger UI and ReDoc from assets shipped in its wheel: /docs works offline.
    app = FastAPIOffline(title="Speech emotion recognition", version="1.0",
                         description="Upload a speech clip (any format libsndfile decodes: WAV, FLAC, OGG, MP3, ...) "
                                     "and get the emotion the model hears, with every class's probability.")
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes + _FORM_SLACK_BYTES,
                       max_upload_mb=settings.max_upload_mb)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    lock = threading.Lock()   # one prediction at a time: TensorFlow already uses every core
    decoding = threading.BoundedSemaphore(2)   # requests past their upload at once: 2 x infer.max_duration_s of audio
    errors = {code: {"model": ErrorOut, "description": text} for code, text in
              ((413, "upload over infer.max_upload_mb, or audio over infer.max_duration_s"),
               (415, "not audio libsndfile can decode"),
               (422, "empty, truncated, too short, silent, no speech, or NaN, infinite or constant samples"))}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        return HealthOut(status="ok", model=model_name, labels=predictor.labels, sample_rate=predictor.config.sr,
                         max_upload_mb=settings.max_upload_mb)

    @app.post("/predict", response_model=PredictionOut, responses=errors)
    def predict(file: UploadFile = File(description="an audio file")) -> PredictionOut:
        name = Path(file.filename or "upload").name[:120] or "upload"
        data = file.file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, detail=f"{name}: upload too large: the limit is {settings.max_upload_mb:g} MB "
                                            "(infer.max_upload_mb); send a shorter clip")
        if not data:
            raise HTTPException(422, detail=f"{name}: empty upload (0 bytes); choose an audio file")
        with decoding:      # decoded audio is held by at most two requests at once
            with tempfile.TemporaryDirectory(prefix="ser-web-") as tmp:
                path = Path(tmp) / "upload"          # no suffix: decoded by content
                path.write_bytes(data)
                del data
                y = decode_upload(path, name=name, sr=predictor.config.sr, max_duration_s=settings.max_duration_s)
            try:
                with lock:
                    return analyse(predictor, y, name=name)
            except InferenceError as err:
                raise HTTPException(422, detail=str(err)) from None

    return app


def main(argv: list[str] | None = None) -> int:
    """``ser-web`` / ``python -m pipeline.webapp``: load the bundle, then serve until Ctrl-C."""
    try:
        return serve(argv)
    except (P.ParamsError, FileNotFoundError, InferenceError, vad.VADError) as err:
        sys.exit(f"ser-web: {err}")


def build(*, model: Path | None, params_path: Path, metrics: Path) -> tuple[FastAPI, Path]:
    """The app for ``params_path``'s ``infer`` settings and the bundle ``model`` (default: the
    best by test UAR in ``metrics``), and that bundle's folder."""
    params = P.load(params_path)
    settings = InferSettings.from_params(P.require(params, "infer"))
    kwargs = settings.predictor_kwargs()
    if settings.min_speech_s > 0:
        vad.check()        # a detector that cannot run stops the server at start, with the fix
    folder = model or best_bundle(metrics_dir=metrics, models_dir=Path(P.require(params, "train.out")))
    predictor = Predictor(folder, **kwargs)
    return create_app(predictor, settings=settings, model_name=str(folder)), folder


def app_from_env() -> FastAPI:
    """App factory for several worker processes (``ser-web --workers N``, or
    ``uvicorn --factory pipeline.webapp:app_from_env --workers N``): each worker loads the bundle
    named by ``SER_WEB_MODEL`` (default: the best in ``SER_WEB_METRICS``, ``metrics``) with the
    ``infer`` settings of ``SER_WEB_PARAMS`` (``params.yaml``)."""
    model = os.environ.get("SER_WEB_MODEL")
    return build(model=Path(model) if model else None, params_path=Path(os.environ.get("SER_WEB_PARAMS", P.DEFAULT_PATH)),
                 metrics=Path(os.environ.get("SER_WEB_METRICS", "metrics")))[0]


def serve(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ser-web", description="Serve the emotion-recognition web page and API.")
    ap.add_argument("--model", type=Path, help="bundle folder (default: the best by test UAR in --metrics)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    ap.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    ap.add_argument("--params", type=Path, default=P.DEFAULT_PATH, help="params file (default: %(default)s)")
    ap.add_argument("--metrics", type=Path, default=Path("metrics"), help="metrics folder (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes, each with its own copy of the model and one prediction at a time "
                         "(default: %(default)s)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        raise P.ParamsError(f"--workers {args.workers}: must be at least 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")   # TensorFlow's C++ notices; set 0 to see them
    import uvicorn

    if args.workers > 1:   # everything a worker would refuse is checked here first, once
        _, folder = build(model=args.model, params_path=args.params, metrics=args.metrics)
        os.environ.update(SER_WEB_MODEL=str(folder.resolve()), SER_WEB_PARAMS=str(args.params.resolve()))
        print(f"ser-web: serving {folder} with {args.workers} workers on http://{args.host}:{args.port}/ "
              "(API docs: /docs)", flush=True)
        uvicorn.run("pipeline.webapp:app_from_env", factory=True, workers=args.workers, host=args.host, port=args.port)
        return 0
    app, folder = build(model=args.model, params_path=args.params, metrics=args.metrics)
    print(f"ser-web: serving {folder} on http://{args.host}:{args.port}/ (API docs: /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Web app: /predict answers, errors and limits, the OpenAPI schema, and the page in a real browser.

Everything runs on a tiny bundle trained here on synthetic clips (CI has no trained models).
The browser test drives headless Chromium through chromedriver against the app served by
uvicorn on 127.0.0.1, and is skipped, with the reason, when either is missing.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from fakes import PARAMS
from pipeline import bundle as B, params as P
from pipeline.extraction import FeatureConfig, extract, prepare
from pipeline.infer import InferSettings, Predictor
from pipeline.train import fit
from pipeline.webapp import best_bundle, create_app
from bad_inputs import CASES, NA

SR = 16000
LABELS = ["neutral", "happy", "sad", "angry"]
ROOT = Path(__file__).resolve().parents[1]


def speechlike(duration_s: float, *, f0_hz: float = 140.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    """A voiced, syllable-paced harmonic tone with vibrato and a little noise, float32 (n,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sr)) / sr
    f0 = f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) ** 2
    return (0.2 * y * envelope + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def wav_bytes(y: np.ndarray, *, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    """A tiny cnn bundle with the project's real feature config, trained for one epoch."""
    config = FeatureConfig.from_params(P.load(ROOT / "params.yaml")["features"], sr=SR)
    clips = [prepare(speechlike(1.0 + 0.1 * i, f0_hz=100 + 40 * (i % 4), seed=i), config=config) for i in range(8)]
    feats = extract(np.stack([c[0] for c in clips]), np.array([c[1] for c in clips]), config=config)
    x = feats["sequence"].astype(np.float16).astype(np.float32)
    mean, std = B.fit_stats(x, feats["n_frames"])
    z = B.standardise(x, feats["n_frames"], mean=mean, std=std)
    y = np.arange(len(x)) % len(LABELS)
    tiny = {"input": "sequence", "pooling": "mean", "filters": [4], "kernel_size": 3, "pool_size": 2, "dropout": 0.0, "dense": [4], "mask_padding": False, "conv": "1d", "stride": 1, "specaugment": None}
    train = {**PARAMS["train"], "epochs": 1, "batch_size": 8, "learning_rate": 0.01, "class_weight": "none", "threads": 2}
    model, _ = fit(model_name="cnn", model_params=tiny, train_cfg=train, seed=0, x_train=z, y_train=y,
                   x_val=None, y_val=None, labels=LABELS)
    folder = tmp_path_factory.mktemp("bundle") / "tiny"
    B.save(folder, model=model, labels=LABELS, input_kind="sequence", feature_config=config.to_dict(),
           speaker_norm=False, mean=mean, std=std, info={"train_speakers": ["x:1"], "feature_dtype": "float16"})
    return folder


@pytest.fixture(scope="session")
def predictor(bundle_dir) -> Predictor:
    return Predictor(bundle_dir)


@pytest.fixture(scope="session")
def client(predictor) -> TestClient:
    return TestClient(create_app(predictor, model_name="tiny"))


def post(client: TestClient, data: bytes, name: str = "clip.wav", kind: str = "audio/wav"):
    return client.post("/predict", files={"file": (name, data, kind)})


def test_a_clip_gets_an_emotion_and_probabilities_summing_to_one(client):
    r = post(client, wav_bytes(speechlike(2.0)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["probabilities"]) == LABELS
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["emotion"] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["confidence"] == pytest.approx(body["probabilities"][body["emotion"]])
    assert body["emoji"] and body["duration_s"] == pytest.approx(2.0, abs=1e-3)
    assert body["timeline"] is None and body["basis"] == "clip"


def test_any_container_and_rate_is_decoded_by_content(client):
    buf = io.BytesIO()
    sf.write(buf, np.stack([speechlike(1.5, sr=44100)] * 2, axis=1), 44100, format="FLAC")
    r = post(client, buf.getvalue(), name="stereo.wav", kind="application/octet-stream")
    assert r.status_code == 200, r.text
    assert r.json()["duration_s"] == pytest.approx(1.5, abs=1e-3)


def test_a_long_clip_gets_a_timeline_and_the_mean_of_its_speech_windows(client):
    y = speechlike(12.0)
    y[6 * SR:] = 0.0                                          # the last 6 s are silent
    body = post(client, wav_bytes(y)).json()
    timeline = body["timeline"]
    assert body["basis"] == "timeline"
    assert [w["start_s"] for w in timeline] == [float(s) for s in range(10)]      # every window
    speech = [w for w in timeline if w["speech"]]
    assert [w["start_s"] for w in speech][:4] == [0.0, 1.0, 2.0, 3.0]
    assert not {6.0, 7.0, 8.0, 9.0} & {w["start_s"] for w in speech}             # silent: marked, not judged
    assert all(w["emotion"] is None and w["probabilities"] is None for w in timeline if not w["speech"])
    assert all(w["end_s"] - w["start_s"] == pytest.approx(3.0) for w in timeline)
    for w in speech:
        assert sum(w["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    mean = np.mean([list(w["probabilities"].values()) for w in speech], axis=0)
    assert list(body["probabilities"].values()) == pytest.approx(mean.tolist())


def test_the_web_app_and_the_cli_give_one_answer_per_recording(client, bundle_dir, tmp_path, capsys):
    """Short and long recordings get the same answer from /predict and from `ser predict`
    (and the TensorFlow Lite predictor runs the same Predictor rule): one rule in one place."""
    from pipeline.cli import main

    for seconds in (2.0, 12.0):
        path = tmp_path / f"rec{seconds:g}.wav"
        path.write_bytes(wav_bytes(speechlike(seconds, seed=3)))
        web = post(client, path.read_bytes()).json()
        assert main(["predict", "--json", "--model", str(bundle_dir), str(path)]) == 0
        cli = json.loads(capsys.readouterr().out)
        assert web["basis"] == cli["basis"] == ("clip" if seconds < 6 else "timeline")
        assert web["emotion"] == cli["emotion"]
        assert list(web["probabilities"].values()) == pytest.approx(list(cli["probabilities"].values()))


@pytest.mark.parametrize("data, name, status, match", [
    (b"these are meeting notes, not audio\n" * 20, "notes.txt", 415, r"notes\.txt: not audio libsndfile can decode"),
    (b"", "empty.wav", 422, r"empty\.wav: empty upload"),
    (wav_bytes(speechlike(1.0))[:-8000], "cut.wav", 422, r"cut\.wav: truncated"),
    (wav_bytes(speechlike(0.1)), "short.wav", 422, r"short\.wav: too short \(0\.100 s\)"),
    (wav_bytes(np.zeros(SR, dtype=np.float32)), "quiet.wav", 422, r"quiet\.wav: silent"),
])
def test_bad_uploads_are_refused_with_the_reason(client, data, name, status, match):
    r = post(client, data, name=name)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert re.search(match, detail), detail
    assert "ser-web-" not in detail                          # names the upload, not the temporary path


def test_a_missing_file_field_is_a_validation_error(client):
    assert client.post("/predict", data={"other": "x"}).status_code == 422


@pytest.fixture(scope="module")
def small_client(predictor) -> TestClient:
    return TestClient(create_app(predictor, settings=InferSettings.outside_project().replace(max_upload_mb=0.05, max_duration_s=5.0)))


def test_an_oversized_upload_gets_413(small_client):
    r = post(small_client, wav_bytes(speechlike(4.0)))        # 128 kB > 0.05 MB + form slack
    assert r.status_code == 413
    assert "limit is 0.05 MB (infer.max_upload_mb)" in r.json()["detail"]


def test_an_oversized_streamed_body_gets_413_without_content_length(small_client):
    def chunks():
        for _ in range(40):
            yield b"\0" * 8192
    r = small_client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    assert "infer.max_upload_mb" in r.json()["detail"]


def test_a_file_over_the_duration_cap_is_refused(small_client):
    buf = io.BytesIO()
    sf.write(buf, np.zeros(6 * 8000, dtype=np.float32), 8000, format="FLAC")   # 6 s, a few hundred bytes
    r = post(small_client, buf.getvalue(), name="long.flac")
    assert r.status_code == 413 and "at most 5 s (infer.max_duration_s)" in r.json()["detail"]


@pytest.mark.parametrize("case", [c for c in CASES if c.web != NA], ids=lambda c: c.id)
def test_every_bad_input_gets_its_status_and_reason(client, tmp_path, case):
    """The bad-input table (tests/bad_inputs.py), uploaded under the app's default settings."""
    case.make(tmp_path / "upload.wav")
    r = post(client, (tmp_path / "upload.wav").read_bytes(), name=f"{case.id}.wav")
    if case.web is None:
        assert r.status_code == 200, r.text
        return
    status, match = case.web
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert re.search(match, detail) and detail.startswith(f"{case.id}.wav: "), detail
    assert "ser-web-" not in detail


def test_a_decompression_bomb_is_refused_in_bounded_memory(client):
    """A FLAC of a few KB claiming no length that would decode to 2 hours (460 MB of float32 at
    16 kHz): refused while decoding, having held at most infer.max_duration_s of it."""
    import tracemalloc

    from bad_inputs import flac_without_length, long_square

    data = flac_without_length(long_square(2 * 3600, sr=SR), sr=SR)
    assert len(data) < 2**20                              # well under the upload limit
    tracemalloc.start()
    r = post(client, data, name="bomb.flac")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.status_code == 413 and "too long: more than 600 s" in r.json()["detail"]
    assert peak < 3 * 600 * SR * 4, f"peak {peak / 2**20:.0f} MiB"   # a few copies of 600 s, not 2 h


def test_openapi_schema_health_and_page(client):
    schema = client.get("/openapi.json").json()
    assert "post" in schema["paths"]["/predict"]
    ok = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "413", "415", "422"} <= set(ok)
    assert {"PredictionOut", "TimelineWindow"} <= set(schema["components"]["schemas"])
    assert client.get("/docs").status_code == 200
    assert client.get("/health").json() == {"status": "ok", "model": "tiny", "labels": LABELS,
                                            "sample_rate": SR, "max_upload_mb": 20.0}
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_settings_come_from_params_and_bad_values_are_refused():
    infer = P.load(ROOT / "params.yaml")["infer"]
    settings = InferSettings.from_params(infer)
    assert settings.max_upload_bytes == int(infer["max_upload_mb"] * 2**20)
    with pytest.raises(P.ParamsError, match=r"infer\.max_duration_s=0 must be a number > 0"):
        InferSettings.from_params({**infer, "max_duration_s": 0})
    with pytest.raises(P.ParamsError, match=r"infer\.hop_s=0 must be a number > 0"):
        InferSettings.from_params({**infer, "hop_s": 0})
    with pytest.raises(P.ParamsError, match=r"missing key 'infer\.window_s'"):
        InferSettings.from_params({k: v for k, v in infer.items() if k != "window_s"})
    with pytest.raises(P.ParamsError, match=r"infer\.max_duration_s=None must be a number > 0"):
        InferSettings.from_params({**infer, "max_duration_s": None})
    with pytest.raises(P.ParamsError, match=r"infer has unknown key\(s\) \['silence_dbfs'\]"):
        InferSettings.from_params({**infer, "silence_dbfs": -60})
    assert InferSettings.from_params({**infer, "min_speech_s": 0}).min_speech_s == 0     # 0 turns the check off
    with pytest.raises(P.ParamsError, match=r"infer\.window_s=-1 must be a number > 0"):
        settings.replace(window_s=-1)


def test_the_defaults_outside_a_project_are_params_yamls():
    """``ser`` outside a project (and a bare Predictor) uses OUTSIDE_PROJECT: it must not drift."""
    from pipeline.infer import OUTSIDE_PROJECT

    assert OUTSIDE_PROJECT == P.load(ROOT / "params.yaml")["infer"]


def test_the_default_model_is_the_best_bundle_by_test_uar(tmp_path):
    (tmp_path / "metrics").mkdir()
    for name, uar in (("a", 0.5), ("b", 0.7), ("c", 0.9)):
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps({"uar": uar}))
    for name in ("a", "b"):                                    # c has metrics but no bundle
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "bundle.json").write_text("{}")
    assert best_bundle(metrics_dir=tmp_path / "metrics", models_dir=tmp_path / "models") == tmp_path / "models" / "b"
    with pytest.raises(FileNotFoundError, match=r"no trained model.*run `dvc repro`, or pass --model DIR"):
        best_bundle(metrics_dir=tmp_path / "none", models_dir=tmp_path / "models")


# -- the page in headless Chromium -----------------------------------------------------------------
def _browser() -> tuple[str, str]:
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("headless browser test needs chromium and chromedriver on PATH "
                    "(Debian: apt-get install chromium chromium-driver)")
    return chromium, driver


@pytest.fixture(scope="module")
def served(predictor):
    """Base URL of the app served by uvicorn on 127.0.0.1 (a free port) in a background thread."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, model_name="tiny"), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    chromium, driver = _browser()
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    microphone = tmp_path / "microphone.wav"     # what the fake microphone hears (looped): speech-like, not a beep
    microphone.write_bytes(wav_bytes(speechlike(3.0)))
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=900,1200", f"--user-data-dir={tmp_path / 'profile'}",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={microphone}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield chrome
    chrome.quit()


def _wait_for_result(chrome, *, timeout_s: float = 60.0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def done(driver):
        error = driver.find_element(By.ID, "error")
        if error.is_displayed():
            raise AssertionError(f"the page shows an error: {error.text}")
        return driver.find_element(By.ID, "result").is_displayed()

    WebDriverWait(chrome, timeout_s).until(done)


def test_the_page_shows_a_prediction_for_an_uploaded_file(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    clip = tmp_path / "long clip.wav"
    y = speechlike(12.0)
    y[5 * SR:10 * SR] = 0.0                                  # windows without speech: grey, not judged
    clip.write_bytes(wav_bytes(y))
    browser.get(served)
    browser.find_element(By.ID, "file").send_keys(str(clip))
    _wait_for_result(browser)
    assert browser.find_element(By.ID, "emotion").text.lower() in LABELS
    assert browser.find_element(By.ID, "confidence").text.endswith("% confidence")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#probabilities .bar")) == len(LABELS)
    assert browser.find_element(By.ID, "timeline-box").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline polyline")
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline rect[fill='#d0d4da']")
    browser.save_screenshot(str(tmp_path / "page.png"))


def test_the_api_docs_render_without_internet(browser, served):
    """Swagger UI and ReDoc load their scripts from the app itself (no CDN), so /docs and
    /redoc render the /predict operation in a browser that has no internet."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for path, selector in (("docs", ".swagger-ui .opblock-summary-path"), ("redoc", "[data-section-id]")):
        browser.get(served + path)
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
        assert "/predict" in browser.page_source
        scripts = [e.get_attribute("src") for e in browser.find_elements(By.TAG_NAME, "script") if e.get_attribute("src")]
        assert scripts and all(src.startswith(served) for src in scripts), scripts


def test_a_recording_is_sent_as_wav_and_predicted(browser, served):
    """Chromium's fake microphone (playing a speech-like WAV; its default beep holds too little
    speech for the app's check when timing squeezes the recording) → MediaRecorder → 16-bit WAV
    → /predict."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(served)
    browser.find_element(By.ID, "record").click()
    # 2.5 s from when the recorder runs (the microphone can take a while to open on a busy machine)
    WebDriverWait(browser, 30).until(lambda d: "recording" in d.find_element(By.ID, "record").get_attribute("class"))
    time.sleep(2.5)
    browser.find_element(By.ID, "record").click()
    _wait_for_result(browser)
    assert browser.find_element(By.ID, "status").text == "Result for recording.wav"
    assert browser.find_element(By.ID, "emotion").text.lower() in LABELS


def test_the_svm_bundle_is_served_too(bundles):
    svm = TestClient(create_app(Predictor(bundles["svm"]), model_name="svm"))
    r = post(svm, wav_bytes(speechlike(2.0)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert svm.get("/health").json()["model"] == "svm"
    long = post(svm, wav_bytes(np.concatenate([speechlike(2.0, seed=i) for i in range(3)])))
    assert long.status_code == 200 and long.json()["timeline"], long.text


def test_a_speaker_normalised_model_needs_a_long_recording_of_one_speaker(bundles, tmp_path):
    folder = tmp_path / "spk"
    shutil.copytree(bundles["cnn"], folder)
    meta = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**meta, "speaker_norm": True}))
    app = TestClient(create_app(Predictor(folder), model_name="spk"))
    short = post(app, wav_bytes(speechlike(2.0)))
    assert short.status_code == 422 and "normalises features per speaker" in short.text
    long = post(app, wav_bytes(np.concatenate([speechlike(2.0, seed=i) for i in range(4)])))
    assert long.status_code == 200 and long.json()["basis"] == "timeline", long.text

// The page of `python -m pipeline.webapp`: upload or record a clip, POST it to /predict,
// draw the answer. Plain JavaScript, no build step, nothing from a CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = { neutral: "#8d99ae", calm: "#90be6d", happy: "#f4b400", sad: "#3a6fc4", angry: "#e63946",
                  fearful: "#9b5de5", disgust: "#2a9d8f", surprised: "#f3722c", boredom: "#b5838d" };
const EMOJI = { neutral: "😐", calm: "😌", happy: "😄", sad: "😢", angry: "😠", fearful: "😨",
                disgust: "🤢", surprised: "😲", boredom: "🥱" };
let server = { labels: [], sample_rate: 16000, max_upload_mb: 20 };
let recorder = null;

const colour = (label, i) => COLOURS[label] || `hsl(${(i * 67) % 360} 60% 50%)`;
const percent = (p) => `${(100 * p).toFixed(1)} %`;

function emojiSpan(label) {
  const span = document.createElement("span");
  span.className = "emo";
  span.textContent = EMOJI[label] || "";
  return span;
}

function showError(message) {
  $("status").textContent = "";
  $("result").hidden = true;
  $("error").textContent = message;
  $("error").hidden = false;
}

function busy(message) {
  $("error").hidden = true;
  $("status").textContent = message;
}

async function loadHealth() {
  try {
    const res = await fetch("health");
    server = await res.json();
    $("model").textContent = `Model: ${server.model} · classes: ${server.labels.join(", ")}`;
    $("limit").textContent = server.max_upload_mb;
  } catch (err) {
    $("model").textContent = "The server does not answer; is `ser-web` running?";
  }
}

async function predict(blob, name) {
  if (blob.size > server.max_upload_mb * 1024 * 1024) {
    showError(`${name}: ${(blob.size / 1048576).toFixed(1)} MB; the limit is ${server.max_upload_mb} MB.`);
    return;
  }
  busy(`Analysing ${name}…`);
  const form = new FormData();
  form.append("file", blob, name);
  let res, body;
  try {
    res = await fetch("predict", { method: "POST", body: form });
    body = await res.json().catch(() => ({ detail: res.statusText }));
  } catch (err) {
    showError(`Upload failed: ${err.message}`);
    return;
  }
  if (!res.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    showError(`Not analysed (${res.status}): ${detail}`);
    return;
  }
  $("status").textContent = `Result for ${name}`;
  render(body);
}

function render(r) {
  $("emoji").textContent = r.emoji;
  $("emotion").textContent = r.emotion;
  $("confidence").textContent = `${percent(r.confidence)} confidence`;
  const nSpeech = r.timeline ? r.timeline.filter((w) => w.speech).length : 0;
  const basis = r.basis === "timeline" ? `, mean of the ${nSpeech} of ${r.timeline.length} windows that hold speech` : "";
  $("details").textContent = `${r.duration_s.toFixed(1)} s of audio${basis}`;
  const bars = $("probabilities");
  bars.replaceChildren();
  Object.entries(r.probabilities).forEach(([label, p], i) => {
    const name = document.createElement("span");
    name.className = "label" + (label === r.emotion ? " top" : "");
    name.append(emojiSpan(label), label);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    fill.style.background = colour(label, i);
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(p);
    bars.append(name, bar, value);
  });
  $("timeline-box").hidden = !r.timeline;
  if (r.timeline) drawTimeline(r.timeline, Object.keys(r.probabilities), r.duration_s);
  $("result").hidden = false;
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
  parent.append(node);
  return node;
}

// One line per class (probability at each window's centre) and, above, a strip coloured by
// each window's most probable class.
function drawTimeline(all, labels, duration) {
  const windows = all.filter((w) => w.speech);
  const W = 700, H = 240, left = 36, right = 10, top = 26, bottom = 26;
  const svg = $("timeline");
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const x = (t) => left + (t / duration) * (W - left - right);
  const y = (p) => top + (1 - p) * (H - top - bottom);
  if (!windows.length) {
    el("text", { x: left, y: H / 2 }, svg).textContent = "No window holds speech.";
  }
  for (const p of [0, 0.5, 1]) {
    el("line", { x1: left, x2: W - right, y1: y(p), y2: y(p), stroke: "#e1e5ec" }, svg);
    el("text", { x: left - 6, y: y(p) + 4, "text-anchor": "end" }, svg).textContent = p.toFixed(1);
  }
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300].find((s) => duration / s <= 10) || 600;
  for (let t = 0; t <= duration + 1e-9; t += step) {
    el("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, svg).textContent = `${t} s`;
  }
  all.forEach((w) => {
    const mid = (w.start_s + w.end_s) / 2, half = Math.min(w.end_s - w.start_s, all.length > 1 ? all[1].start_s - all[0].start_s : w.end_s - w.start_s) / 2;
    const rect = el("rect", { x: x(mid - half), y: 4, width: Math.max(1, x(mid + half) - x(mid - half)), height: 14,
                              fill: w.speech ? colour(w.emotion, labels.indexOf(w.emotion)) : "#d0d4da" }, svg);
    el("title", {}, rect).textContent = w.speech
      ? `${w.start_s.toFixed(1)}–${w.end_s.toFixed(1)} s: ${w.emotion} ${percent(w.confidence)}`
      : `${w.start_s.toFixed(1)}–${w.end_s.toFixed(1)} s: no speech (${w.speech_s.toFixed(2)} s)`;
  });
  labels.forEach((label, i) => {
    const points = windows.map((w) => `${x((w.start_s + w.end_s) / 2).toFixed(1)},${y(w.probabilities[label]).toFixed(1)}`);
    if (points.length === 1) points.push(points[0]);
    el("polyline", { points: points.join(" "), fill: "none", stroke: colour(label, i), "stroke-width": 2 }, svg);
  });
  const legend = $("legend");
  legend.replaceChildren();
  labels.forEach((label, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = colour(label, i);
    item.append(swatch, emojiSpan(label), label);
    legend.append(item);
  });
  const note = document.createElement("p");
  note.className = "muted small";
  const length = windows.length ? (windows[0].end_s - windows[0].start_s).toFixed(1) : "";
  note.textContent = windows.length ? `Lines: each class's probability in a ${length} s window, drawn at the window's centre; ` +
    "band: the most probable class; grey: no speech (not judged)." : "";
  legend.append(note);
}

// 16-bit PCM mono WAV from an AudioBuffer: the server decodes it with libsndfile.
function encodeWav(buffer) {
  const n = buffer.length, sr = buffer.sampleRate, channels = buffer.numberOfChannels;
  const mono = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / channels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const ascii = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  ascii(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); ascii(8, "WAVE");
  ascii(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, sr, true); view.setUint32(28, 2 * sr, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  ascii(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

async function toWav(blob) {
  let context;
  try {
    context = new AudioContext({ sampleRate: server.sample_rate });   // the model's rate: a smaller upload
  } catch (err) {
    context = new AudioContext();
  }
  try {
    return encodeWav(await context.decodeAudioData(await blob.arrayBuffer()));
  } finally {
    context.close();
  }
}

async function toggleRecording() {
  if (recorder) {
    recorder.stop();
    return;
  }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("This browser cannot record here (the microphone needs https or localhost); upload a file instead.");
    return;
  }
  let stream;
  try {
    // The voice as the microphone hears it: the models learnt from unprocessed studio recordings, and
    // the browser's call processing (gain control, noise suppression) reshapes loudness and spectrum.
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { autoGainControl: false, noiseSuppression: false, echoCancellation: false },
    });
  } catch (err) {
    showError(`No microphone: ${err.message}`);
    return;
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    const type = recorder.mimeType;
    recorder = null;
    $("record").textContent = "● Record";
    $("record").classList.remove("recording");
    try {
      busy("Encoding the recording…");
      await predict(await toWav(new Blob(chunks, { type })), "recording.wav");
    } catch (err) {
      showError(`The recording could not be decoded: ${err.message}`);
    }
  };
  recorder.start();
  $("record").textContent = "■ Stop";
  $("record").classList.add("recording");
  busy("Recording… press Stop when done.");
}

document.addEventListener("DOMContentLoaded", () => {
  loadHealth();
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) predict(file, file.name);
    e.target.value = "";
  });
  $("record").addEventListener("click", toggleRecording);
});

// The wavecls page: generate, draw or paste 100 samples, plot them, classify them.
// Plain browser JavaScript with no dependencies; it calls only this service's
// /model, /generate and /classify routes.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
// The plot's viewBox, and the margins that leave room for the axis labels.
const PLOT = { width: 760, height: 280, left: 44, right: 12, top: 12, bottom: 28 };
// Numbers as JSON writes them; other tokens are sent as strings so that the
// service's validation names them.
const NUMBER_PATTERN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

const state = {
  length: 100,
  classNames: ["sine", "square", "sawtooth"],
  samples: new Array(100).fill(0),
  drawing: false,
  lastIndex: null,
  lastValue: null,
  yRange: [-1.2, 1.2],
};

const $ = (id) => document.getElementById(id);

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function readJson(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text || `${response.status} ${response.statusText}` };
  }
}

// Samples and text

function formatSamples(samples) {
  return samples.map((value) => Number(value.toFixed(4))).join(", ");
}

function parseSamples(text) {
  const tokens = text.split(/[\s,;]+/).filter((token) => token.length > 0);
  return tokens.map((token) => {
    if (!NUMBER_PATTERN.test(token)) return token;
    const value = Number(token);
    return Number.isFinite(value) ? value : token;
  });
}

function showCount(values) {
  const numbers = values.filter((value) => typeof value === "number").length;
  const others = values.length - numbers;
  let text = `${values.length} values`;
  if (values.length !== state.length) text += `; ${state.length} needed`;
  if (others > 0) text += `; ${others} not numbers`;
  $("samples-count").textContent = text;
}

function setSamples(samples, { updateText = true } = {}) {
  state.samples = samples.slice();
  if (updateText) $("samples").value = formatSamples(state.samples);
  showCount(state.samples);
  fitRange();
  drawPlot();
}

function onSamplesTyped() {
  const values = parseSamples($("samples").value);
  showCount(values);
  // The plot leaves a gap for each token that is not a number, and for
  // samples not typed yet; the service reports them when Classify is pressed.
  state.samples = Array.from({ length: state.length }, (_, i) =>
    typeof values[i] === "number" ? values[i] : NaN
  );
  fitRange();
  drawPlot();
}

// Plot

function fitRange() {
  const finite = state.samples.filter(Number.isFinite);
  const low = Math.min(-1.2, ...finite);
  const high = Math.max(1.2, ...finite);
  const pad = (high - low) * 0.05;
  state.yRange = [low - pad, high + pad];
}

function xOf(index) {
  const span = PLOT.width - PLOT.left - PLOT.right;
  return PLOT.left + (index / (state.length - 1)) * span;
}

function yOf(value) {
  const [low, high] = state.yRange;
  const span = PLOT.height - PLOT.top - PLOT.bottom;
  return PLOT.top + ((high - value) / (high - low)) * span;
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (text !== undefined) element.textContent = text;
  return element;
}

function niceTicks(low, high) {
  const raw = (high - low) / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let value = Math.ceil(low / step) * step; value <= high; value += step) {
    ticks.push(Number(value.toFixed(10)));
  }
  return ticks;
}

function drawAxes(svg) {
  const [low, high] = state.yRange;
  for (const value of niceTicks(low, high)) {
    const y = yOf(value);
    const line = { x1: PLOT.left, x2: PLOT.width - PLOT.right, y1: y, y2: y };
    svg.append(svgElement("line", { ...line, class: value === 0 ? "zero" : "grid" }));
    svg.append(
      svgElement("text", { x: PLOT.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, value)
    );
  }
  for (let index = 0; index < state.length; index += 10) {
    const x = xOf(index);
    svg.append(svgElement("line", { x1: x, x2: x, y1: PLOT.top, y2: PLOT.height - PLOT.bottom, class: "grid" }));
    svg.append(
      svgElement("text", { x, y: PLOT.height - 10, "text-anchor": "middle", class: "tick" }, index)
    );
  }
}

function drawPlot() {
  const svg = $("plot");
  svg.replaceChildren();
  drawAxes(svg);
  let points = [];
  const flush = () => {
    if (points.length > 0) {
      svg.append(svgElement("polyline", { points: points.join(" "), class: "wave" }));
    }
    points = [];
  };
  state.samples.forEach((value, i) => {
    if (!Number.isFinite(value)) {
      flush();
      return;
    }
    points.push(`${xOf(i).toFixed(1)},${yOf(value).toFixed(1)}`);
    svg.append(svgElement("circle", { cx: xOf(i), cy: yOf(value), r: 1.8, class: "dot" }));
  });
  flush();
}

// Drawing with the mouse

function pointerToSample(event) {
  const svg = $("plot");
  const box = svg.getBoundingClientRect();
  const x = ((event.clientX - box.left) / box.width) * PLOT.width;
  const y = ((event.clientY - box.top) / box.height) * PLOT.height;
  const span = PLOT.width - PLOT.left - PLOT.right;
  const index = Math.round(((x - PLOT.left) / span) * (state.length - 1));
  const [low, high] = state.yRange;
  const fraction = (y - PLOT.top) / (PLOT.height - PLOT.top - PLOT.bottom);
  const value = high - fraction * (high - low);
  return {
    index: Math.min(state.length - 1, Math.max(0, index)),
    value: Math.min(high, Math.max(low, value)),
  };
}

function paint(event) {
  const { index, value } = pointerToSample(event);
  const fromIndex = state.lastIndex ?? index;
  const fromValue = state.lastValue ?? value;
  const steps = Math.abs(index - fromIndex);
  // Fill the samples the pointer skipped over, so a fast stroke has no gaps.
  for (let step = 0; step <= steps; step += 1) {
    const t = steps === 0 ? 1 : step / steps;
    const i = fromIndex + Math.sign(index - fromIndex) * step;
    state.samples[i] = fromValue + (value - fromValue) * t;
  }
  state.lastIndex = index;
  state.lastValue = value;
  drawPlot();
}

function startDrawing(event) {
  state.drawing = true;
  state.lastIndex = null;
  state.lastValue = null;
  $("plot").setPointerCapture(event.pointerId);
  paint(event);
}

function stopDrawing() {
  if (!state.drawing) return;
  state.drawing = false;
  state.lastIndex = null;
  setSamples(state.samples.map((value) => (Number.isFinite(value) ? value : 0)));
}

// Service calls

function showError(title, messages = []) {
  const box = $("error");
  box.replaceChildren();
  const heading = document.createElement("p");
  heading.textContent = title;
  box.append(heading);
  if (messages.length > 0) {
    const list = document.createElement("ul");
    for (const message of messages) {
      const item = document.createElement("li");
      item.textContent = message;
      list.append(item);
    }
    box.append(list);
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

function detailMessages(detail) {
  if (!Array.isArray(detail)) return [String(detail)];
  return detail.map((entry) => {
    const input = entry.input === undefined ? "" : ` (input: ${JSON.stringify(entry.input)})`;
    return `${entry.msg}${input}`;
  });
}

function reportFailure(action, response, body) {
  if (response.status === 401) {
    showError(`${action} failed: the service needs an API token.`, [
      "Enter the token under Settings and try again.",
      ...detailMessages(body.detail),
    ]);
  } else if (response.status === 422) {
    showError(`${action} failed: the service rejected the input.`, detailMessages(body.detail));
  } else {
    showError(`${action} failed with HTTP ${response.status}.`, detailMessages(body.detail));
  }
}

async function loadModelInfo() {
  try {
    const response = await fetch("/model");
    const body = await readJson(response);
    if (!response.ok) {
      $("model-info").textContent = `Model: not ready (HTTP ${response.status})`;
      return;
    }
    state.length = body.input_length;
    state.classNames = body.class_names;
    $("model-info").textContent = `Model version ${body.version} on ${body.device}`;
  } catch (error) {
    $("model-info").textContent = `Model: unreachable (${error.message})`;
  }
}

async function generate(event) {
  event.preventDefault();
  clearError();
  const params = new URLSearchParams({ type: $("wave-type").value, count: "1" });
  if ($("cycles").value) params.set("cycles", $("cycles").value);
  if ($("noise-mode").value === "snr") params.set("snr_db", $("noise").value);
  if ($("seed").value) params.set("seed", $("seed").value);

  $("status").textContent = "Generating…";
  try {
    const response = await fetch(`/generate?${params}`, { headers: authHeaders() });
    const body = await readJson(response);
    if (!response.ok) {
      $("status").textContent = "";
      reportFailure("Generate", response, body);
      return;
    }
    const [example] = body.examples;
    setSamples(example.waveform);
    $("result").hidden = true;
    $("status").textContent = `Generated a ${example.label} wave (seed ${body.seed}).`;
  } catch (error) {
    $("status").textContent = "";
    showError(`Generate failed: ${error.message}`);
  }
}

function showResult(prediction) {
  $("top-label").textContent = prediction.label;
  const ood = $("ood");
  const score = prediction.ood_score.toFixed(2);
  if (prediction.out_of_distribution) {
    ood.textContent = `out of distribution (score ${score}): the label is a guess`;
    ood.className = "badge out";
  } else {
    ood.textContent = `in distribution (score ${score})`;
    ood.className = "badge in";
  }

  const bars = $("bars");
  bars.replaceChildren();
  for (const name of state.classNames) {
    const probability = prediction.probabilities[name];
    const percent = `${(probability * 100).toFixed(1)}%`;
    const label = document.createElement("span");
    label.className = "name";
    label.id = `bar-${name}`;
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    track.setAttribute("role", "meter");
    track.setAttribute("aria-labelledby", label.id);
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "100");
    track.setAttribute("aria-valuenow", (probability * 100).toFixed(1));
    track.setAttribute("aria-valuetext", percent);
    const fill = document.createElement("div");
    fill.className = name === prediction.label ? "fill top" : "fill";
    fill.style.width = percent;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent;
    bars.append(label, track, value);
  }
  $("result").hidden = false;
}

async function classify() {
  clearError();
  const values = parseSamples($("samples").value);
  $("status").textContent = "Classifying…";
  try {
    const response = await fetch("/classify", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ waveform: values }),
    });
    const body = await readJson(response);
    $("status").textContent = "";
    if (!response.ok) {
      $("result").hidden = true;
      reportFailure("Classify", response, body);
      return;
    }
    showResult(body);
    $("status").textContent = `Classified with model ${body.model_version}.`;
  } catch (error) {
    $("status").textContent = "";
    showError(`Classify failed: ${error.message}`);
  }
}

function init() {
  $("generate-form").addEventListener("submit", generate);
  $("classify").addEventListener("click", classify);
  $("clear").addEventListener("click", () => {
    clearError();
    setSamples(new Array(state.length).fill(0));
  });
  $("samples").addEventListener("input", onSamplesTyped);
  $("noise-mode").addEventListener("change", () => {
    $("noise").disabled = $("noise-mode").value !== "snr";
  });
  const plot = $("plot");
  plot.addEventListener("pointerdown", startDrawing);
  plot.addEventListener("pointermove", (event) => {
    if (state.drawing) paint(event);
  });
  plot.addEventListener("pointerup", stopDrawing);
  plot.addEventListener("pointercancel", stopDrawing);

  setSamples(state.samples);
  loadModelInfo();
}

init();

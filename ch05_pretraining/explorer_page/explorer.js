// The explorer page: every number comes from the server that serves this file (nothing from any other host).
// State lives in the address (?prompt=...&layer=...&head=...&temperature=...&top_k=...&top_p=...), so a view
// can be shared or reloaded. Stable hooks for tests: see the README ("The explorer page").
"use strict";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
let info = null;                  // /api/info: the model's sizes
let analysing = null;             // AbortController of the analysis in flight
let generating = null;            // AbortController of the generation in flight
let lastTokens = [];              // the pieces the heatmap labels
let pending = 0;                  // analyses and bar updates asked for and not yet drawn: <body data-pending>
const timers = {};
const exact = {};                 // sampling values from the address that a slider's step or range cannot hold
const SLIDERS = { temperature: "#temperature", top_k: "#top-k", top_p: "#top-p" };

function busy(change) {
  pending += change;
  document.body.dataset.pending = String(pending);
}

// Run fn after delay ms, replacing a call of the same name still waiting; counted in data-pending from now.
function later(name, delay, fn) {
  if (timers[name]) clearTimeout(timers[name]);
  else busy(+1);
  timers[name] = setTimeout(async () => {
    timers[name] = null;
    try { await fn(); } finally { busy(-1); }
  }, delay);
}

// -- alerts ------------------------------------------------------------------------------------------
function show(id, message) { const el = $(id); el.textContent = message; el.hidden = !message; }
const showError = (message) => show("#error", message);

// -- the address ---------------------------------------------------------------------------------------
function number(params, name, low, high, integer, problems) {
  if (!params.has(name) || params.get(name) === "" || params.get(name) === "none") return null;
  const raw = params.get(name), value = Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < low || value > high) {
    problems.push(`${name}=${raw} (it takes ${integer ? "an integer" : "a number"} from ${low} to ${high})`);
    return null;
  }
  return value;
}

function readAddress() {
  const params = new URLSearchParams(location.search), problems = [];
  $("#prompt").value = params.has("prompt") ? params.get("prompt") : info.default_prompt;
  const layer = number(params, "layer", 0, Math.max(info.n_layers - 1, 0), true, problems);
  if (layer !== null) $("#layer").value = String(layer);
  if (params.has("head") && params.get("head") !== "avg") {
    const head = number(params, "head", 0, Math.max(info.n_heads - 1, 0), true, problems);
    if (head === null && problems.length) problems[problems.length - 1] += " or avg";
    if (head !== null) $("#head").value = String(head);
  } else if (params.get("head") === "avg") $("#head").value = "avg";
  // the sampling values as the API takes them, kept exactly even where the slider cannot show them
  setSlider("temperature", number(params, "temperature", 0, info.max_temperature, false, problems));
  setSlider("top_k", number(params, "top_k", 0, info.n_vocab, true, problems));
  const topP = number(params, "top_p", 0, 1, false, problems);
  if (topP === 0) problems.push("top_p=0 (it takes a number above 0, up to 1)");
  setSlider("top_p", topP === 0 ? null : topP);
  const maxNew = number(params, "max_new_tokens", 0, Number($("#max-new-tokens").max), true, problems);
  if (maxNew !== null) $("#max-new-tokens").value = String(maxNew);
  const seed = number(params, "seed", 0, Number.MAX_SAFE_INTEGER, true, problems);
  if (seed !== null) $("#seed").value = String(seed);
  show("#notice", problems.length ? `The address has ${problems.join(" and ")}: the page shows its default ` +
    "there instead." : "");
}

// A slider set from the address; a value it cannot hold (between its steps, past its end) is kept in exact.
function setSlider(name, value) {
  delete exact[name];
  if (value === null) return;
  const slider = $(SLIDERS[name]);
  slider.value = String(value);
  if (Number(slider.value) !== value) exact[name] = value;
}

const sliderValue = (name) => (name in exact ? exact[name] : Number($(SLIDERS[name]).value));

function sampling() {
  const k = sliderValue("top_k"), p = sliderValue("top_p");
  const out = { temperature: String(sliderValue("temperature")) };
  if (k > 0) out.top_k = String(k);
  if (p < 1) out.top_p = String(p);
  return out;
}

function writeAddress() {
  const params = new URLSearchParams({ prompt: $("#prompt").value, layer: $("#layer").value,
    head: $("#head").value, ...sampling(), max_new_tokens: $("#max-new-tokens").value, seed: $("#seed").value });
  history.replaceState(null, "", "?" + params.toString());
}

function showSliders() {
  const t = sliderValue("temperature"), k = sliderValue("top_k"), p = sliderValue("top_p");
  const shown = (name, v) => (name in exact ? String(v) : v.toFixed(2));
  $("#temperature-value").textContent = t === 0 ? "0 (greedy)" : shown("temperature", t);
  $("#top-k-value").textContent = k > 0 ? String(k) : "off";
  $("#top-p-value").textContent = p < 1 ? shown("top_p", p) : "off";
  $("#next-what").textContent = t === 0 ? "greedy: all the mass on the most likely token"
    : `what generate samples from at these settings`;
}

// -- requests ------------------------------------------------------------------------------------------
function post(path, params, signal) {  // the values in the body: a long prompt does not fit an address
  return fetch(path, { method: "POST", body: new URLSearchParams(params), signal });
}

async function getJSON(path, params, signal) {
  let response;
  try {
    response = await post(path, params, signal);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error("The explorer's server does not answer: is python -m ch05_pretraining.explore still running?");
  }
  const data = await response.json().catch(() => ({ error: `The server answered ${response.status}.` }));
  if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
  return data;
}

async function analyse() {
  const prompt = $("#prompt").value;
  if (analysing) analysing.abort();
  if (!prompt.trim()) {
    showError("The prompt is empty: type some text to see its tokens, attention and next token.");
    for (const id of ["#tokens", "#heatmap", "#bars"]) $(id).replaceChildren();
    $("#token-count").textContent = "";
    show("#cropped", "");
    return false;
  }
  const controller = analysing = new AbortController(), asked = JSON.stringify(sampling());
  try {
    const data = await getJSON("/api/analyse", { prompt, layer: $("#layer").value, head: $("#head").value,
      ...sampling(), n: 20 }, controller.signal);
    showError("");
    drawTokens(data);
    drawAttention(data);
    if (asked === JSON.stringify(sampling())) drawBars(data.next);  // else a bar update for the new values is due
    return true;
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
    return false;
  } finally {
    if (analysing === controller) analysing = null;
  }
}

async function updateBars() {
  const prompt = $("#prompt").value, asked = JSON.stringify(sampling());
  if (!prompt.trim()) return;
  try {
    const next = (await getJSON("/api/next", { prompt, ...sampling(), n: 20 })).next;
    if (prompt === $("#prompt").value && asked === JSON.stringify(sampling())) drawBars(next);  // not stale
    showError("");
  } catch (error) { showError(error.message); }
}

// -- drawing -------------------------------------------------------------------------------------------
function pieceColour(i) { return `hsl(${(i * 47) % 360}, 70%, 88%)`; }

function drawTokens(data) {
  const box = $("#tokens");
  box.replaceChildren();
  lastTokens = data.tokens.slice(data.seen_from);
  data.tokens.forEach((token, i) => {
    const piece = document.createElement("span");
    piece.className = "piece" + (i < data.seen_from ? " unseen" : "");
    piece.dataset.tokenId = String(token.id);
    piece.textContent = token.text;
    piece.title = `id ${token.id} · bytes ${token.bytes}`;
    piece.style.background = pieceColour(i);
    box.append(piece);
  });
  $("#token-count").textContent = `${data.n_tokens} token${data.n_tokens === 1 ? "" : "s"} of a context of ` +
    `${data.context_length}`;
  show("#cropped", data.seen_from > 0 ? `The prompt has ${data.n_tokens} tokens but the model's context is ` +
    `${data.context_length}: it sees the last ${data.context_length} (the faded pieces are cropped), and the ` +
    "attention and next token are those of that window." : "");
  const kv = data.kv_cache_bytes;
  $("#kv-cache").textContent = kv === null ? "this model keeps no KV cache"
    : `KV cache for these ${data.n_tokens - data.seen_from} tokens: ${formatBytes(kv)} (${info.dtype})`;
}

function formatBytes(n) {
  const units = ["bytes", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function heat(weight) {  // white to deep blue; the square root lifts small weights into view
  const t = Math.sqrt(Math.max(0, Math.min(1, weight)));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 20)}, ${mix(255, 60)}, ${mix(255, 160)})`;
}

function drawAttention(data) {
  const box = $("#heatmap");
  box.replaceChildren();
  const note = (text) => { const p = document.createElement("p"); p.className = "hint"; p.textContent = text;
    box.append(p); };
  if (!info.has_attention) return note("This model has no attention (a count model or the n-gram MLP): " +
    "nothing to show here. The next-token bars below still work.");
  const att = data.attention;
  if (att.too_long) return note(`The heatmap draws windows of up to ${info.heatmap_max} tokens; this one has ` +
    `${data.n_tokens - data.seen_from}. Shorten the prompt to see it.`);
  const w = att.weights, n = w.length, cell = Math.max(4, Math.min(40, Math.floor(560 / n)));
  const labels = n <= 40, pad = labels ? 90 : 4;
  const svg = document.createElementNS(SVG, "svg"), side = pad + n * cell + 4;
  svg.setAttribute("viewBox", `0 0 ${side} ${side}`);  // scales down to the panel, never clipped
  svg.setAttribute("width", side);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `attention weights of layer ${att.layer}, head ${att.head}`);
  for (let i = 0; i < n; i += 1) {
    for (let j = 0; j < n; j += 1) {
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", pad + j * cell);
      rect.setAttribute("y", pad + i * cell);
      rect.setAttribute("width", cell);
      rect.setAttribute("height", cell);
      rect.setAttribute("fill", heat(w[i][j]));
      rect.dataset.row = String(i);
      rect.dataset.col = String(j);
      rect.dataset.weight = String(w[i][j]);
      svg.append(rect);
    }
    if (labels) {
      svg.append(label(pad - 4, pad + i * cell + cell * 0.7, lastTokens[i].text, "end"));
      const top = label(pad + i * cell + cell * 0.7, pad - 4, lastTokens[i].text, "start");
      top.setAttribute("transform", `rotate(-90 ${pad + i * cell + cell * 0.7} ${pad - 4})`);
      svg.append(top);
    }
  }
  svg.addEventListener("mouseover", (event) => {
    const d = event.target.dataset;
    if (d.row === undefined) return;
    const q = lastTokens[Number(d.row)], k = lastTokens[Number(d.col)];
    $("#heat-hover").textContent = `query ${d.row} ${JSON.stringify(q.text)} → key ${d.col} ` +
      `${JSON.stringify(k.text)}: ${Number(d.weight).toFixed(4)}`;
  });
  box.append(svg);
}

function label(x, y, text, anchor) {
  const el = document.createElementNS(SVG, "text");
  el.setAttribute("x", x);
  el.setAttribute("y", y);
  el.setAttribute("text-anchor", anchor);
  el.textContent = JSON.stringify(text).slice(1, -1).slice(0, 12);
  return el;
}

function drawBars(next) {
  const box = $("#bars");
  box.replaceChildren();
  const top = next.length ? next[0].p : 1;
  for (const choice of next) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.tokenId = String(choice.id);
    row.dataset.p = String(choice.p);
    const name = document.createElement("span");
    name.className = "bar-token";
    name.textContent = JSON.stringify(choice.text);
    name.title = `id ${choice.id}`;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.display = "block";
    fill.style.width = `${(100 * choice.p / top).toFixed(2)}%`;
    track.append(fill);
    const p = document.createElement("span");
    p.className = "bar-p";
    p.textContent = `${(100 * choice.p).toFixed(2)}%`;
    row.append(name, track, p);
    box.append(row);
  }
}

// -- generation ----------------------------------------------------------------------------------------
function stop() {
  if (!generating) return;
  generating.abort();
  generating = null;
  $("#output").dataset.done = "true";
  $("#gen-status").textContent = "stopped";
}

function whole(id, low, high) {  // the value of a number box, or null after saying what it takes
  const value = Number($(id).value);
  if ($(id).value.trim() === "" || !Number.isInteger(value) || value < low || value > high) {
    showError(`${$(id).previousSibling.textContent.trim() || id} takes a whole number from ${low} to ${high}; ` +
      `it says ${JSON.stringify($(id).value)}.`);
    return null;
  }
  return value;
}

async function generate() {
  stop();
  writeAddress();
  if (whole("#max-new-tokens", 0, Number($("#max-new-tokens").max)) === null ||
      whole("#seed", 0, Number.MAX_SAFE_INTEGER) === null) return;
  const out = $("#output"), controller = generating = new AbortController();
  out.dataset.done = "false";  // from the click on: a test waiting for "true" waits for this generation
  busy(+1);
  const analysed = await analyse().finally(() => busy(-1));
  if (!analysed || generating !== controller) {
    if (generating === controller) { generating = null; out.dataset.done = "true"; }
    return;
  }
  const echo = document.createElement("span"), text = document.createElement("span");
  echo.className = "prompt-echo";
  echo.textContent = $("#prompt").value;
  text.className = "generated";
  out.replaceChildren(echo, text);
  let count = 0, finished = false;
  $("#gen-status").textContent = "generating…";
  try {
    const params = { prompt: $("#prompt").value, ...sampling(), max_new_tokens: $("#max-new-tokens").value,
      seed: $("#seed").value, stop_at_eos: $("#stop-at-eos").checked ? "1" : "0" };
    const response = await post("/api/generate", params, controller.signal);
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error(data.error || `The server answered ${response.status}.`);
    }
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event.name === "token") {
          text.append(event.data.text);
          count += 1;
          $("#gen-status").textContent = `generating… ${count} tokens`;
        } else if (event.name === "done") {
          finished = true;
          $("#gen-status").textContent = `done: ${count} tokens` +
            (event.data.reason === "eos" ? " (end of text)" : "");
        } else if (event.name === "failed") {
          finished = true;
          showError(event.data.error);
          $("#gen-status").textContent = "failed";
        }
      }
    }
    if (!finished) throw new TypeError("the stream ended early");
  } catch (error) {
    if (error.name !== "AbortError") {
      showError(error.name === "TypeError"
        ? "The generation ended before it finished: is python -m ch05_pretraining.explore still running?"
        : error.message);
      $("#gen-status").textContent = "failed";
    }
  } finally {
    if (generating === controller) {
      generating = null;
      out.dataset.done = "true";
    }
  }
}

function parseEvent(block) {
  const event = { name: "message", data: {} };
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event.name = line.slice(7);
    else if (line.startsWith("data: ")) event.data = JSON.parse(line.slice(6));
  }
  return event;
}

// -- start ---------------------------------------------------------------------------------------------
function fillSelect(select, values) {
  select.replaceChildren(...values.map(([value, text]) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = text;
    return option;
  }));
}

function describe(i) {
  const family = i.family ? `${i.family}, ` : "";
  const params = i.params >= 1e6 ? `${(i.params / 1e6).toFixed(1)}M` : i.params.toLocaleString();
  return `${i.source} — ${family}${params} parameters, ${i.n_layers} attention layers × ` +
    `${i.n_heads} heads, context ${i.context_length}, ${i.n_vocab.toLocaleString()} token ids, ${i.dtype}`;
}

async function start() {
  busy(+1);  // nothing drawn yet: data-pending stays above 0 until the first analysis is
  try {
    info = await getJSON("/api/info", {});
  } catch (error) {
    showError(error.message);
    busy(-1);
    return;
  }
  $("#model-info").textContent = describe(info);
  const layers = Array.from({ length: Math.max(info.n_layers, 1) }, (_, i) => [String(i), String(i)]);
  const heads = Array.from({ length: Math.max(info.n_heads, 1) }, (_, i) => [String(i), String(i)]);
  fillSelect($("#layer"), layers);
  fillSelect($("#head"), [...heads, ["avg", "average"]]);
  $("#top-k").max = String(Math.min(info.n_vocab, 200));
  $("#max-new-tokens").max = String(info.max_new_tokens);
  readAddress();
  showSliders();
  writeAddress();
  $("#prompt").addEventListener("input", () => later("analyse", 250, () => { writeAddress(); return analyse(); }));
  for (const id of ["#layer", "#head"]) {
    $(id).addEventListener("change", () => { writeAddress(); later("analyse", 0, analyse); });
  }
  for (const [name, id] of Object.entries(SLIDERS)) {
    $(id).addEventListener("input", () => {
      delete exact[name];  // moved by hand: the slider's own value from now on
      showSliders();
      writeAddress();
      later("bars", 60, updateBars);
    });
  }
  for (const id of ["#max-new-tokens", "#seed"]) $(id).addEventListener("change", writeAddress);
  for (const id of ["#prompt", "#layer", "#head", "#temperature", "#top-k", "#top-p", "#max-new-tokens", "#seed"]) {
    $(id).addEventListener("change", () => show("#notice", ""));  // a control the address got wrong is set now
    $(id).addEventListener("input", () => show("#notice", ""));
  }
  $("#generate").addEventListener("click", generate);
  $("#stop").addEventListener("click", stop);
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) generate();
  });
  later("analyse", 0, analyse);
  busy(-1);
}

start();

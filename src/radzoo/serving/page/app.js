"use strict";
// The radzoo page: plain JavaScript calling the same JSON endpoints as any client (no build step,
// nothing loaded from elsewhere). The API key lives in the variable below only: never stored.

let apiKey = "";
let models = [];
let heads = []; // the /models "heads" rows (task heads answering /classify)
let current = null; // the selected /models row
let imageB64 = null; // the chosen image file as base64 (no data: prefix: the server sniffs the content)
let searchIndex = null; // GET /models "index": the similar-case index behind POST /v1/search, if any

const $ = (id) => document.getElementById(id);
const has = (capability) => Boolean(current && current.capabilities && current.capabilities.includes(capability));

function requestHeaders(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (apiKey) h["X-API-Key"] = apiKey;
  return h;
}

// ---- errors: API error bodies shown on the page, in words ----------------------------------------
async function describeFailure(what, resp) {
  let text = `${what} failed (HTTP ${resp.status})`;
  const raw = await resp.text();
  try {
    const body = JSON.parse(raw);
    if (body.error && body.error.message) text += ": " + body.error.message;
    else if (body.detail) text += ": " + body.detail;
    if (Array.isArray(body.errors) && body.errors.length > 1) {
      text += "\n" + body.errors.map((e) => `item ${e.index}: ${e.message}`).join("\n");
    }
  } catch (_) {
    if (raw) text += ": " + raw.slice(0, 500);
  }
  if (resp.status === 401) text += "\nEnter the server's API key at the top of the page.";
  return text;
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function call(what, path, options) {
  let resp;
  try {
    resp = await fetch(path, options);
  } catch (e) {
    throw new Error(`${what} failed: the server could not be reached (${e.message})`);
  }
  if (!resp.ok) throw new Error(await describeFailure(what, resp));
  return resp;
}

function postJSON(what, path, body) {
  return call(what, path, { method: "POST", headers: requestHeaders(true), body: JSON.stringify(body) });
}

// ---- small drawings --------------------------------------------------------------------------------
function sparkline(canvas, values) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (!values.length) return;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  ctx.strokeStyle = "#2f6fd6";
  ctx.lineWidth = 1;
  ctx.beginPath();
  const step = values.length > 1 ? (w - 2) / (values.length - 1) : 0;
  values.forEach((v, i) => {
    const x = 1 + i * step, y = h - 2 - ((v - lo) / (hi - lo)) * (h - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

const norm = (values) => Math.sqrt(values.reduce((s, v) => s + v * v, 0));

function bars(container, probabilities) {
  container.innerHTML = "";
  for (const [label, p] of Object.entries(probabilities).sort((a, b) => b[1] - a[1])) {
    const row = document.createElement("div");
    row.className = "bar";
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("div");
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${Math.max(0.5, p * 100).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.textContent = p.toFixed(3);
    row.append(name, track, value);
    container.append(row);
  }
}

// ---- models ----------------------------------------------------------------------------------------
async function loadModels() {
  clearError();
  try {
    const body = await (await call("Listing the models", "/models", { headers: requestHeaders(false) })).json();
    models = body.data;
    heads = body.heads || [];
    searchIndex = body.index && body.index.available ? body.index : null;
    const select = $("model");
    select.innerHTML = "";
    for (const m of models) {
      const option = document.createElement("option");
      option.value = m.id;
      option.textContent = m.id + (m.random_weights ? "  (RANDOM WEIGHTS)" : "") + (m.load_error ? "  (failed to load)" : "");
      select.append(option);
    }
    if (body.default_model) select.value = body.default_model;
    selectModel();
  } catch (e) {
    showError(e.message);
  }
}

function selectModel() {
  current = models.find((m) => m.id === $("model").value) || null;
  const info = $("model-info");
  info.innerHTML = "";
  $("random-banner").hidden = !(current && current.random_weights);
  if (!current) return;
  const rows = [
    ["Method", current.method], ["Modality", current.modality], ["Embedding dimension", current.dim],
    ["Outputs", current.outputs ? Object.entries(current.outputs).map(([k, v]) => `${k} (${v})`).join(", ") : ""],
    ["License", current.license], ["Runtime", current.runtime],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k;
    dd.textContent = v === undefined || v === null ? "" : String(v);
    info.append(dt, dd);
  }
  const dt = document.createElement("dt"), dd = document.createElement("dd");
  dt.textContent = "Capabilities";
  dd.id = "capabilities";
  for (const c of current.capabilities || []) {
    const chip = document.createElement("span");
    chip.className = "cap";
    chip.textContent = c;
    dd.append(chip);
  }
  info.append(dt, dd);
  if (current.load_error) showError(`Model ${current.id} failed to load: ${current.load_error}`);
  $("image-section").hidden = !has("embed");
  $("text-tools").hidden = !(has("zero_shot") || has("ground"));
  $("ct-section").hidden = !has("ct");
  showHeads();
  $("similar-tools").hidden = !similarShown();
  if (imageB64 && has("embed")) analyzeImage();
}

// ---- task heads ------------------------------------------------------------------------------------
function modelHeads() {
  return current ? heads.filter((h) => h.base_model === current.id) : [];
}

function showHeads() {
  const mine = modelHeads();
  const select = $("head");
  select.innerHTML = "";
  for (const h of mine) {
    const option = document.createElement("option");
    option.value = h.id;
    option.textContent = `${h.id}: ${h.labels.join(", ")}`;
    select.append(option);
  }
  $("head-tools").hidden = mine.length === 0;
}

async function classifyImage() {
  const body = await (await postJSON("Classifying with the task head", "/classify", {
    head: $("head").value, input: [imageB64], operating_point: $("operating-point").value,
  })).json();
  const predictions = body.data[0].predictions;
  bars($("head-result"), Object.fromEntries(Object.entries(predictions).map(([k, v]) => [k, v.probability])));
  $("head-note").textContent = `${body.operating_point}: ` + Object.entries(predictions)
    .map(([k, v]) => `${k} ${v.decision ? "positive" : "negative"} (threshold ${v.threshold.toFixed(3)})`).join("; ")
    + ` · head ${body.head.digest.slice(0, 12)}, ${body.precision}`;
}

// ---- a chest X-ray -----------------------------------------------------------------------------------
function resetImageResults() {
  for (const id of ["emb-output", "emb-dim", "emb-norm"]) $(id).textContent = "-";
  $("head-result").innerHTML = "";
  $("head-note").textContent = "";
  sparkline($("sparkline"), []);
  $("zero-shot").innerHTML = "";
  $("zs-rule").textContent = "";
  $("decoded").removeAttribute("src");
  $("heatmap").removeAttribute("src");
}

async function showDecoded() {
  const blob = await (await postJSON("Decoding the image", "/display", { image: imageB64 })).blob();
  $("decoded").src = URL.createObjectURL(blob);
}

async function showEmbedding() {
  const body = await (await postJSON("Embedding the image", "/v1/embeddings", { model: current.id, input: [imageB64] })).json();
  const values = body.data[0].embedding;
  $("emb-output").textContent = body.output;
  $("emb-dim").textContent = String(body.dim);
  $("emb-norm").textContent = norm(values).toFixed(4);
  sparkline($("sparkline"), values);
}

function labelList() {
  return $("labels").value.split("\n").map((s) => s.trim()).filter((s) => s);
}

async function scoreLabels() {
  const labels = labelList();
  const body = await (await postJSON("Zero-shot scoring", "/zero_shot", {
    model: current.id, input: [imageB64], labels, mode: labels.length < 2 ? "multi-label" : undefined,
  })).json();
  bars($("zero-shot"), body.data[0].probabilities);
  $("zs-rule").textContent = `rule ${body.rule}, ${body.mode}`;
}

async function showHeatmap() {
  const text = $("phrase").value.trim();
  const blob = await (await postJSON("Grounding", "/ground", { model: current.id, image: imageB64, text })).blob();
  $("heatmap").src = URL.createObjectURL(blob);
}

// Runs stages of tasks (each stage in parallel, the next only when the previous one succeeded) and
// shows every failure on the page; body[data-state] says when the page is done (tests wait on it).
async function run(statusId, ...stages) {
  clearError();
  document.body.dataset.state = "busy";
  $(statusId).textContent = "Working...";
  let failures = [];
  for (const tasks of stages) {
    const results = await Promise.allSettled(tasks.map((task) => task()));
    failures = [...new Set(results.filter((r) => r.status === "rejected").map((r) => r.reason.message))];
    if (failures.length) break;
  }
  $(statusId).textContent = failures.length ? "Failed: see the message above." : "Done.";
  if (failures.length) showError(failures.join("\n\n"));
  document.body.dataset.state = failures.length ? "error" : "done";
}

function analyzeImage() {
  resetImageResults();
  const textTasks = [];
  if (has("zero_shot")) textTasks.push(scoreLabels);
  if (has("ground")) textTasks.push(showHeatmap);
  if (modelHeads().length) textTasks.push(classifyImage);
  if (similarShown()) textTasks.push(findSimilar);
  return run("image-status", [showEmbedding, showDecoded], textTasks);
}

function readFile(file) {
  const reader = new FileReader();
  reader.onload = () => {
    const url = String(reader.result);
    imageB64 = url.slice(url.indexOf(",") + 1);
    analyzeImage();
  };
  reader.onerror = () => showError(`Reading ${file.name} failed in the browser`);
  reader.readAsDataURL(file);
}

// ---- similar cases (POST /v1/search) -------------------------------------------------------------------
// Shown when the server has an index built with the selected model: its queries are embedded by it.
function similarShown() {
  return Boolean(searchIndex && current && searchIndex.model && searchIndex.model.model === current.id);
}

async function findSimilar() {
  const k = Number($("similar-k").value) || 10;
  const body = await (await postJSON("Searching similar cases", "/v1/search", {
    image: imageB64, k, exclude_same_patient: $("similar-exclude").checked, thumbnails: true,
  })).json();
  $("similar-index").textContent = `${searchIndex.rows} indexed images, ${body.backend}` +
    (searchIndex.pseudonymized ? ", pseudonymised keys" : "");
  const table = $("similar-table");
  table.innerHTML = "";
  const head = table.createTHead().insertRow();
  for (const h of ["#", "score", "", "modality", "view", "patient", "study date", "key"]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  const tbody = table.createTBody();
  for (const hit of body.data[0].hits) {
    const tr = tbody.insertRow();
    tr.insertCell().textContent = String(hit.rank);
    tr.insertCell().textContent = hit.score.toFixed(4);
    const cell = tr.insertCell();
    if (hit.thumbnail) {
      const img = document.createElement("img");
      img.src = hit.thumbnail;
      img.className = "thumb";
      img.alt = `neighbour ${hit.rank}`;
      cell.append(img);
    }
    for (const key of ["modality", "view_position", "patient_key", "study_date"]) tr.insertCell().textContent = hit[key] || "";
    tr.insertCell().textContent = hit.sop_instance_uid || hit.path || "";
  }
}

// ---- a lung CT ---------------------------------------------------------------------------------------
function qaValue(v) {
  let out;
  if (typeof v === "number") out = String(Math.round(v * 1000) / 1000);
  else if (Array.isArray(v)) out = v.length > 6 ? `[${v.length} values]` : "[" + v.map(qaValue).join(", ") + "]";
  else if (v && typeof v === "object") out = Object.entries(v).map(([k, x]) => `${k}: ${qaValue(x)}`).join("; ");
  else out = String(v);
  return out.length > 240 ? out.slice(0, 237) + "..." : out;
}

async function analyzeCT(file) {
  $("ct-result").hidden = true;
  await run("ct-status", [async () => {
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("model", current.id);
    form.append("nodes", "false");
    const body = await (await call("CT features", "/ct_features", { method: "POST", headers: requestHeaders(false), body: form })).json();
    $("ct-passed").textContent = body.passed ? "passed" : "FAILED";
    $("ct-dim").textContent = String(body.subject_embedding.length);
    $("ct-norm").textContent = norm(body.subject_embedding).toFixed(4);
    $("ct-nodes").textContent = String(body.n_nodes);
    sparkline($("ct-sparkline"), body.subject_embedding);
    const table = $("ct-qa");
    table.innerHTML = "";
    for (const [k, v] of Object.entries(body.qa || {})) {
      const tr = table.insertRow();
      tr.insertCell().textContent = k;
      tr.insertCell().textContent = qaValue(v);
    }
    $("ct-result").hidden = false;
  }]);
}

// ---- wiring ------------------------------------------------------------------------------------------
$("api-key").addEventListener("change", () => { apiKey = $("api-key").value.trim(); loadModels(); });
$("model").addEventListener("change", selectModel);
$("image-file").addEventListener("change", () => { if ($("image-file").files[0]) readFile($("image-file").files[0]); });
$("ct-file").addEventListener("change", () => { if ($("ct-file").files[0]) analyzeCT($("ct-file").files[0]); });
$("score").addEventListener("click", () => imageB64 && run("image-status", [scoreLabels]));
$("ground").addEventListener("click", () => imageB64 && run("image-status", [showHeatmap]));
$("classify").addEventListener("click", () => imageB64 && run("image-status", [classifyImage]));
$("similar").addEventListener("click", () => imageB64 && run("image-status", [findSimilar]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) readFile(e.dataTransfer.files[0]);
});
loadModels();

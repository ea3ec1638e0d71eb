// ssgan editor: one page over the JSON API (/api/...). No external request of any kind.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  session: null, info: null, state: null, picked: new Set(), seq: 0, applied: -1, busy: 0,
  labels: null, faceImg: new Image(), maskImg: new Image(), slider: null, sliderPending: null,
  poll: null,
};

// ----- requests ------------------------------------------------------------------------------
async function api(path, body, opts = {}) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: opts.raw ? {} : {"Content-Type": "application/json"},
    body: opts.raw ? body : JSON.stringify(body),
  };
  const res = await fetch(path, init);
  let data;
  try { data = await res.json(); } catch (e) { data = {error: `${res.status} ${res.statusText}`}; }
  if (!res.ok) {
    const err = new Error(data.error || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

// The server keeps the 64 most recent sessions: a 404 naming this tab's session as unknown or
// expired starts a new one (seed 0), as a reload would, and says so.
const EXPIRED = /unknown or expired session/;
async function renewSession() {
  const s = await api("/api/session", {});
  sessionStorage.setItem("ssgan-session", s.session);
  ui.session = s.session;
  ui.applied = ui.seq;
  await showState(s);
  showMessage("the server had forgotten this tab's session (it keeps the 64 most recent): started a new one");
  return s;
}

// An action: busy indicator, timing readout, errors shown in the page; newest response wins.
async function act(name, path, body) {
  const seq = ++ui.seq;
  if (body && typeof body === "object" && !(body instanceof Blob)) body.seq = seq;
  setBusy(+1);
  const t0 = performance.now();
  try {
    const state = await api(path, body);
    if (state.stale || seq < ui.applied) return state;  // a newer request already answered
    ui.applied = seq;
    showState(state);
    const server = state.last && state.last.ms !== undefined ? `${state.last.ms} ms server, ` : "";
    $("timing").textContent = `${name}: ${server}${Math.round(performance.now() - t0)} ms total`;
    hideMessage();
    return state;
  } catch (e) {
    if (e.status === 404 && EXPIRED.test(e.message)) return await renewSession();
    showMessage(e.message);
  } finally {
    setBusy(-1);
  }
}

function setBusy(delta) {
  ui.busy += delta;
  const el = $("busy");
  el.className = ui.busy > 0 ? "working" : "idle";
  el.textContent = ui.busy > 0 ? "working…" : "ready";
  el.dataset.busy = ui.busy > 0 ? "1" : "0";
}
function showMessage(text) { const m = $("message"); m.textContent = text; m.hidden = false; }
function hideMessage() { $("message").hidden = true; }

// ----- drawing -------------------------------------------------------------------------------
function loadImage(img, src) {
  return new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = src; });
}

function drawFace() {
  const size = ui.info.size, c = $("face"), g = c.getContext("2d");
  c.width = c.height = size;
  g.imageSmoothingEnabled = false;
  g.globalAlpha = 1;
  g.drawImage(ui.faceImg, 0, 0);
  if ($("overlay").checked) { g.globalAlpha = 0.5; g.drawImage(ui.maskImg, 0, 0); g.globalAlpha = 1; }
  const m = $("mask"), h = m.getContext("2d");
  m.width = m.height = size;
  h.imageSmoothingEnabled = false;
  h.drawImage(ui.maskImg, 0, 0);
  if (ui.picked.size && ui.labels) {  // dim what is not picked
    const data = h.getImageData(0, 0, size, size);
    for (let i = 0; i < ui.labels.length; i++) {
      if (!ui.picked.has(ui.labels[i])) for (let j = 0; j < 3; j++) {
        data.data[4 * i + j] = 255 - (255 - data.data[4 * i + j]) * 0.3;
      }
    }
    h.putImageData(data, 0, 0);
  }
}

// The edited regions' outline (cyan) over the difference map, from the state's region bitmap.
function drawOutline() {
  const c = $("diffregion"), size = ui.info.size, g = c.getContext("2d");
  c.width = c.height = size;
  const d = ui.state && ui.state.diff;
  if (!d || !$("outline").checked) return;
  const r = Uint8Array.from(atob(d.region), (ch) => ch.charCodeAt(0));
  const img = g.createImageData(size, size);
  const at = (x, y) => (x < 0 || y < 0 || x >= size || y >= size ? 0 : r[y * size + x]);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    if (at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1))) {
      img.data.set([0, 230, 255, 255], 4 * (y * size + x));
    }
  }
  g.putImageData(img, 0, 0);
}

async function showState(s) {
  ui.state = s;
  document.body.dataset.session = s.session;
  document.body.dataset.position = s.position;
  ui.labels = Uint8Array.from(atob(s.labels), (ch) => ch.charCodeAt(0));
  await Promise.all([loadImage(ui.faceImg, s.image), loadImage(ui.maskImg, s.mask)]);
  drawFace();
  const d = s.diff;
  if (d) {
    $("diff").src = d.image;
    const names = d.classes.length === ui.info.classes.length ? "the whole image (every class)" :
      d.classes.map((k) => ui.info.classes[k].name).join(", ");
    const f = (x) => (x === null ? "–" : x.toFixed(2));
    $("diffstats").textContent = `mean |change| (0–255) inside ${names}: ${f(d.inside)}; outside: ${f(d.outside)}`;
    $("diffstats").dataset.inside = d.inside === null ? "" : d.inside;
    $("diffstats").dataset.outside = d.outside === null ? "" : d.outside;
    drawOutline();
  } else {
    drawOutline();
    $("diff").removeAttribute("src");
    $("diffstats").textContent = "no edit yet";
  }
  if (s.reference && s.reference.image) {
    $("ref").src = s.reference.image;
    $("refmask").src = s.reference.mask;
    $("refinfo").textContent = s.reference.seed === null ? "reference: a face you made" :
      `reference: seed ${s.reference.seed}`;
  }
  $("undo").disabled = !s.can_undo;
  $("redo").disabled = !s.can_redo;
  $("history").textContent = `step ${s.position + 1} of ${s.length}`;
  $("action").textContent = s.action + (s.last && s.last.recomputed_classes ?
    ` · local generators re-run: ${s.last.recomputed_classes.length} of ${ui.info.classes.length}` : "");
  $("action").dataset.recomputed = s.last ? s.last.recomputed_classes.length : "";
  const q = `?session=${encodeURIComponent(s.session)}`;
  for (const [id, kind] of [["dlimage", "image.png"], ["dlmask", "mask.png"], ["dldiff", "diff.png"],
                            ["dllatent", "latent.npy"]]) {
    $(id).href = `/api/download/${kind}${q}`;
  }
  $("dldiff").hidden = !d;
  if (s.job) showJob(s.job);
}

// ----- regions -------------------------------------------------------------------------------
function buildLegend() {
  const box = $("legend");
  box.textContent = "";
  for (const c of ui.info.classes) {
    const label = document.createElement("label");
    label.dataset.testid = `region-label-${c.index}`;
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.dataset.testid = `region-${c.index}`;
    cb.dataset.name = c.name;
    cb.addEventListener("change", () => pick(c.index, cb.checked));
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${c.color.join(",")})`;
    const text = document.createElement("span");
    text.textContent = `${c.index} ${c.name}${c.transparent ? " (transparent)" : ""}`;
    label.append(cb, sw, text);
    box.append(label);
  }
}

function pick(k, on) {
  if (on) ui.picked.add(k); else ui.picked.delete(k);
  for (const cb of $("legend").querySelectorAll("input")) {
    const idx = +cb.dataset.testid.split("-")[1];
    cb.checked = ui.picked.has(idx);
    cb.parentElement.classList.toggle("picked", cb.checked);
  }
  resetSliders();
  if (ui.state) drawFace();
}

function clickPick(ev) {
  if (!ui.labels) return;
  const c = ev.currentTarget, r = c.getBoundingClientRect(), size = ui.info.size;
  const x = Math.min(size - 1, Math.floor((ev.clientX - r.left) / r.width * size));
  const y = Math.min(size - 1, Math.floor((ev.clientY - r.top) / r.height * size));
  const k = ui.labels[y * size + x];
  pick(k, !ui.picked.has(k));
}

function classes() {
  if (!ui.picked.size) { showMessage("pick at least one region first (click the mask or the legend)"); return null; }
  return [...ui.picked].sort((a, b) => a - b);
}

// ----- sliders: one request in flight, the newest value sent next ------------------------------
function resetSliders() {
  $("interp").value = 0; $("interpval").textContent = "0.00";
  $("dirs").value = 0; $("dirval").textContent = "+0.0";
}

async function slide(body) {
  if (ui.slider) { ui.sliderPending = body; return; }
  ui.slider = body;
  await act(body.op === "interpolate" ? "interpolate" : "direction", "/api/edit", body);
  ui.slider = null;
  if (ui.sliderPending) { const next = ui.sliderPending; ui.sliderPending = null; await slide(next); }
}

// ----- inversion -----------------------------------------------------------------------------
function showJob(job) {
  $("progress").max = job.steps;
  $("progress").value = job.done_steps;
  const extra = job.psnr !== null && job.psnr !== undefined ? `, PSNR ${job.psnr.toFixed(1)} dB` : "";
  const what = {running: "inverting", done: "done", cancelled: "cancelled", failed: "failed"}[job.status];
  $("invstatus").textContent = `${what} ${job.name}: ${job.done_steps}/${job.steps} steps${extra}, ` +
    `${job.seconds.toFixed(1)} s` + (job.error ? ` — ${job.error}` : "");
  $("invstatus").dataset.status = job.status;
  $("cancel").disabled = job.status !== "running";
  $("invert").disabled = job.status === "running";
}

async function invert() {
  const file = $("upload").files[0];
  if (!file) { showMessage("choose a photo first"); return; }
  const steps = $("steps").value || ui.info.limits.invert_steps;
  const q = `?session=${encodeURIComponent(ui.session)}&steps=${encodeURIComponent(steps)}` +
    `&name=${encodeURIComponent(file.name)}`;
  setBusy(+1);
  try {
    const job = await api(`/api/invert${q}`, file, {raw: true});
    hideMessage();
    showJob(job);
    await pollJob();
  } catch (e) {
    showMessage(e.message);
  } finally {
    setBusy(-1);
  }
}

async function pollJob() {
  for (;;) {
    const {job} = await api(`/api/invert?session=${encodeURIComponent(ui.session)}`);
    showJob(job);
    if (job.status !== "running") {
      if (job.status === "done") {
        const s = await api(`/api/state?session=${encodeURIComponent(ui.session)}`);
        ui.applied = ++ui.seq;
        showState(s);
        $("timing").textContent = `invert: ${job.seconds.toFixed(1)} s`;
      } else if (job.status === "failed") {
        showMessage(`inversion failed: ${job.error}`);
      }
      return job;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ----- start ---------------------------------------------------------------------------------
async function start() {
  try {
    ui.info = await api("/api/info");
  } catch (e) { showMessage(`cannot reach the server: ${e.message}`); return; }
  const i = ui.info;
  $("model").textContent = `${i.size}px · ${i.classes.length} classes · ${i.device}`;
  $("trunc").value = i.truncation;
  $("steps").value = i.limits.invert_steps;
  $("steps").max = i.limits.max_invert_steps;
  for (const name of i.directions) {
    const o = document.createElement("option");
    o.value = o.textContent = name;
    $("dir").append(o);
  }
  buildLegend();
  if (i.size >= 256) {  // large images are shown smaller: smooth, not pixelated
    for (const id of ["face", "mask", "diff", "diffregion", "ref", "refmask"]) $(id).style.imageRendering = "auto";
  }
  const c = $("mask");
  c.getContext("2d", {willReadFrequently: true});
  setBusy(+1);
  try {
    // this tab's session survives a reload (sessionStorage is per tab); else a new one
    const kept = sessionStorage.getItem("ssgan-session");
    let s = null;
    if (kept) {
      try { s = await api(`/api/state?session=${encodeURIComponent(kept)}`); } catch (e) { s = null; }
    }
    if (!s) s = await api("/api/session", {});
    sessionStorage.setItem("ssgan-session", s.session);
    ui.session = s.session;
    ui.applied = 0;
    await showState(s);
  } catch (e) { showMessage(e.message); } finally { setBusy(-1); }

  const S = () => ui.session;
  $("random").onclick = () => { resetSliders();
    return act("random face", "/api/sample", {session: S(), truncation: +$("trunc").value}); };
  $("seedgo").onclick = () => { resetSliders();
    return act("sample seed", "/api/sample", {session: S(), seed: +$("seed").value, truncation: +$("trunc").value}); };
  $("resample").onclick = () => { const c = classes(); if (!c) return; resetSliders();
    return act("resample", "/api/edit", {session: S(), op: "resample", classes: c, part: $("part").value}); };
  $("copy").onclick = () => { const c = classes(); if (!c) return; resetSliders();
    return act("copy", "/api/edit", {session: S(), op: "copy", classes: c, part: $("part").value}); };
  $("interp").oninput = () => { const c = classes(); if (!c) return;
    $("interpval").textContent = (+$("interp").value).toFixed(2);
    slide({session: S(), op: "interpolate", classes: c, part: $("part").value, t: +$("interp").value}); };
  $("dirs").oninput = () => { const c = classes(); if (!c) return;
    $("dirval").textContent = (+$("dirs").value >= 0 ? "+" : "") + (+$("dirs").value).toFixed(1);
    slide({session: S(), op: "direction", classes: c, part: $("part").value, direction: $("dir").value,
           strength: +$("dirs").value}); };
  $("part").onchange = resetSliders;
  $("dir").onchange = resetSliders;
  $("undo").onclick = () => { resetSliders(); return act("undo", "/api/undo", {session: S()}); };
  $("redo").onclick = () => { resetSliders(); return act("redo", "/api/redo", {session: S()}); };
  $("refrandom").onclick = () => { resetSliders(); return act("new reference", "/api/reference", {session: S()}); };
  $("refcurrent").onclick = () => { resetSliders();
    return act("reference", "/api/reference", {session: S(), from_current: true}); };
  $("clear").onclick = () => { ui.picked.clear(); pick(-1, false); };
  $("overlay").onchange = drawFace;
  $("outline").onchange = drawOutline;
  $("face").onclick = clickPick;
  $("mask").onclick = clickPick;
  $("invert").onclick = invert;
  $("latentfile").onchange = async () => {  // a .npy from this page or ssgan generate/invert
    const file = $("latentfile").files[0];
    if (!file) return;
    resetSliders();
    const q = `?session=${encodeURIComponent(S())}&name=${encodeURIComponent(file.name)}`;
    setBusy(+1);
    const t0 = performance.now();
    try {
      const s = await api(`/api/latent${q}`, file, {raw: true});
      ui.applied = ++ui.seq;
      await showState(s);
      $("timing").textContent = `open: ${Math.round(performance.now() - t0)} ms total`;
      hideMessage();
    } catch (e) { showMessage(e.message); } finally { setBusy(-1); $("latentfile").value = ""; }
  };
  $("upload").onchange = () => {  // a local preview of the chosen photo (a blob: URL, nothing sent)
    const file = $("upload").files[0];
    if (ui.photoUrl) URL.revokeObjectURL(ui.photoUrl);
    ui.photoUrl = file ? URL.createObjectURL(file) : null;
    $("photo").hidden = !file;
    if (file) $("photo").src = ui.photoUrl;
  };
  $("cancel").onclick = () => api("/api/invert/cancel", {session: S()}).then((r) => r.job && showJob(r.job));
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") {
      ev.preventDefault();
      (ev.shiftKey ? $("redo") : $("undo")).click();
    }
  });
  document.body.dataset.ready = "1";
}

start();

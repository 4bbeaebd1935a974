// The web page: pick a photo (or a clip), submit it, follow the job live, then compare (or play) and download.
// Plain browser APIs only (no build step, no external resources): the service may run offline.

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("form"), controls: $("controls"), drop: $("drop"), input: $("image"), hint: $("image-hint"),
  chosen: $("chosen"), thumb: $("thumb"), chosenName: $("chosen-name"), chosenSize: $("chosen-size"),
  style: $("style"), styleDescription: $("style-description"), format: $("format"), mode: $("mode"),
  keyForm: $("key-form"), keyTitle: $("key-title"), key: $("key"), keyMessage: $("key-message"),
  keyCancel: $("key-cancel"),
  error: $("error"), progress: $("progress"), progressTitle: $("progress-title"), status: $("status"),
  result: $("result"), resultTitle: $("result-title"), compare: $("compare"), before: $("before"),
  after: $("after"), slider: $("slider"), resultInfo: $("result-info"), download: $("download"), again: $("again"),
  afterVideo: $("after-video"), sliderBox: $("slider-box"),
};

const maxUploadBytes = Number(document.body.dataset.maxUploadBytes) || 0;
const maxVideoBytes = Number(document.body.dataset.maxVideoBytes) || 0;
const CLIP_TYPES = /^video\/|\.(mp4|m4v|mov|webm|mkv)$/i;
const TERMINAL = new Set(["succeeded", "failed"]);
const STEPS = ["uploading", "queued", "running", "succeeded"];
const EXTENSIONS = { png: "png", jpeg: "jpg", webp: "webp", avif: "avif" };
const styleNotes = {};
let photo = null; // { file, url, clip } of the chosen photo or clip; the url is an object URL, revoked on change
let resultUrl = null; // object URL of the finished picture
let run = 0; // increases on every submission and reset, so callbacks of an older job do nothing
let stopFollowing = () => {};

// ---- the API key (only when the service asks for one) ---------------------------------------
// Kept for this tab only (sessionStorage), sent as Authorization: Bearer on every call once known.
const KEY_STORAGE = "animegan.apiKey";
let apiKey = readStoredKey();
let keyAnswer = null; // resolves the pending askForKey() promise: a key, or null when cancelled
let keyPrompt = null; // that promise, shared by every call that met a 401 meanwhile

function readStoredKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled: the key lives as long as the page
  }
}

function storeKey(key) {
  apiKey = key;
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: keep the key in memory only
  }
}

function withKey(options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  return { ...options, headers };
}

// fetch() for every call to the service: a 401 asks for the key, then the call is made again with it.
async function api(url, options = {}) {
  for (;;) {
    const response = await fetch(url, withKey(options));
    if (response.status !== 401) return response;
    const rejected = Boolean(apiKey) && /invalid_token/.test(response.headers.get("WWW-Authenticate") || "");
    if (rejected) storeKey("");
    const key = await askForKey(rejected ? "That key was not accepted. Please check it and try again." : "");
    if (key === null) return response;
  }
}

function askForKey(message) {
  ui.keyMessage.textContent = message;
  if (!keyPrompt) {
    keyPrompt = new Promise((resolve) => (keyAnswer = resolve));
    ui.keyForm.hidden = false;
    ui.key.value = "";
    ui.key.focus();
  }
  return keyPrompt;
}

function answerKey(key) {
  ui.keyForm.hidden = true;
  const resolve = keyAnswer;
  keyPrompt = keyAnswer = null;
  if (resolve) resolve(key);
}

function wireKeyForm() {
  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.key.value.trim();
    if (!key) {
      ui.keyMessage.textContent = "Please enter the key.";
      ui.key.focus();
      return;
    }
    storeKey(key);
    answerKey(key);
  });
  ui.keyCancel.addEventListener("click", () => answerKey(null));
}

// ---- small formatting helpers -------------------------------------------------------------
function formatBytes(n) {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1).replace(/\.0$/, "")} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} bytes`;
}

function formatSeconds(s) {
  if (s < 60) return s === 1 ? "1 second" : `${s} seconds`;
  const m = Math.ceil(s / 60);
  return m === 1 ? "1 minute" : `${m} minutes`;
}

// Retry-After is either delta-seconds or an HTTP date (RFC 9110); null when absent or unreadable.
function retryAfterSeconds(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

// ---- messages ------------------------------------------------------------------------------
function showError(...lines) {
  ui.error.replaceChildren(...lines.filter(Boolean).map((text) => {
    const p = document.createElement("p");
    p.textContent = text;
    return p;
  }));
  ui.error.hidden = false;
  ui.error.focus();
}

function clearError() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
}

// Turns an error response (RFC 9457 problem+json when it comes from the service) into plain words.
// The problem type decides; the status alone decides when the body is not a problem document.
async function describeFailure(response) {
  let problem = {};
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    problem = await response.json().catch(() => ({}));
  }
  const slug = typeof problem.type === "string" ? problem.type.replace(/^.*\//, "") : "";
  const detail = typeof problem.detail === "string" ? problem.detail : "";
  const wait = retryAfterSeconds(response);
  const later = wait === null ? "in a little while" : `in ${formatSeconds(wait)}`;
  switch (slug || response.status) {
    case "unauthorized":
    case 401:
      return ["This service needs an API key. Reload the page to enter one."];
    case "rate-limited":
      return [`You are sending requests too quickly. Please try again ${later}.`];
    case "client-quota":
      return [`You already have as many photos waiting as the service allows. Please try again ${later}.`];
    case "image-too-large":
    case 413:
      return ["This photo is too large.", limitSentence() || detail];
    case "unsupported-media-type":
    case 415:
      return ["This file is not a photo the service can read. Please use a JPEG, PNG, WebP or HEIC image."];
    case "invalid-image":
      return ["The service could not read this photo: it may be damaged or cut short.", detail];
    case "too-many-pixels":
      return ["This photo has too many pixels for the service.", detail];
    case "video-too-large":
      return ["This clip is too large.", limitSentence(true) || detail];
    case "unsupported-video":
      return ["This file is not a clip the service can read. Please use MP4, MOV, WebM or MKV with H.264, H.265, VP9 or AV1 video."];
    case "invalid-video":
      return ["The service could not read this clip: it may be damaged or cut short.", detail];
    case "video-too-long":
    case "video-frames-too-large":
      return ["This clip is longer or larger than the service takes.", detail];
    case "queue-full":
      return [`The service is busy right now. Please try again ${later}.`];
    case "broker-unavailable":
    case "store-unavailable":
    case 503:
      return [`The service is not available right now. Please try again ${later}.`];
    case "job-not-found":
    case "result-expired":
    case 404:
      return ["The job is no longer kept by the service. Please submit the photo again."];
    default:
      if (response.status >= 500) return [`The server ran into a problem (error ${response.status}). Please try again later.`];
      return [problem.title || `The request was refused (error ${response.status}).`, detail];
  }
}

function limitSentence(clip = false) {
  const limit = clip ? maxVideoBytes : maxUploadBytes;
  return limit ? `The limit is ${formatBytes(limit)}.` : "";
}

function isClip(file) {
  return CLIP_TYPES.test(file.type) || CLIP_TYPES.test(file.name);
}

function limitOf(file) {
  return isClip(file) ? maxVideoBytes : maxUploadBytes;
}

function tooLarge(file) {
  const what = isClip(file) ? "clip" : "photo";
  return [
    `This ${what} is too large: it is ${formatBytes(file.size)}, and the limit is ${formatBytes(limitOf(file))}.`,
    `Please pick a smaller ${what}, or save it with a smaller size first.`,
  ];
}

const NETWORK_ERROR = "Could not reach the server. Check your connection and try again.";

// ---- styles --------------------------------------------------------------------------------
async function loadStyles() {
  let body;
  try {
    const response = await api("/styles", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(String(response.status));
    body = await response.json();
  } catch {
    ui.style.replaceChildren(new Option("Styles unavailable", ""));
    showError("Could not load the list of styles. Please reload the page.");
    return;
  }
  const list = Array.isArray(body) ? body : body.styles || [];
  const fallback = body.default || list.map((s) => (typeof s === "string" ? s : s.name))[0];
  ui.style.replaceChildren();
  for (const entry of list) {
    const name = typeof entry === "string" ? entry : entry.name;
    const label = (typeof entry === "object" && entry.title) || name.replaceAll("_", " ");
    const isDefault = (typeof entry === "object" && entry.default === true) || name === fallback;
    ui.style.add(new Option(label, name, isDefault, isDefault));
    if (typeof entry === "object" && entry.available === false) {
      styleNotes[name] = "No worker has this style loaded right now: your photo would wait until one starts.";
    }
  }
  ui.style.disabled = false;
  describeStyle();
}

function describeStyle() {
  ui.styleDescription.textContent = styleNotes[ui.style.value] || "";
}

// ---- choosing a photo ----------------------------------------------------------------------
function choose(file) {
  clearError();
  if (photo) URL.revokeObjectURL(photo.url);
  photo = file ? { file, url: URL.createObjectURL(file), clip: isClip(file) } : null;
  ui.chosen.hidden = !photo;
  // Mode and format are a photo's: a clip is always an MP4 of the whole frame.
  for (const field of document.querySelectorAll(".photo-only")) field.hidden = Boolean(photo?.clip);
  if (!photo) return;
  ui.thumb.hidden = photo.clip;
  if (!photo.clip) ui.thumb.src = photo.url;
  ui.chosenName.textContent = file.name;
  ui.chosenSize.textContent = `(${formatBytes(file.size)})`;
  if (limitOf(file) && file.size > limitOf(file)) {
    showError(...tooLarge(file));
  }
}

// A photo may be dropped anywhere on the page (a stray drop would otherwise navigate away).
function wireDropZone() {
  ui.thumb.addEventListener("error", () => (ui.thumb.hidden = true));
  ui.input.addEventListener("change", () => choose(ui.input.files[0] || null));
  window.addEventListener("dragover", (event) => {
    event.preventDefault();
    ui.drop.classList.toggle("dragging", !ui.controls.disabled);
  });
  window.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) ui.drop.classList.remove("dragging");
  });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.drop.classList.remove("dragging");
    const file = event.dataTransfer?.files[0];
    if (!file || ui.controls.disabled) return;
    const files = new DataTransfer();
    files.items.add(file);
    ui.input.files = files.files; // the input stays the one place that holds the chosen file
    choose(file);
  });
}

// ---- progress ------------------------------------------------------------------------------
function setStep(step, text) {
  const index = STEPS.indexOf(step);
  for (const li of ui.progress.querySelectorAll("li")) {
    const i = STEPS.indexOf(li.dataset.step);
    li.classList.toggle("done", i < index || step === "succeeded");
    if (i === index && step !== "succeeded") li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  }
  ui.status.textContent = text;
}

function describeQueued(job) {
  const position = job.queue_position;
  if (typeof position !== "number") return "Waiting in the queue.";
  if (position <= 1) return "Waiting in the queue: you are next.";
  const ahead = position - 1 === 1 ? "1 job" : `${position - 1} jobs`;
  return `Waiting in the queue: position ${position} (${ahead} ahead of yours).`;
}

function describeRunning(job) {
  if (job.kind !== "video" || !job.progress) return "Painting your picture…";
  const { frames_done: done, frames_total: total } = job.progress;
  const segments = job.segments || [];
  const busy = segments.filter((s) => s.status === "running").length;
  const workers = busy > 1 ? ` on ${busy} workers` : "";
  if (done >= total) return "All frames painted; putting the clip together with its sound…";
  return `Painting frames${workers}: ${done} of ${total} done.`;
}

// Applies one job state (the body of GET /jobs/{id}, also carried by every event).
function applyJob(job, token) {
  if (token !== run) return;
  if (job.status === "queued") setStep("queued", describeQueued(job));
  else if (job.status === "running") setStep("running", describeRunning(job));
  else if (job.status === "succeeded") showResult(job, token);
  else if (job.status === "failed") fail(["The picture could not be made.", job.error?.detail || job.error?.title]);
}

// While a job runs the form is disabled: the comparison must show the photo that was sent.
function setBusy(busy) {
  ui.controls.disabled = busy;
}

function fail(lines) {
  stopFollowing();
  ui.progress.hidden = true;
  setBusy(false);
  showError(...lines);
}

// Server-Sent Events first; on repeated failure (or without EventSource) poll GET /jobs/{id}.
// EventSource cannot send a header: with a key the stream is read through fetch() instead.
function follow(jobId, token) {
  if (apiKey) return followWithKey(jobId, token);
  if (!("EventSource" in window)) return poll(jobId, token, 0);
  const source = new EventSource(`/jobs/${encodeURIComponent(jobId)}/events`);
  let failures = 0;
  stopFollowing = () => source.close();
  const onState = (event) => {
    failures = 0;
    const job = JSON.parse(event.data);
    if (TERMINAL.has(job.status)) source.close();
    applyJob(job, token);
  };
  for (const type of ["queued", "running", "succeeded", "failed"]) source.addEventListener(type, onState);
  source.addEventListener("expired", () => fail(["The job expired before it finished. Please submit the photo again."]));
  // The browser reconnects by itself after a dropped stream; fall back only when that keeps failing.
  source.addEventListener("error", () => {
    failures += 1;
    if (source.readyState === EventSource.CLOSED || failures >= 3) {
      source.close();
      if (token === run) poll(jobId, token, 0);
    }
  });
}

// One "event:"/"data:" block of a text/event-stream; comments (keep-alives) give no type.
function parseEvent(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const [field, ...rest] = line.split(":");
    const value = rest.join(":").replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { type, data: data.join("\n") } : null;
}

// Applies one event; true when the job is over (or gone) and the stream should stop.
function onStreamEvent(event, token) {
  if (event.type === "expired") {
    fail(["The job expired before it finished. Please submit the photo again."]);
    return true;
  }
  const job = JSON.parse(event.data);
  const over = TERMINAL.has(job.status);
  applyJob(job, token);
  return over;
}

async function followWithKey(jobId, token) {
  const controller = new AbortController();
  let over = false;
  stopFollowing = () => controller.abort();
  try {
    const url = `/jobs/${encodeURIComponent(jobId)}/events`;
    const response = await api(url, { headers: { Accept: "text/event-stream" }, cache: "no-store", signal: controller.signal });
    if (!response.ok || !response.body) throw new Error(String(response.status));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    while (!over) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replaceAll("\r\n", "\n");
      let end;
      while (!over && (end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event && token === run) over = onStreamEvent(event, token);
      }
    }
    if (over) controller.abort();
  } catch {
    if (over || controller.signal.aborted) return;
  }
  // The stream ended or failed before the job did: follow it by polling instead.
  if (!over && token === run) poll(jobId, token, 0);
}

function poll(jobId, token, delayMs) {
  let timer = 0;
  let failures = 0;
  // A lost connection or a 5xx is retried a few times before the page gives up.
  const retry = (response) => {
    failures += 1;
    if (failures > 5) return false;
    ui.status.textContent = "The connection was lost; trying again…";
    timer = setTimeout(tick, (response ? retryAfterSeconds(response) ?? 2 : 2) * failures * 1000);
    return true;
  };
  const tick = async () => {
    if (token !== run) return;
    let response;
    try {
      response = await api(`/jobs/${encodeURIComponent(jobId)}`, { cache: "no-store" });
    } catch {
      if (!retry(null)) fail([NETWORK_ERROR]);
      return;
    }
    if (response.status >= 500 && retry(response)) return;
    if (!response.ok) return fail(await describeFailure(response));
    failures = 0;
    const job = await response.json();
    applyJob(job, token);
    if (!TERMINAL.has(job.status)) {
      const wait = retryAfterSeconds(response) ?? 1;
      timer = setTimeout(tick, Math.min(Math.max(wait, 0.5), 10) * 1000);
    }
  };
  stopFollowing = () => clearTimeout(timer);
  timer = setTimeout(tick, delayMs);
}

// ---- submitting ----------------------------------------------------------------------------
async function submit(event) {
  event.preventDefault();
  clearError();
  if (!photo) {
    showError("Please choose a photo first.");
    ui.input.focus();
    return;
  }
  if (limitOf(photo.file) && photo.file.size > limitOf(photo.file)) {
    showError(...tooLarge(photo.file));
    return;
  }
  const token = ++run;
  stopFollowing();
  ui.result.hidden = true;
  setBusy(true);
  ui.progress.hidden = false;
  setStep("uploading", photo.clip ? "Uploading your clip…" : "Uploading your photo…");
  ui.progressTitle.focus();

  const data = new FormData();
  if (ui.style.value) data.append("style", ui.style.value);
  data.append(photo.clip ? "video" : "image", photo.file, photo.file.name);
  if (!photo.clip) {
    if (ui.format.value) data.append("format", ui.format.value);
    data.append("mode", ui.mode.value);
  }
  let response;
  try {
    const url = photo.clip ? "/videos" : "/stylize";
    response = await api(url, { method: "POST", body: data, headers: { Accept: "application/json" } });
  } catch {
    if (token === run) fail([NETWORK_ERROR]);
    return;
  }
  if (token !== run) return;
  if (!response.ok) return fail(await describeFailure(response));
  const job = await response.json();
  applyJob(job, token);
  if (!TERMINAL.has(job.status)) follow(job.id, token);
}

// ---- result --------------------------------------------------------------------------------
// The result is fetched once into a blob: the same object URL feeds the picture and the download
// link, and a blob URL lets the link name the file (a server filename would take priority).
async function showResult(job, token) {
  stopFollowing();
  setStep("succeeded", "Done. Loading the picture…");
  let response;
  try {
    response = await api(`/jobs/${encodeURIComponent(job.id)}/result`);
  } catch {
    if (token === run) fail([NETWORK_ERROR]);
    return;
  }
  if (token !== run) return;
  if (!response.ok) return fail(await describeFailure(response));
  const blob = await response.blob();
  if (token !== run) return;
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = URL.createObjectURL(blob);
  if (job.kind === "video") return showClip(job, blob, token);
  ui.compare.hidden = ui.sliderBox.hidden = false;
  ui.afterVideo.hidden = true;
  ui.before.src = photo.url;
  ui.after.onload = () => {
    if (token !== run) return;
    ui.result.style.setProperty("--aspect", String(ui.after.naturalWidth / ui.after.naturalHeight));
    setStep("succeeded", "Done.");
    ui.progress.hidden = true;
    ui.result.hidden = false;
    setBusy(false);
    ui.resultTitle.focus();
  };
  ui.after.onerror = () => {
    if (token === run) fail(["The finished picture could not be shown. Please submit the photo again."]);
  };
  ui.after.src = resultUrl;
  const format = job.output?.format || "png";
  const stem = photo.file.name.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_") || "photo";
  ui.download.href = resultUrl;
  ui.download.download = `${stem}-${job.style}.${EXTENSIONS[format] || format}`;
  const size = job.output?.width ? `${job.output.width}×${job.output.height} pixels, ` : "";
  ui.resultInfo.textContent = `Style: ${ui.style.selectedOptions[0]?.text || job.style}. ${size}${formatBytes(blob.size)}.`;
  setSlider(Number(ui.slider.value));
}

// A clip plays in place of the comparison; one the browser cannot play can still be downloaded.
function showClip(job, blob, token) {
  ui.compare.hidden = ui.sliderBox.hidden = true;
  ui.afterVideo.hidden = false;
  const stem = photo.file.name.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_") || "clip";
  ui.download.href = resultUrl;
  ui.download.download = `${stem}-${job.style}.mp4`;
  const frames = job.progress ? `${job.progress.frames_total} frames, ` : "";
  const size = job.output?.width ? `${job.output.width}×${job.output.height} pixels, ` : "";
  const shown = () => {
    if (token !== run) return;
    setStep("succeeded", "Done.");
    ui.progress.hidden = true;
    ui.result.hidden = false;
    setBusy(false);
    ui.resultTitle.focus();
  };
  ui.afterVideo.onloadedmetadata = shown;
  ui.afterVideo.onerror = () => {
    shown();
    ui.resultInfo.textContent += " This browser cannot play it here: download it to watch it.";
  };
  ui.resultInfo.textContent = `Style: ${ui.style.selectedOptions[0]?.text || job.style}. ${frames}${size}${formatBytes(blob.size)}.`;
  ui.afterVideo.src = resultUrl;
}

function setSlider(value) {
  ui.slider.value = value;
  ui.compare.style.setProperty("--pos", `${value}%`);
  ui.slider.setAttribute("aria-valuetext", `${value}% before, ${100 - value}% after`);
}

function wireCompare() {
  ui.slider.addEventListener("input", () => setSlider(Number(ui.slider.value)));
  // Dragging on the picture itself moves the divider too; the range input stays the keyboard control.
  const track = (event) => {
    const box = ui.compare.getBoundingClientRect();
    setSlider(Math.round(Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1) * 100));
  };
  ui.compare.addEventListener("pointerdown", (event) => {
    ui.compare.setPointerCapture(event.pointerId);
    track(event);
  });
  ui.compare.addEventListener("pointermove", (event) => {
    if (ui.compare.hasPointerCapture(event.pointerId)) track(event);
  });
}

function reset() {
  run += 1;
  stopFollowing();
  ui.form.reset();
  describeStyle();
  choose(null);
  ui.result.hidden = true;
  ui.progress.hidden = true;
  setBusy(false);
  ui.after.removeAttribute("src");
  ui.before.removeAttribute("src");
  ui.afterVideo.removeAttribute("src");
  ui.afterVideo.hidden = true;
  ui.download.removeAttribute("href");
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = null;
  ui.input.focus();
}

// ---- start ---------------------------------------------------------------------------------
if (maxUploadBytes) {
  const clips = maxVideoBytes ? ` up to ${formatBytes(maxVideoBytes)}` : "";
  ui.hint.textContent = `JPEG, PNG, WebP or HEIC, up to ${formatBytes(maxUploadBytes)}; or an MP4, MOV, WebM or MKV clip${clips} (its sound is kept).`;
}
ui.form.addEventListener("submit", submit);
ui.style.addEventListener("change", describeStyle);
ui.again.addEventListener("click", reset);
wireDropZone();
wireCompare();
wireKeyForm();
setSlider(50);
loadStyles();

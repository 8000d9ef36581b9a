// Rater page: one tile at a time, answer + confidence (+ optional mark), progress. No answer ever reaches
// this page: the server only sends an opaque image id and the progress.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { image: null, answer: null, confidence: null, click: null, shownAt: 0, busy: false };

  function show(section) {
    for (const id of ["intro", "task", "done"]) $(id).hidden = id !== section;
  }

  function setProgress(answered, total) {
    $("progress-bar").max = Math.max(total, 1);
    $("progress-bar").value = answered;
    $("progress-text").textContent = `${answered} / ${total}`;
  }

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = !text;
  }

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { status: response.status, data };
  }

  function resetChoices() {
    state.answer = null; state.confidence = null; state.click = null;
    for (const b of document.querySelectorAll("button.choice, button.confidence")) b.setAttribute("aria-pressed", "false");
    $("marker").hidden = true;
    $("clear-mark").hidden = true;
    updateSubmit();
  }

  function updateSubmit() {
    $("submit").disabled = state.busy || !state.image || !state.answer || !state.confidence;
  }

  function render(progress) {
    setProgress(progress.answered, progress.total);
    if (progress.done) { state.image = null; show("done"); return; }
    show("task");
    if (!state.image || state.image.id !== progress.image.id) {
      state.image = progress.image;
      resetChoices();
      $("tile").src = progress.image.url;
      state.shownAt = performance.now();
    }
    updateSubmit();
  }

  async function loadNext() {
    const { status, data } = await api("GET", "/api/next");
    if (status === 401) { show("intro"); return; }
    if (status !== 200) { showError("Could not load the next image. Please reload the page."); return; }
    render(data);
  }

  async function start() {
    $("start").disabled = true;
    const { status, data } = await api("POST", "/api/session");
    $("start").disabled = false;
    if (status !== 200) { showError("Could not start. Please reload the page."); return; }
    render(data);
  }

  async function submit() {
    if (state.busy || !state.image || !state.answer || !state.confidence) return;
    state.busy = true; updateSubmit(); showError("");
    const body = { image_id: state.image.id, answer: state.answer, confidence: state.confidence,
      response_ms: Math.max(0, Math.round(performance.now() - state.shownAt)) };
    if (state.click) { body.click_x = state.click[0]; body.click_y = state.click[1]; }
    try {
      const { status } = await api("POST", "/api/ratings", body);
      if (status !== 201 && status !== 409) showError("Your answer was not saved. Please try again.");
      await loadNext();  // 409: already saved (e.g. a double tap), so move on
    } catch (_) {
      showError("Network problem: your answer was not saved. Please try again.");
    } finally {
      state.busy = false; updateSubmit();
    }
  }

  function choose(selector, button, key, value) {
    for (const b of document.querySelectorAll(selector)) b.setAttribute("aria-pressed", String(b === button));
    state[key] = value;
    updateSubmit();
  }

  function mark(event) {
    const rect = $("tile").getBoundingClientRect();
    if (!rect.width || !rect.height) return;
    const x = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
    const y = Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height));
    state.click = [x, y];
    $("marker").style.left = `${x * 100}%`;
    $("marker").style.top = `${y * 100}%`;
    $("marker").hidden = false;
    $("clear-mark").hidden = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("start").addEventListener("click", start);
    $("submit").addEventListener("click", submit);
    $("tile").addEventListener("click", mark);
    $("clear-mark").addEventListener("click", () => { state.click = null; $("marker").hidden = true; $("clear-mark").hidden = true; });
    for (const b of document.querySelectorAll("button.choice")) b.addEventListener("click", () => choose("button.choice", b, "answer", b.dataset.answer));
    for (const b of document.querySelectorAll("button.confidence")) b.addEventListener("click", () => choose("button.confidence", b, "confidence", Number(b.dataset.confidence)));
    // A returning rater (cookie set) resumes where they stopped; a new one sees the introduction.
    loadNext().catch(() => show("intro"));
  });
})();

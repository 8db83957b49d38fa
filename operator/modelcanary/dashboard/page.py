"""The live page: one HTML document with its style and a small script, no build step
and no external asset (it works offline). The script polls `api/rollouts` every second
and swaps in each rollout's HTML; the buttons post intents to `api/intents` with the
token from the URL's fragment (`#token=...`, never sent to a server nor logged)."""

from __future__ import annotations

POLL_MS = 1000

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>modelcanary rollouts</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }
header { display: flex; gap: 16px; align-items: baseline; }
header h1 { font-size: 20px; margin: 0; }
.muted, small { color: #666; font-weight: normal; }
section.rollout { border: 1px solid #ccc; border-radius: 6px; padding: 8px 16px;
  margin: 12px 0; }
section.rollout h2 { margin: 4px 0; font-size: 18px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 4px 0; }
dt { color: #666; } dd { margin: 0; }
.phase { padding: 1px 8px; border-radius: 10px; background: #eee; font-weight: bold; }
.phase[data-phase=Progressing], .phase[data-phase=Shadowing] { background: #dbeafe; }
.phase[data-phase=Paused], .phase[data-phase=Pending] { background: #fef3c7; }
.phase[data-phase=Promoted] { background: #dcfce7; }
.phase[data-phase=RolledBack], .phase[data-phase=Invalid] { background: #fee2e2; }
.charts { display: flex; flex-wrap: wrap; gap: 4px 16px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.problem, .error { color: #b91c1c; }
.actions { display: flex; gap: 8px; align-items: center; margin: 8px 0; }
.actions input { width: 22em; }
</style></head><body>
<header><h1>modelcanary rollouts</h1><span id="source" class="muted"></span>
<span id="updated" class="muted"></span><span id="status" class="error"></span></header>
<p id="empty" class="muted" hidden>No rollouts yet.</p>
<main id="rollouts"></main>
<script>
"use strict";
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.has("token")) {
  sessionStorage.setItem("modelcanary-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname);
}
const token = sessionStorage.getItem("modelcanary-token") || "";
const main = document.getElementById("rollouts");
const drawn = new Map();

function section(card, actionsEnabled) {
  let node = document.getElementById("rollout-" + card.key);
  if (!node) {
    node = document.createElement("section");
    node.className = "rollout";
    node.id = "rollout-" + card.key;
    node.dataset.key = card.key;
    node.innerHTML = '<div class="body"></div><div class="actions"></div>' +
      '<p class="message muted"></p>';
    main.appendChild(node);
    buildActions(node, card, actionsEnabled);
  }
  return node;
}

function buildActions(node, card, actionsEnabled) {
  const bar = node.querySelector(".actions");
  if (!actionsEnabled) {
    bar.innerHTML = '<span class="muted">read-only: start the dashboard with ' +
      '--allow-actions to promote, pause, resume or roll back here</span>';
    return;
  }
  const reason = document.createElement("input");
  reason.placeholder = "reason (required to roll back)";
  reason.className = "reason";
  for (const a of card.actions) {
    const button = document.createElement("button");
    button.textContent = a.label;
    button.dataset.action = a.action;
    button.addEventListener("click", () => act(node, a, reason.value));
    bar.appendChild(button);
  }
  bar.appendChild(reason);
}

async function act(node, action, reason) {
  const message = node.querySelector(".message");
  if (action.reason_required && !reason.trim()) {
    message.textContent = action.label + " needs a reason";
    return;
  }
  const response = await fetch("api/intents", {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
    body: JSON.stringify({key: node.dataset.key, action: action.action, reason: reason}),
  });
  const body = await response.json().catch(() => ({error: response.statusText}));
  message.textContent = body.message || body.error;
  refresh();
}

function update(doc) {
  document.getElementById("source").textContent = doc.source;
  document.getElementById("updated").textContent = "updated " + doc.clock;
  document.getElementById("status").textContent = doc.problem || "";
  document.getElementById("empty").hidden = doc.rollouts.length > 0;
  const seen = new Set();
  for (const card of doc.rollouts) {
    seen.add(card.key);
    const node = section(card, doc.actions);
    node.dataset.phase = card.phase;
    if (drawn.get(card.key) !== card.html) {
      node.querySelector(".body").innerHTML = card.html;
      drawn.set(card.key, card.html);
    }
    for (const a of card.actions) {
      const button = node.querySelector('button[data-action="' + a.action + '"]');
      if (button) button.disabled = !a.allowed;
    }
  }
  for (const node of [...main.children]) {
    if (!seen.has(node.dataset.key)) { node.remove(); drawn.delete(node.dataset.key); }
  }
}

async function refresh() {
  try {
    const response = await fetch("api/rollouts", {cache: "no-store"});
    if (!response.ok) throw new Error("the dashboard answered " + response.status);
    update(await response.json());
  } catch (error) {
    document.getElementById("status").textContent = "not updated: " + error.message;
  }
}
refresh();
setInterval(refresh, __POLL_MS__);
</script></body></html>
""".replace("__POLL_MS__", str(POLL_MS))

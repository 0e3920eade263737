// The chat page: plain JavaScript against the public API, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: localStorage.getItem("token") || "", sessionId: location.hash.slice(1) || null };

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  if (response.status === 401) throw Object.assign(new Error("unauthorized"), { status: 401 });
  if (!response.ok && response.status !== 204) {
    const detail = await response.json().then((b) => b.detail).catch(() => response.statusText);
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response.status === 204 ? null : response;
}

// --- Server-Sent Events over fetch (EventSource cannot POST) ---------------------------
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", id = null, data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield { name, id, data: JSON.parse(data) };
    }
  }
}

// --- rendering ----------------------------------------------------------------------
function bubble(role, text) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  item.append(document.createTextNode(text));
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function finish(item, message) {
  item.classList.remove("pending");
  item.firstChild.textContent = message.content;
  item.dataset.id = message.id;
  const meta = message.metadata || {};
  if (meta.status === "interrupted") note(item, "interrupted");
  if (meta.grounding === "unavailable") note(item, "knowledge base unavailable: answered without it");
  const references = meta.references || [];
  if (references.length) {
    const list = document.createElement("ol");
    list.className = "references";
    for (const ref of references) {
      const entry = document.createElement("li");
      entry.textContent = ref.document_name || ref.document_id || "document";
      list.append(entry);
    }
    item.append(list);
  }
}

function note(item, text) {
  const span = document.createElement("span");
  span.className = "note";
  span.textContent = text;
  item.append(span);
}

async function follow(response, item) {
  for await (const event of readEvents(response)) {
    if (event.name === "message_start" && !item) {
      item = bubble("assistant", "");
      item.classList.add("pending");
    } else if (event.name === "delta") {
      item.firstChild.textContent += event.data.text;
      item.scrollIntoView({ block: "end" });
    } else if (event.name === "message_end") {
      finish(item, event.data.assistant_message);
    } else if (event.name === "error") {
      item.classList.remove("pending");
      note(item, `error: ${event.data.detail}`);
    }
  }
  return item;
}

// --- sessions -----------------------------------------------------------------------
async function loadSessions() {
  const { items } = await (await api("GET", "/api/sessions?limit=100")).json();
  const list = $("sessions");
  list.replaceChildren();
  for (const session of items) {
    const item = document.createElement("li");
    item.dataset.id = session.session_id;
    item.className = session.session_id === state.sessionId ? "active" : "";
    item.textContent = session.title;
    const when = document.createElement("small");
    when.textContent = `${session.message_count} messages · ${new Date(session.updated_at).toLocaleString()}`;
    item.append(when);
    item.onclick = () => select(session.session_id);
    list.append(item);
  }
  return items;
}

async function select(sessionId) {
  state.sessionId = sessionId;
  history.replaceState(null, "", sessionId ? `#${sessionId}` : "#");
  $("messages").replaceChildren();
  $("composer").hidden = $("delete-session").hidden = !sessionId;
  if (!sessionId) {
    $("title").textContent = "Pick or create a session";
    return loadSessions();
  }
  const session = await (await api("GET", `/api/sessions/${sessionId}?messages_limit=200`)).json();
  $("title").textContent = session.title;
  for (const message of session.messages) {
    const item = bubble(message.role, message.content);
    if (message.role !== "assistant") continue;
    if (message.metadata.status === "streaming") {
      // A reply still being generated (the page was reloaded mid-answer): follow it.
      item.classList.add("pending");
      const rest = await api("GET", `/api/sessions/${sessionId}/messages/${message.id}/stream`);
      follow(rest, item);
    } else {
      finish(item, message);
    }
  }
  await loadSessions();
  $("content").focus();
}

async function send(event) {
  event.preventDefault();
  const content = $("content").value.trim();
  if (!content || !state.sessionId) return;
  $("content").value = "";
  $("send").disabled = true;
  try {
    const response = await api("POST", `/api/sessions/${state.sessionId}/messages`, { content, stream: true });
    bubble("user", content);
    await follow(response, null);
    await loadSessions();
  } catch (error) {
    bubble("assistant", `error: ${error.message}`);
  } finally {
    $("send").disabled = false;
  }
}

// --- start ----------------------------------------------------------------------------
async function start() {
  try {
    await loadSessions();
  } catch (error) {
    if (error.status === 401) {
      $("signin").hidden = false;
      $("app").hidden = true;
      if (state.token) $("signin-error").hidden = false, $("signin-error").textContent = "That token was refused.";
      return;
    }
    throw error;
  }
  $("signin").hidden = true;
  $("app").hidden = false;
  $("whoami").textContent = state.token ? "signed in" : "development mode";
  $("signout").hidden = !state.token;
  await select(state.sessionId);
}

$("signin-form").onsubmit = (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  localStorage.setItem("token", state.token);
  start();
};
$("signout").onclick = () => { localStorage.removeItem("token"); state.token = ""; start(); };
$("new-session").onclick = async () => {
  const title = prompt("Title of the new session", "New chat");
  if (title === null) return;
  const session = await (await api("POST", "/api/sessions", { title: title || "New chat" })).json();
  await select(session.session_id);
};
$("delete-session").onclick = async () => {
  if (!confirm("Delete this session and all its messages?")) return;
  await api("DELETE", `/api/sessions/${state.sessionId}`);
  await select(null);
};
$("composer").onsubmit = send;
$("content").onkeydown = (event) => {
  if (event.key === "Enter" && !event.shiftKey) send(event);
};
start();

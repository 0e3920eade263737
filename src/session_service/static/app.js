// The chat page: plain JavaScript modules against the public API, no build step. This one
// shows a session's conversation and drives it; api.js talks to the service, dom.js builds
// elements and bubbles, search.js is the sidebar's search, steps.js a reply's tool steps.
import { api, loadBranch, readEvents, sessionPath, state } from "./api.js";
import { $, bubble, button, element, note, references, setBody } from "./dom.js";
import { clearSearch, initSearch } from "./search.js";
import { stepEnded, stepStarted, steps } from "./steps.js";

// --- rendering ----------------------------------------------------------------------
function pager(message) {
  const ids = message.sibling_ids || [message.id];
  if (ids.length < 2) return null;
  const at = ids.indexOf(message.id);
  const box = element("span", "pager");
  const go = (to) => () => switchTo(ids[to]);
  const previous = button("‹", "Previous alternative", go(at - 1), "link prev");
  const next = button("›", "Next alternative", go(at + 1), "link next");
  previous.disabled = at === 0;
  next.disabled = at === ids.length - 1;
  box.append(previous, element("span", "count", `${at + 1}/${ids.length}`), next);
  return box;
}

function controls(item, message, isLast) {
  const bar = element("div", "controls");
  const paging = pager(message);
  if (paging) bar.append(paging);
  if (message.role === "user") {
    bar.append(button("Edit", "Edit and send again as a new branch", () => edit(item, message), "link edit"));
  } else if (message.metadata.status !== "streaming") {
    const rating = message.feedback && message.feedback.rating;
    for (const [value, label] of [["up", "👍"], ["down", "👎"]]) {
      const rate = button(label, `Rate ${value}`, () => feedback(message, rating === value ? null : value), `link rate ${value}`);
      if (rating === value) rate.classList.add("chosen");
      bar.append(rate);
    }
    if (isLast) bar.append(button("Regenerate", "Answer this question again", () => regenerate(message), "link regenerate"));
    bar.append(button("Fork", "A new session with the conversation up to here", () => fork(message), "link fork"));
  }
  item.append(bar);
}

function render(item, message, isLast) {
  item.dataset.id = message.id;
  item.classList.remove("pending");
  setBody(item, message.role, message.content);
  const meta = message.metadata || {};
  if (meta.status === "interrupted") note(item, "interrupted");
  if (meta.status === "stopped") note(item, "stopped");
  if (meta.grounding === "unavailable") note(item, "knowledge base unavailable: answered without it");
  steps(item, meta);
  references(item, meta);
  controls(item, message, isLast);
}

// --- a reply as it streams --------------------------------------------------------------
function streaming(id) {
  state.streaming = id;
  $("stop").hidden = id === null;
  $("send").hidden = id !== null;
}

async function follow(response, item) {
  let text = item ? item.querySelector(".body").textContent : "";
  for await (const event of readEvents(response)) {
    if (event.name === "message_start") {
      if (!item) {
        item = bubble("assistant", "");
        item.classList.add("pending");
      }
      streaming(event.data.assistant_message_id);
    } else if (event.name === "delta") {
      text += event.data.text;
      setBody(item, "assistant", text);
      item.scrollIntoView({ block: "end" });
    } else if (event.name === "tool_start" || event.name === "tool_end") {
      (event.name === "tool_start" ? stepStarted : stepEnded)(item, event.data); // the agent's steps
    } else if (event.name === "title") {
      $("title").textContent = event.data.title; // the session's automatic title, just made
      loadSessions();
    } else if (event.name === "error") {
      item.classList.remove("pending");
      note(item, `error: ${event.data.detail}`);
    }
  }
  streaming(null);
}

async function ask(path, body) {
  $("send").disabled = true;
  try {
    const response = await api("POST", path, { ...body, stream: true });
    if (body.content) bubble("user", body.content);
    await follow(response, null);
  } catch (error) {
    bubble("assistant", `error: ${error.message}`);
    return;
  } finally {
    $("send").disabled = false;
    streaming(null);
  }
  await select(state.sessionId);
}

// --- conversation control -----------------------------------------------------------
async function send(event) {
  event.preventDefault();
  const content = $("content").value.trim();
  if (!content || !state.sessionId || state.streaming !== null) return;
  $("content").value = "";
  await ask(sessionPath("/messages"), { content });
}

function edit(item, message) {
  const box = element("form", "editor");
  const area = element("textarea");
  area.value = message.content;
  const save = element("button", "", "Send");
  box.append(area, save, button("Cancel", "Keep the message as it is", () => box.remove()));
  box.onsubmit = async (event) => {
    event.preventDefault();
    const content = area.value.trim();
    if (!content) return;
    while (item.nextSibling) item.nextSibling.remove(); // the new branch replaces what followed
    item.remove();
    await ask(sessionPath("/messages"), { content, parent_id: message.parent_id });
  };
  item.append(box);
  area.focus();
}

async function regenerate(message) {
  const item = $("messages").querySelector(`[data-id="${message.id}"]`);
  if (item) item.remove();
  await ask(sessionPath(`/messages/${message.id}/regenerate`), {});
}

async function stop() {
  if (state.streaming === null) return;
  await api("POST", sessionPath(`/messages/${state.streaming}/stop`));
}

async function switchTo(messageId) {
  await api("PATCH", sessionPath(), { active_message_id: messageId });
  await select(state.sessionId);
}

async function feedback(message, rating) {
  const path = sessionPath(`/messages/${message.id}/feedback`);
  if (rating) await api("PUT", path, { rating });
  else await api("DELETE", path);
  await select(state.sessionId);
}

async function fork(message) {
  const forked = await (await api("POST", sessionPath("/fork"), { message_id: message.id })).json();
  await select(forked.session_id);
}

// --- sessions -----------------------------------------------------------------------
async function loadSessions() {
  const archived = state.archived ? "&archived=true" : "";
  const { items } = await (await api("GET", `/api/sessions?limit=100${archived}`)).json();
  const list = $("sessions");
  list.replaceChildren();
  for (const session of items) {
    const item = element("li", session.session_id === state.sessionId ? "active" : "", session.title);
    item.dataset.id = session.session_id;
    if (session.pinned) item.classList.add("pinned");
    item.append(element("small", "", `${session.message_count} messages · ${new Date(session.updated_at).toLocaleString()}`));
    const filing = element("span", "filing");
    filing.append(
      button(session.pinned ? "Unpin" : "Pin", "Keep it at the top", file(session, { pinned: !session.pinned }), "link pin"),
      button(session.archived ? "Unarchive" : "Archive", "Out of the list, kept", file(session, { archived: !session.archived }), "link archive"),
    );
    item.append(filing);
    item.onclick = () => select(session.session_id);
    list.append(item);
  }
  $("show-archived").textContent = state.archived ? "back to sessions" : "archived";
  return items;
}

function file(session, change) {
  return async (event) => {
    event.stopPropagation(); // not a click on the session
    await api("PATCH", `/api/sessions/${session.session_id}`, change);
    await loadSessions();
  };
}

// Show a session; with `target` (a message id, say a search hit), show the branch holding it,
// switching to it first if need be, scrolled to it and highlighted for a moment.
async function select(sessionId, target = null) {
  state.sessionId = sessionId;
  history.replaceState(null, "", sessionId ? `#${sessionId}` : "#");
  $("composer").hidden = $("delete-session").hidden = !sessionId;
  if (!sessionId) {
    $("messages").replaceChildren();
    $("title").textContent = "Pick or create a session";
    return loadSessions();
  }
  let { session, messages, shown } = await loadBranch(sessionId, target);
  let failure = null;
  if (!shown) {
    try {
      await api("PATCH", sessionPath(), { active_message_id: target }); // 409 while answering
      ({ session, messages } = await loadBranch(sessionId, target));
    } catch (error) {
      failure = error; // show the branch as it is, then tell
    }
  }
  if (sessionId !== state.sessionId) return; // another session was picked meanwhile
  $("messages").replaceChildren();
  $("title").textContent = session.title;
  const lastAnswer = messages.findLast((m) => m.role === "assistant");
  for (const message of messages) {
    const item = bubble(message.role, message.content);
    if (message.role === "assistant" && message.metadata.status === "streaming") {
      // A reply still being generated (the page was reloaded mid-answer): follow it.
      item.classList.add("pending");
      item.dataset.id = message.id;
      const rest = await api("GET", sessionPath(`/messages/${message.id}/stream`));
      streaming(message.id);
      follow(rest, item).then(() => select(state.sessionId));
    } else {
      render(item, message, message === lastAnswer);
    }
  }
  const found = target !== null && $("messages").querySelector(`[data-id="${target}"]`);
  if (found) {
    found.scrollIntoView({ block: "center" });
    found.classList.add("found");
    setTimeout(() => found.classList.remove("found"), 3000);
  }
  await loadSessions();
  if (failure) throw failure;
  if (!found) $("content").focus();
}

// --- start ----------------------------------------------------------------------------
async function start() {
  try {
    await loadSessions();
  } catch (error) {
    if (error.status === 401) {
      $("signin").hidden = false;
      $("app").hidden = true;
      if (state.token) {
        $("signin-error").hidden = false;
        $("signin-error").textContent = "That token was refused.";
      }
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
$("signout").onclick = () => {
  localStorage.removeItem("token");
  state.token = "";
  clearSearch();
  start();
};
$("new-session").onclick = async () => {
  const title = prompt("Title of the new session (empty: made from your first message)", "");
  if (title === null) return;
  const session = await (await api("POST", "/api/sessions", title.trim() ? { title } : {})).json();
  await select(session.session_id);
};
$("delete-session").onclick = async () => {
  if (!confirm("Delete this session and all its messages?")) return;
  await api("DELETE", `/api/sessions/${state.sessionId}`);
  await select(null);
};
$("show-archived").onclick = () => {
  clearSearch(); // the list it shows, not search results
  state.archived = !state.archived;
  loadSessions();
};
$("composer").onsubmit = send;
$("stop").onclick = stop;
$("content").onkeydown = (event) => {
  if (event.key === "Enter" && !event.shiftKey) send(event);
};
initSearch({ open: select });
start();

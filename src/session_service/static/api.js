// The service's API as the page uses it: the signed-in token, JSON requests, Server-Sent
// Events read over fetch (EventSource cannot POST), and a branch's messages.

export const state = {
  token: localStorage.getItem("token") || "",
  sessionId: location.hash.slice(1) || null,
  archived: false, // the sidebar lists archived sessions instead
  streaming: null, // the assistant message id of the reply this page is streaming
};

export async function api(method, path, body) {
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

export const sessionPath = (suffix = "") => `/api/sessions/${state.sessionId}${suffix}`;

export async function* readEvents(response) {
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

const PAGE = 200; // messages shown at once; older ones are paged in to reach a search hit

// The active branch's latest messages; with a `target` message id, paged further back until
// it is among them (`shown`: it is, or there was no target).
export async function loadBranch(sessionId, target) {
  const session = await (await api("GET", `/api/sessions/${sessionId}?messages_limit=${PAGE}`)).json();
  let messages = session.messages;
  const has = () => messages.some((m) => m.id === target);
  if (target !== null && session.has_more_messages && !has()) {
    messages = [];
    let before = "";
    do {
      const path = `/api/sessions/${sessionId}/messages?limit=${PAGE}${before}`;
      const page = await (await api("GET", path)).json();
      messages = [...page.items, ...messages];
      before = page.next_cursor && `&before=${encodeURIComponent(page.next_cursor)}`;
    } while (before && !has());
  }
  return { session, messages, shown: target === null || has() };
}

// The sidebar's search: while the box holds a query, its results stand in for the session list.
// Results are user content: they are put in the page as text, never as HTML.
import { api } from "./api.js";
import { $, element } from "./dom.js";

const DELAY = 250; // ms of quiet typing before a search runs
const LIMIT = 20; // hits asked for per page
const ROUNDS = 5; // pages followed at most to find a first hit (a page may be empty, yet go on)
// Chinese, Japanese and Korean, found as substrings; other scripts as whole words. The same
// ranges as the service's (db/search_terms.py).
const CJK = "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
  + "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\u{20000}-\u{3134f}";
const CJK_RUN = new RegExp(`[${CJK}]+`, "gu");
const WORD = /[\p{L}\p{N}]+/gu;

const search = {
  generation: 0, // bumped by every new search: answers to an older one are dropped
  timer: 0,
  query: "",
  cursor: null,
  pattern: null, // what to highlight in snippets
  open: null, // (sessionId, messageId | null) => Promise: shows the session at the message
};

// A pattern matching the query's CJK runs anywhere and its words as whole words. Its parts are
// letters and digits only, so there is nothing in them to escape. The query is folded as the
// service folds it (full-width Latin is Latin).
function pattern(text) {
  const query = text.normalize("NFKC");
  const runs = query.match(CJK_RUN) || [];
  const words = query.replace(CJK_RUN, " ").match(WORD) || [];
  const parts = [...runs];
  if (words.length) parts.push(`(?<![\\p{L}\\p{N}])(?:${words.join("|")})(?![\\p{L}\\p{N}])`);
  return parts.length ? new RegExp(parts.join("|"), "giu") : null;
}

// The snippet as text nodes, with what the query asked for in <mark>s.
function snippet(text) {
  const box = element("span", "snippet");
  let at = 0;
  for (const match of search.pattern ? text.matchAll(search.pattern) : []) {
    if (!match[0]) continue;
    box.append(text.slice(at, match.index), element("mark", "", match[0]));
    at = match.index + match[0].length;
  }
  box.append(text.slice(at));
  return box;
}

function result(hit) {
  const item = element("li");
  const open = element("button", "hit");
  open.type = "button";
  open.dataset.session = hit.session.session_id;
  if (hit.message) open.dataset.message = hit.message.id;
  const where = hit.message
    ? `${hit.message.role === "user" ? "you" : "answer"} · ${new Date(hit.message.timestamp).toLocaleString()}`
    : "title";
  open.append(element("strong", "title", hit.session.title), snippet(hit.snippet), element("small", "", where));
  open.onclick = async () => {
    status("");
    try {
      await search.open(hit.session.session_id, hit.message ? hit.message.id : null);
    } catch (error) {
      status(`Could not show it: ${error.message}`);
    }
  };
  item.append(open);
  return item;
}

function status(text) {
  $("search-status").textContent = text;
  $("search-status").hidden = !text;
}

function searching(on) {
  $("sessions").hidden = on;
  $("results").hidden = !on;
  if (!on) {
    $("results").replaceChildren();
    $("search-more").hidden = true;
    status("");
  }
}

// The next pages of hits, until one is shown or none are left.
async function more(generation) {
  const results = $("results");
  $("search-more").disabled = true;
  let cursor = search.cursor, rounds = 0;
  do {
    const params = new URLSearchParams({ q: search.query, limit: LIMIT });
    if (cursor) params.set("cursor", cursor);
    let page;
    try {
      page = await (await api("GET", `/api/search?${params}`)).json();
    } catch (error) {
      if (generation === search.generation) status(`Search failed: ${error.message}`);
      return;
    } finally {
      $("search-more").disabled = false;
    }
    if (generation !== search.generation) return; // a newer search took over
    results.append(...page.items.map(result));
    cursor = page.next_cursor;
  } while (cursor && !results.children.length && ++rounds < ROUNDS);
  search.cursor = cursor;
  $("search-more").hidden = !cursor;
  status(results.children.length ? "" : cursor ? "Nothing yet" : "No results");
}

async function run() {
  clearTimeout(search.timer);
  const query = $("search").value.trim();
  if (!query) return clearSearch();
  if (query === search.query && !$("results").hidden) return; // the same search, shown
  const generation = ++search.generation;
  Object.assign(search, { query, cursor: null, pattern: pattern(query) });
  searching(true);
  $("results").replaceChildren();
  $("search-more").hidden = true;
  status("Searching…");
  await more(generation);
}

// Back to the session list (the box emptied by hand, or by the page).
export function clearSearch() {
  clearTimeout(search.timer);
  search.generation++;
  search.query = "";
  if ($("search").value.trim()) $("search").value = "";
  searching(false);
}

export function initSearch({ open }) {
  search.open = open;
  $("search-form").onsubmit = (event) => {
    event.preventDefault();
    search.query = ""; // Enter searches again, even for the same query
    run();
  };
  $("search").oninput = () => {
    clearTimeout(search.timer);
    if ($("search").value.trim()) search.timer = setTimeout(run, DELAY);
    else run(); // cleared: the session list at once
  };
  $("search-more").onclick = () => more(search.generation);
}

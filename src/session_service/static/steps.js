// A reply's steps (AGENT_GROUNDING=tools): each tool the agent called, with its input, and once
// it ended its sources and time or its error. Live from `tool_start` / `tool_end` events while
// a reply streams, and from `metadata.steps` when a stored reply is shown. Tool names, inputs
// and outputs are the model's and the tools': always set as text, never as HTML.
import { element } from "./dom.js";

const RUNNING = { search_knowledge_base: "searching…", ask_knowledge_base: "asking…" };
const INPUT_MAX = 160; // characters of a step's input shown

// `query: "capital of France"`, and `key: value` pairs joined for several arguments.
export function compactInput(input) {
  if (input === null || typeof input !== "object") return input == null ? "" : JSON.stringify(input);
  const text = Object.entries(input)
    .map(([key, value]) => `${key}: ${JSON.stringify(value) ?? String(value)}`)
    .join(", ");
  return text.length > INPUT_MAX ? `${text.slice(0, INPUT_MAX - 1)}…` : text;
}

function duration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// The bubble's list of steps, made (above the answer's text) when first needed.
function list(item) {
  let steps = item.querySelector(":scope > .steps");
  if (!steps) {
    steps = element("ol", "steps");
    steps.setAttribute("aria-label", "Steps");
    item.querySelector(".body").before(steps);
  }
  return steps;
}

function find(item, id) {
  return [...list(item).children].find((step) => step.dataset.id === String(id)) || null;
}

function started(item, data) {
  const step = find(item, data.id) || element("li", "step");
  step.dataset.id = String(data.id);
  step.className = "step running";
  const input = compactInput(data.input);
  step.replaceChildren(element("span", "tool", data.tool || "tool"));
  if (input) {
    step.append(element("span", "input", input));
    step.title = input;
  }
  step.append(element("span", "status", RUNNING[data.tool] || "running…"));
  if (!step.parentNode) list(item).append(step);
  return step;
}

function ended(step, data) {
  step.classList.remove("running");
  const status = step.querySelector(".status");
  const took = duration(data.duration_ms);
  if (data.error) {
    step.classList.add("failed");
    status.className = "status error";
    status.textContent = `error: ${data.error}`;
    if (took) status.title = took;
  } else {
    step.classList.add("done");
    const references = data.references || [];
    const sources = `${references.length} source${references.length === 1 ? "" : "s"}`;
    status.textContent = took ? `${sources} · ${took}` : sources;
    const names = references.map((ref) => ref.document_name || ref.document_id).filter(Boolean);
    if (names.length) status.title = names.join("\n");
  }
  step.querySelector(":scope > details")?.remove();
  if (data.output) {
    const details = element("details", "output");
    details.append(element("summary", "", "output"), element("pre", "", data.output));
    step.append(details);
  }
}

// A `tool_start` event: the step shows as running.
export function stepStarted(item, data) {
  started(item, data);
}

// A `tool_end` event: the step (shown running, or not seen start, as after a rejoin) ends.
export function stepEnded(item, data) {
  const step = find(item, data.id) || started(item, { id: data.id, tool: data.tool, input: data.input });
  ended(step, data);
}

// A stored reply's `metadata.steps`, all ended.
export function steps(item, meta) {
  const done = Array.isArray(meta.steps) ? meta.steps : [];
  item.querySelector(":scope > .steps")?.remove();
  for (const step of done) ended(started(item, step), step);
}

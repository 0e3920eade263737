// Building the page: elements, buttons and message bubbles. Answers are Markdown, rendered by
// marked and sanitised by DOMPurify (vendored in /static/vendor, loaded before the modules).

export const $ = (id) => document.getElementById(id);

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function button(label, title, onclick, className = "link") {
  const node = element("button", className, label);
  node.type = "button";
  node.title = title;
  node.onclick = onclick;
  return node;
}

export function setBody(item, role, text) {
  const body = item.querySelector(".body");
  if (role === "assistant") body.innerHTML = DOMPurify.sanitize(marked.parse(text));
  else body.textContent = text;
}

export function bubble(role, text) {
  const item = element("li", `message ${role}`);
  item.append(element("div", "body"));
  setBody(item, role, text);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

export function note(item, text) {
  item.querySelector(".body").after(element("span", "note", text));
}

export function references(item, meta) {
  const found = meta.references || [];
  if (!found.length) return;
  const list = element("ul", "references");
  for (const ref of found) {
    const chip = element("li", "chip", ref.document_name || ref.document_id || "document");
    if (ref.similarity != null) chip.title = `similarity ${Number(ref.similarity).toFixed(2)}`;
    list.append(chip);
  }
  item.append(list);
}

// A row's actions in one menu, so a row stays one line high: a button that
// opens a list of actions (arrow keys move, Escape closes, a click outside
// closes).

let open = null;

function close({ focus = false } = {}) {
  if (!open) return;
  const { button, list } = open;
  list.hidden = true;
  button.setAttribute("aria-expanded", "false");
  if (focus) button.focus();
  open = null;
}

function show(button, list) {
  close();
  list.hidden = false;
  button.setAttribute("aria-expanded", "true");
  open = { button, list };
  const first = list.querySelector("button");
  if (first) first.focus();
}

/** The menu cell's content: `items` = [[label, onClick, action]], named after `name`. */
export function rowMenu(items, name) {
  const wrap = document.createElement("div");
  wrap.className = "row-menu";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "menu-button";
  button.dataset.action = "menu";
  button.textContent = "Actions ▾";
  button.setAttribute("aria-haspopup", "menu");
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-label", `Actions for ${name}`);
  const list = document.createElement("div");
  list.className = "menu";
  list.setAttribute("role", "menu");
  list.hidden = true;
  for (const [label, onClick, action] of items) {
    const item = document.createElement("button");
    item.type = "button";
    item.setAttribute("role", "menuitem");
    item.dataset.action = action || label.toLowerCase();
    item.textContent = label;
    item.setAttribute("aria-label", `${label} ${name}`);
    item.addEventListener("click", () => {
      close();
      onClick(button);
    });
    list.append(item);
  }
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    if (open && open.list === list) close();
    else show(button, list);
  });
  list.addEventListener("keydown", (event) => {
    const items = [...list.querySelectorAll("button")];
    const at = items.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      close({ focus: true });
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = (at + (event.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      items[next].focus();
    }
  });
  wrap.append(button, list);
  return wrap;
}

document.addEventListener("click", (event) => {
  if (open && !open.list.contains(event.target)) close();
});

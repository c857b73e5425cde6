// The rate-limit and credit fields shared by the generate dialog and the
// key's panel: up to five limits (name, limit, period) and optional credits
// with a daily or monthly refill.

const MAX_LIMITS = 5;
const PERIODS = [[1, "second"], [60, "minute"], [3600, "hour"], [86400, "day"]];

function element(tag, props = {}, ...children) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

function limitRow(limit, idPrefix, index, onRemove) {
  const id = (part) => `${idPrefix}-limit-${index}-${part}`;
  const name = element("input", { id: id("name"), className: "limit-name", value: limit.name, maxLength: 32, placeholder: "burst", autocomplete: "off" });
  const count = element("input", { id: id("limit"), className: "limit-count", type: "number", min: 1, max: 1000000000, value: limit.limit });
  const period = element("select", { id: id("period"), className: "limit-period" });
  for (const [seconds, text] of PERIODS) period.append(element("option", { value: seconds }, `per ${text}`));
  if (!PERIODS.some(([seconds]) => seconds === limit.periodSeconds)) {
    period.append(element("option", { value: limit.periodSeconds }, `per ${limit.periodSeconds} s`));
  }
  period.value = String(limit.periodSeconds);
  const remove = element("button", { type: "button", className: "link" }, "Remove");
  remove.addEventListener("click", onRemove);
  return element("div", { className: "limit-row" },
    element("label", { htmlFor: name.id, className: "visually-hidden" }, "Limit name"), name,
    element("label", { htmlFor: count.id, className: "visually-hidden" }, "Requests"), count,
    element("label", { htmlFor: period.id, className: "visually-hidden" }, "Period"), period, remove);
}

/** Fills `container` (a fieldset) with the fields, showing `key`'s limits and credits (null: none). */
export function renderLimitFields(container, key, idPrefix) {
  let limits = key ? key.rateLimits.map((l) => ({ ...l })) : [];
  const list = element("div", { id: `${idPrefix}-limits`, className: "limit-list", tabIndex: -1 });
  const add = element("button", { type: "button", id: `${idPrefix}-add-limit` }, "Add a rate limit");
  const sync = () => {
    limits = readRows(list);
    draw();
  };
  const draw = () => {
    list.replaceChildren(...limits.map((limit, i) => limitRow(limit, idPrefix, i, () => {
      sync();
      limits.splice(i, 1);
      draw();
    })));
    if (!limits.length) list.append(element("p", { className: "muted" }, "No rate limits."));
    add.disabled = limits.length >= MAX_LIMITS;
  };
  add.addEventListener("click", () => {
    sync();
    limits.push({ name: limits.length ? `limit-${limits.length + 1}` : "burst", limit: 100, periodSeconds: 60 });
    draw();
  });
  draw();

  const credits = key ? key.credits : null;
  const on = element("input", { type: "checkbox", id: `${idPrefix}-credits-on`, checked: Boolean(credits) });
  const remaining = element("input", { id: `${idPrefix}-credits-remaining`, type: "number", min: 0, max: 1000000000, value: credits ? credits.remaining : 1000 });
  remaining.setAttribute("aria-describedby", `${idPrefix}-credits-remaining-error`);
  const refill = element("select", { id: `${idPrefix}-refill` });
  for (const [value, text] of [["", "Never refilled"], ["DAILY", "Refilled daily"], ["MONTHLY", "Refilled monthly"]]) refill.append(element("option", { value }, text));
  refill.value = credits && credits.refill ? credits.refill.interval : "";
  const amount = element("input", { id: `${idPrefix}-refill-amount`, type: "number", min: 1, max: 1000000000, value: credits && credits.refill ? credits.refill.amount : 1000 });
  const day = element("input", { id: `${idPrefix}-refill-day`, type: "number", min: 1, max: 31, value: credits && credits.refill && credits.refill.day ? credits.refill.day : 1 });
  const refillFields = element("div", { className: "refill" },
    element("label", { htmlFor: amount.id }, "Refilled to"), amount,
    element("p", { id: `${amount.id}-error`, className: "field-error" }));
  const dayFields = element("div", { className: "refill" },
    element("label", { htmlFor: day.id }, "On day of the month (the last day of shorter months)"), day,
    element("p", { id: `${day.id}-error`, className: "field-error" }));
  const creditFields = element("div", { className: "credit-fields" },
    element("label", { htmlFor: remaining.id }, "Credits"), remaining,
    element("p", { id: `${remaining.id}-error`, className: "field-error" }),
    element("label", { htmlFor: refill.id }, "Refill (at 00:00 UTC)"), refill, refillFields, dayFields);
  const show = () => {
    creditFields.hidden = !on.checked;
    refillFields.hidden = refill.value === "";
    dayFields.hidden = refill.value !== "MONTHLY";
  };
  on.addEventListener("change", show);
  refill.addEventListener("change", show);
  show();

  container.replaceChildren(
    element("legend", {}, "Rate limits and credits"),
    element("p", { className: "muted" }, "Every limit must admit a request; each request spends its cost (1 unless the gateway says) of the credits."),
    list, add, element("p", { id: `${idPrefix}-limits-error`, className: "field-error", "aria-live": "polite" }),
    element("label", { className: "inline", htmlFor: on.id }, on, " Limit with credits"), creditFields);
}

function readRows(list) {
  return [...list.querySelectorAll(".limit-row")].map((row) => ({
    name: row.querySelector(".limit-name").value.trim(),
    limit: Number(row.querySelector(".limit-count").value),
    periodSeconds: Number(row.querySelector(".limit-period").value),
  }));
}

/** What the fields say: `{ rateLimits, credits }` (credits null: unlimited). */
export function readLimitFields(container, idPrefix) {
  const field = (name) => container.querySelector(`#${idPrefix}-${name}`);
  const rateLimits = readRows(field("limits"));
  if (!field("credits-on").checked) return { rateLimits, credits: null };
  const credits = { remaining: Number(field("credits-remaining").value) };
  const interval = field("refill").value;
  if (interval) {
    credits.refill = { amount: Number(field("refill-amount").value), interval };
    if (interval === "MONTHLY") credits.refill.day = Number(field("refill-day").value);
  }
  return { rateLimits, credits };
}

/** The field ids of the user errors these fields can get (by the last part of their path). */
export function limitErrorFields(idPrefix) {
  const limits = `${idPrefix}-limits`;
  return { rateLimits: limits, name: limits, limit: limits, periodSeconds: limits,
    remaining: `${idPrefix}-credits-remaining`, amount: `${idPrefix}-refill-amount`, day: `${idPrefix}-refill-day` };
}

/** Whether `credits` (as read) are what `key` has: saving them again would start a new period. */
export function sameCredits(key, credits) {
  const had = key.credits;
  if (!had || !credits) return !had && !credits;
  const refill = (r) => (r ? `${r.interval}:${r.amount}:${r.interval === "MONTHLY" ? r.day || 1 : ""}` : "");
  return had.remaining === credits.remaining && refill(had.refill) === refill(credits.refill);
}

/** The table's "Credits" cell: what is left, or a dash titled "Unlimited". */
export function creditsText(key) {
  return key.credits ? key.credits.remaining.toLocaleString() : "—";
}

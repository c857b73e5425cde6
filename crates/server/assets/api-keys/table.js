// The key table: rows, paging, search and the owner filter.

import { sparkline } from "./chart.js";
import { rangeOf } from "./detail-panel.js";
import { Q_KEYS, Q_MORE_KEYS, gql } from "./graphql.js";
import { state } from "./state.js";
import { creditsText } from "./limits-form.js";
import { summary } from "./restrictions-form.js";
import { rowMenu } from "./row-menu.js";
import { $, ROLE_NAMES, busy, formatDate } from "./ui.js";

const PAGE_SIZE = 25;
/** The "Unused for 90 days" filter: no successful verification in this many days. */
const UNUSED_DAYS = 90;
const LEGACY_HINT = "This key was created before key management existed, so it has no edit history.";

const STATUS_NAMES = {
  ACTIVE: "Active",
  DISABLED: "Disabled",
  EXPIRED: "Expired",
  COMPROMISED: "Compromised — rotate it",
  SUSPENDED: "Suspended — owner deactivated",
};

/** The row actions of a key: `key => [[label, handler(key, button), action?], ...]`; set by `initTable`. */
let actionsFor = () => [];
/** Ends a key's overlap (the "End now" button); set by `initTable`. */
let endOverlap = () => {};

function cell(text, label, className) {
  const td = document.createElement("td");
  if (label) td.dataset.label = label;
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function dateCell(iso, label, by, emptyText, emptyTitle) {
  const td = cell("", label);
  if (!iso) {
    td.textContent = emptyText;
    if (emptyTitle) td.title = emptyTitle;
    return td;
  }
  const time = document.createElement("time");
  time.dateTime = iso;
  time.title = iso;
  time.textContent = formatDate(iso);
  td.append(time);
  if (by) {
    const sub = document.createElement("span");
    sub.className = "sub";
    sub.textContent = `by ${by.name}`;
    td.title = `${iso} by ${by.name}`;
    td.append(sub);
  }
  return td;
}

/** "Expires in 6 days", "Expires in 5 hours", "Expired", or "Never". */
function expiryText(key) {
  if (!key.expiresAt) return "Never";
  const left = new Date(key.expiresAt).getTime() - Date.now();
  if (key.status === "EXPIRED" || left <= 0) return "Expired";
  const hours = Math.ceil(left / 3_600_000);
  if (hours < 24) return `Expires in ${hours} hour${hours === 1 ? "" : "s"}`;
  const days = Math.ceil(left / 86_400_000);
  return `Expires in ${days} day${days === 1 ? "" : "s"}`;
}

function keyCell(key) {
  const td = cell(`••••${key.lastFour}`, "Key", "key");
  if (key.previousSecretExpiresAt) {
    const badge = document.createElement("span");
    badge.className = "sub overlap";
    badge.textContent = `Old secret ••••${key.previousLastFour} works until ${formatDate(key.previousSecretExpiresAt)}`;
    const end = document.createElement("button");
    end.type = "button";
    end.className = "link";
    end.dataset.action = "end-overlap";
    end.textContent = "End now";
    end.setAttribute("aria-label", `Stop the old secret of key ${key.description} ending in ${key.previousLastFour} now`);
    end.addEventListener("click", () => endOverlap(key, end));
    badge.append(" ", end);
    td.append(badge);
  }
  return td;
}

/** The names of the key policy's rules, as the table explains them. */
const RULE_NAMES = {
  maxLifetimeDays: "lives longer than the policy allows",
  requireExpiry: "has no expiry",
  requireRestrictions: "has full access",
};

function statusCell(key) {
  const td = cell("", "Status");
  const badge = document.createElement("span");
  badge.className = `status status-${key.status.toLowerCase()}`;
  badge.textContent = key.disabledReason === "UNUSED" ? "Disabled · unused" : STATUS_NAMES[key.status] || key.status;
  if (key.disabledReason === "UNUSED") badge.title = "Switched off by the key policy after going unused; enable it to use it again.";
  td.append(badge);
  if (key.unusedDisableAt) {
    const soon = document.createElement("span");
    soon.className = "status status-warning";
    soon.textContent = "Unused";
    soon.title = `Unused: the key policy switches it off at ${key.unusedDisableAt} unless it is used or enabled before.`;
    td.append(" ", soon);
  }
  if (key.policyViolations.length) {
    const breaks = document.createElement("span");
    breaks.className = "status status-policy";
    breaks.textContent = "Breaks policy";
    breaks.title = `This key ${key.policyViolations.map((r) => RULE_NAMES[r] || r).join(", ")}. It keeps working; rotate or change it to comply.`;
    td.append(" ", breaks);
  }
  return td;
}

function expiryCell(key) {
  const td = cell(expiryText(key), "Expires", "expires");
  if (key.expiresAt) td.title = key.expiresAt;
  return td;
}

/** "Last 30 days": a daily sparkline and the count of successful verifications. */
function usageCell(key) {
  const td = cell("", "Last 30 days", "usage");
  const days = key.daily ? key.daily.buckets.map((b) => b.valid) : [];
  const count = document.createElement("span");
  count.className = "usage-count";
  count.textContent = key.usage30d.toLocaleString();
  td.append(sparkline(days, { label: `${key.usage30d} successful verifications in the last 30 days` }), count);
  return td;
}

function row(key) {
  const tr = document.createElement("tr");
  tr.dataset.keyId = key.id;
  tr.dataset.status = key.status;
  tr.append(keyCell(key));
  const description = cell(key.description, "Description", "desc");
  description.title = key.description;
  tr.append(description);
  const owner = cell(key.owner.name, "Owner", "owner");
  const role = document.createElement("span");
  role.className = "sub";
  role.textContent = ROLE_NAMES[key.owner.role] || key.owner.role;
  owner.title = `${key.owner.name} — ${role.textContent}`;
  owner.append(role);
  tr.append(owner);
  tr.append(cell(summary(key.restrictions), "Access", "access"));
  tr.append(statusCell(key));
  tr.append(expiryCell(key));
  tr.append(dateCell(key.lastEditedAt, "Last edited", key.lastEditedBy, "—", LEGACY_HINT));
  tr.append(dateCell(key.lastUsedAt, "Last used", null, "Never"));
  tr.append(usageCell(key));
  const credits = cell(creditsText(key), "Credits", "credits");
  if (!key.credits) credits.title = "Unlimited";
  tr.append(credits);
  tr.append(dateCell(key.createdAt, "Created", key.createdBy, ""));
  const items = actionsFor(key).map(([label, handler, action]) => [label, (opener) => handler(key, opener), action]);
  const wrap = document.createElement("td");
  wrap.className = "actions-cell";
  wrap.append(rowMenu(items, `key ${key.description} ending in ${key.lastFour}`));
  tr.append(wrap);
  return tr;
}

export function renderRows() {
  $("rows").replaceChildren(...state.keys.map(row));
  const filtered = state.search || state.owner || state.unused || state.violates;
  $("empty").hidden = state.keys.length > 0 || filtered;
  $("more").hidden = !state.hasMore;
  $("count").textContent = state.keys.length === 0 && filtered
    ? "No keys match these filters."
    : `Showing ${state.keys.length} of ${state.total.toLocaleString("en")}${state.totalCapped ? "+" : ""} key${state.total === 1 && !state.totalCapped ? "" : "s"}.`;
  if (!state.rendered) {
    state.rendered = true;
    performance.mark("api-keys-table-rendered");
  }
}

/** Loads the first page (or, with `append`, the next one) under the current filters. */
export async function loadKeys({ append = false } = {}) {
  const seq = ++state.loadSeq;
  const { from, to } = rangeOf("days");
  const variables = {
    first: PAGE_SIZE,
    after: append ? state.after : null,
    search: state.search || null,
    ownerId: state.owner || null,
    unused: state.unused ? UNUSED_DAYS : null,
    violates: state.violates || null,
    from,
    to,
  };
  const data = await gql(append ? Q_MORE_KEYS : Q_KEYS, variables);
  if (seq !== state.loadSeq) return; // a newer search won
  const page = data.apiKeys;
  state.keys = append ? state.keys.concat(page.nodes) : page.nodes;
  state.after = page.pageInfo.endCursor;
  state.hasMore = page.pageInfo.hasNextPage;
  if (!append) {
    state.total = page.totalCount;
    state.totalCapped = page.totalCountCapped;
  }
  renderRows();
}

/** Puts one key, as the server now has it, in place of its row. */
export function replaceKey(key) {
  state.keys = state.keys.map((k) => (k.id === key.id ? key : k));
  renderRows();
}

/** Fills the owner choices of the generate dialog and of the filter. */
export function fillOwnerSelects() {
  const me = state.viewer && state.viewer.user ? state.viewer.user.id : null;
  const options = () =>
    state.candidates.map((u) => {
      const o = document.createElement("option");
      o.value = u.id;
      o.textContent = `${u.name}${u.id === me ? " (you)" : ""} — ${ROLE_NAMES[u.role] || u.role}`;
      return o;
    });
  $("generate-owner").replaceChildren(...options());
  const all = document.createElement("option");
  all.value = "";
  all.textContent = "All owners";
  const choices = [all, ...options()];
  if (state.owner && !state.candidates.some((u) => u.id === state.owner)) {
    // An owner who may no longer own keys (deactivated), filtered to by a link.
    const linked = document.createElement("option");
    linked.value = state.owner;
    linked.textContent = "The owner from the link (deactivated)";
    choices.push(linked);
  }
  $("owner-filter").replaceChildren(...choices);
  $("owner-filter").value = state.owner;
}

/** Empties the table and its filters (on sign-out). */
export function clearTable() {
  state.keys = [];
  state.search = "";
  state.owner = "";
  state.unused = false;
  state.violates = false;
  state.rendered = false;
  $("search").value = "";
  $("unused-filter").checked = false;
  $("policy-filter").checked = false;
  $("rows").replaceChildren();
}

/** `rowActions(key)` gives a row's menu items; `onEndOverlap(key, button)` runs "End now". */
export function initTable(rowActions, onEndOverlap, onError) {
  actionsFor = rowActions;
  endOverlap = onEndOverlap;
  let searchTimer = null;
  $("search").addEventListener("input", (event) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.search = event.target.value.trim();
      loadKeys().catch(onError);
    }, 250);
  });
  $("owner-filter").addEventListener("change", (event) => {
    state.owner = event.target.value;
    loadKeys().catch(onError);
  });
  $("unused-filter").addEventListener("change", (event) => {
    state.unused = event.target.checked;
    loadKeys().catch(onError);
  });
  $("policy-filter").addEventListener("change", (event) => {
    state.violates = event.target.checked;
    loadKeys().catch(onError);
  });
  $("more").addEventListener("click", async (event) => {
    await busy([event.currentTarget], () => loadKeys({ append: true }).catch(onError));
  });
}

// A key's detail panel: its last use, a chart of the last 30 days by day
// (or the last 48 hours by hour), its limits and credits, and its audit trail.

import { stackedBars } from "./chart.js";
import { Q_KEY_DETAIL, gql } from "./graphql.js";
import { showLimits } from "./limits-panel.js";
import { $, hideBanner, openDialog } from "./ui.js";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const CLOUD_NAMES = { EMPLOYEE: "Employee cloud", CUSTOMER: "Customer cloud" };
const ACTION_NAMES = {
  GENERATED: "Generated", ROTATED: "Rotated", DESCRIPTION_CHANGED: "Description changed", DELETED: "Deleted",
  EXPIRY_CHANGED: "Expiry changed", DISABLED: "Disabled", ENABLED: "Enabled", PREVIOUS_SECRET_EXPIRED: "Old secret ended",
  EXPIRED: "Expired", RESTRICTIONS_CHANGED: "Restrictions changed", OWNER_CHANGED: "Owner changed",
  LEAK_REPORTED: "Reported leaked", IMPORTED: "Imported", SETTINGS_CHANGED: "Settings changed",
  LIMITS_CHANGED: "Limits changed", CREDITS_ADDED: "Credits added",
};

let showing = null;
let view = "days";
let onFailure = () => {};

/** The range of a view: the last 30 days by day, or the last 48 hours by hour. */
export function rangeOf(view, now = Date.now()) {
  if (view === "hours") {
    const to = Math.floor(now / HOUR) * HOUR + HOUR;
    return { from: new Date(to - 48 * HOUR).toISOString(), to: new Date(to).toISOString(), granularity: "HOUR" };
  }
  const to = Math.floor(now / DAY) * DAY + DAY;
  return { from: new Date(to - 30 * DAY).toISOString(), to: new Date(to).toISOString(), granularity: "DAY" };
}

function dayTick(start, index, full) {
  const d = new Date(start);
  if (full) return d.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  return index % 7 === 0 ? d.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" }) : "";
}

function hourTick(start, index, full) {
  const d = new Date(start);
  const text = d.toLocaleString(undefined, { weekday: "short", hour: "2-digit", timeZone: "UTC" });
  return full || index % 8 === 0 ? `${text} UTC`.replace(" UTC UTC", " UTC") : "";
}

function term(list, label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

function renderLastUse(lastUsed) {
  const list = $("detail-last-use");
  list.replaceChildren();
  if (!lastUsed) {
    term(list, "Last used", "Never");
    return;
  }
  term(list, "Last used", new Date(lastUsed.at).toLocaleString());
  term(list, "Cloud", CLOUD_NAMES[lastUsed.cloud] || "Not told");
  term(list, "Address", lastUsed.clientAddress || "Unknown");
  term(list, "User agent", lastUsed.userAgent || "None sent");
}

function renderAudit(events) {
  const items = events.map((event) => {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = event.occurredAt;
    time.textContent = new Date(event.occurredAt).toLocaleString();
    li.append(time, ` — ${ACTION_NAMES[event.action] || event.action} by ${event.actorName}`);
    return li;
  });
  $("detail-audit").replaceChildren(...items);
}

async function load(chosen) {
  view = chosen;
  const range = rangeOf(view);
  const data = await gql(Q_KEY_DETAIL, { id: showing.id, ...range });
  const key = data.apiKey;
  if (!key) throw new Error("This key no longer exists.");
  renderLastUse(key.lastUsed);
  const caption = view === "hours" ? "Verifications in the last 48 hours, by hour (UTC)" : "Verifications in the last 30 days, by day (UTC)";
  $("detail-chart-title").textContent = caption;
  $("detail-totals").textContent = `${key.usage.valid} valid, ${key.usage.refused} refused`;
  const chart = stackedBars(key.usage.buckets, { tick: view === "hours" ? hourTick : dayTick, caption });
  $("detail-chart").replaceChildren(chart);
  renderAudit(data.apiKeyEvents.nodes);
  for (const b of document.querySelectorAll("#detail-range button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
}

/** Row action: opens the panel for `key`. */
export async function openDetail(key, opener) {
  hideBanner();
  showing = key;
  $("detail-title").textContent = `${key.description} ••••${key.lastFour}`;
  $("detail-chart").replaceChildren();
  showLimits(key);
  openDialog($("detail-dialog"), opener);
  try {
    await load("days");
  } catch (error) {
    onFailure(error);
  }
}

/** Reads the open panel's key again (after a change made in it: its audit trail grows). */
export function reloadDetail() {
  if (showing && $("detail-dialog").open) load(view).catch(onFailure);
}

export function initDetailPanel(onError) {
  onFailure = onError;
  for (const button of document.querySelectorAll("#detail-range button")) {
    button.addEventListener("click", () => load(button.dataset.view).catch(onError));
  }
}

// The restriction fields shared by the generate and "Edit restrictions"
// dialogs: permissions grouped by cloud (none / read / read & write per
// resource), cloud checkboxes, and an address list checked as it is typed.

import { state } from "./state.js";

const CLOUD_NAMES = { EMPLOYEE: "Employee cloud", CUSTOMER: "Customer cloud" };
const MAX_ADDRESSES = 50;

/** Resources in catalogue order: { resource, cloud, read, write }. */
function resources() {
  const byName = new Map();
  for (const p of state.permissions) {
    const [resource, access = "full"] = p.name.split(":");
    const entry = byName.get(resource) || { resource, cloud: p.cloud, read: null, write: null, full: null };
    entry[access] = p;
    byName.set(resource, entry);
  }
  return [...byName.values()];
}

function element(tag, props = {}, ...children) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

/** Whether `text` is an IPv4/IPv6 address or CIDR block (the server decides; this is a first check). */
export function looksLikeNetwork(text) {
  const [address, prefix, extra] = text.split("/");
  if (extra !== undefined || (prefix !== undefined && !/^\d{1,3}$/.test(prefix))) return false;
  const v4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(address);
  let v6 = false;
  if (!v4 && address.includes(":")) {
    try {
      v6 = new URL(`http://[${address}]/`).hostname.length > 2;
    } catch {
      v6 = false;
    }
  }
  if (!v4 && !v6) return false;
  return prefix === undefined || Number(prefix) <= (v4 ? 32 : 128);
}

/** Fills `container` (a fieldset) with the fields, showing `restrictions` (null: full access). */
export function renderRestrictionFields(container, restrictions, idPrefix) {
  const permissions = restrictions ? restrictions.permissions : null;
  const clouds = restrictions ? restrictions.clouds : ["EMPLOYEE", "CUSTOMER"];
  const ips = restrictions ? restrictions.allowedIps : [];
  const full = element("input", { type: "checkbox", id: `${idPrefix}-full`, checked: permissions === null });
  const grid = element("div", { className: "permission-grid", id: `${idPrefix}-permissions` });
  for (const cloud of [null, "CUSTOMER"]) {
    const group = resources().filter((r) => r.cloud === cloud);
    if (!group.length) continue;
    grid.append(element("p", { className: "group" }, cloud ? `${CLOUD_NAMES[cloud]} only` : "Both clouds"));
    for (const r of group) {
      const select = element("select", { id: `${idPrefix}-perm-${r.resource}` });
      select.dataset.resource = r.resource;
      const options = r.full ? [["", "No access"], [r.full.name, "Full"]] : [["", "No access"], ["read", "Read"], ["write", "Read & write"]];
      for (const [value, text] of options) select.append(element("option", { value }, text));
      const has = (name) => permissions && permissions.includes(name);
      select.value = r.full ? (has(r.full.name) ? r.full.name : "") : has(r.write && r.write.name) ? "write" : has(r.read && r.read.name) ? "read" : "";
      select.title = [r.read, r.write, r.full].filter(Boolean).map((p) => `${p.name}: ${p.description}`).join("\n");
      grid.append(element("label", { htmlFor: select.id, className: "permission" }, r.resource), select);
    }
  }
  grid.hidden = full.checked;
  full.addEventListener("change", () => (grid.hidden = full.checked));
  const cloudBoxes = ["EMPLOYEE", "CUSTOMER"].map((cloud) => {
    const box = element("input", { type: "checkbox", value: cloud, checked: clouds.includes(cloud), id: `${idPrefix}-cloud-${cloud.toLowerCase()}` });
    return element("label", { className: "inline", htmlFor: box.id }, box, ` ${CLOUD_NAMES[cloud]}`);
  });
  const addresses = element("textarea", {
    id: `${idPrefix}-ips`,
    rows: 3,
    value: ips.join("\n"),
    placeholder: "Any address. One per line, e.g. 203.0.113.7 or 10.0.0.0/8",
  });
  addresses.setAttribute("aria-describedby", `${idPrefix}-ips-error`);
  const addressError = element("p", { id: `${idPrefix}-ips-error`, className: "field-error" });
  addressError.setAttribute("aria-live", "polite");
  addresses.addEventListener("input", () => {
    const bad = lines(addresses.value).filter((l) => !looksLikeNetwork(l));
    const count = lines(addresses.value).length;
    addressError.textContent = bad.length
      ? `Not an IP address or CIDR block: ${bad.slice(0, 3).join(", ")}`
      : count > MAX_ADDRESSES ? `At most ${MAX_ADDRESSES} addresses or networks.` : "";
    addresses.toggleAttribute("aria-invalid", bad.length > 0 || count > MAX_ADDRESSES);
  });
  container.replaceChildren(
    element("legend", {}, "Access"),
    element("label", { className: "inline", htmlFor: full.id }, full, " Full access (every permission)"),
    element("p", { id: `${idPrefix}-permissions-error`, className: "field-error" }),
    grid,
    element("p", { className: "label" }, "Clouds"),
    element("span", { id: `${idPrefix}-clouds` }, ...cloudBoxes),
    element("p", { id: `${idPrefix}-clouds-error`, className: "field-error" }),
    element("label", { htmlFor: addresses.id }, "Allowed addresses"),
    addresses,
    addressError,
  );
}

function lines(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

/** The restrictions the fields in `container` describe, as GraphQL input. */
export function readRestrictionFields(container, idPrefix) {
  let permissions = null;
  if (!container.querySelector(`#${idPrefix}-full`).checked) {
    permissions = [];
    for (const select of container.querySelectorAll("select[data-resource]")) {
      const resource = select.dataset.resource;
      if (select.value === "read") permissions.push(`${resource}:read`);
      else if (select.value === "write") permissions.push(`${resource}:read`, `${resource}:write`);
      else if (select.value) permissions.push(select.value);
    }
  }
  const clouds = [...container.querySelectorAll("input[type=checkbox][value]")].filter((b) => b.checked).map((b) => b.value);
  return { permissions, clouds, allowedIps: lines(container.querySelector(`#${idPrefix}-ips`).value) };
}

/** The ids userErrors on `restrictions.*` are shown next to. */
export function restrictionErrorFields(idPrefix) {
  return { permissions: `${idPrefix}-permissions`, clouds: `${idPrefix}-clouds`, allowedIps: `${idPrefix}-ips` };
}

/** "Full access", or e.g. "3 permissions · Customer cloud · 2 networks". */
export function summary(restrictions) {
  const parts = [];
  if (restrictions.permissions) {
    const n = restrictions.permissions.length;
    parts.push(n === 0 ? "No permissions" : `${n} permission${n === 1 ? "" : "s"}`);
  }
  if (restrictions.clouds.length === 1) parts.push(CLOUD_NAMES[restrictions.clouds[0]]);
  const nets = restrictions.allowedIps.length;
  if (nets) parts.push(`${nets} network${nets === 1 ? "" : "s"}`);
  return parts.length ? parts.join(" · ") : "Full access";
}

// The tenant's key policy: a panel above the key table with the rules in
// words, a dialog that replaces them, and what the generate, rotate and
// restrictions dialogs take from them (the latest expiry, named
// permissions, the longest overlap).

import { M_SET_SELF_ROTATION, M_UPDATE_POLICY, gql } from "./graphql.js";
import { loadKeys, replaceKey } from "./table.js";
import { state } from "./state.js";
import { $, busy, clearFieldErrors, closeDialog, hideBanner, openDialog, showUserErrors } from "./ui.js";

/** The policy's number fields: GraphQL name → input id. */
const NUMBER_FIELDS = {
  maxLifetimeDays: "policy-lifetime",
  maxOverlapSeconds: "policy-overlap",
  disableUnusedAfterDays: "policy-unused",
  maxKeysPerOwner: "policy-per-owner",
};
const SWITCHES = { requireExpiry: "policy-require-expiry", requireRestrictions: "policy-require-restrictions" };
const DAY_MS = 24 * 3600 * 1000;

/** The rules in words, as the server mails them ("No rules" when none). */
export function describePolicy(p) {
  const rules = [];
  if (p.maxLifetimeDays != null) rules.push(`keys expire within ${p.maxLifetimeDays} days`);
  else if (p.requireExpiry) rules.push("keys must have an expiry");
  if (p.requireRestrictions) rules.push("keys must name their permissions");
  if (p.maxOverlapSeconds != null) rules.push(`a rotation keeps the old secret at most ${p.maxOverlapSeconds} s`);
  if (p.disableUnusedAfterDays != null) rules.push(`keys unused for ${p.disableUnusedAfterDays} days are switched off`);
  if (p.maxKeysPerOwner != null) rules.push(`at most ${p.maxKeysPerOwner} keys per owner`);
  if (!rules.length) return "No rules: keys may live for ever, with full access.";
  const text = rules.join("; ");
  return `${text[0].toUpperCase()}${text.slice(1)}.`;
}

function policy() {
  return state.policy || {};
}

/** `date` as `YYYY-MM-DD` in the admin's time zone (what a date input holds). */
function localDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** Shows the policy in its panel. */
export function renderPolicy() {
  $("policy-summary").textContent = describePolicy(policy());
}

/** The generate dialog under the policy: the expiry picker bounded, required when asked. */
export function applyPolicyToGenerate() {
  const p = policy();
  const picker = $("generate-expires");
  const required = p.requireExpiry || p.maxLifetimeDays != null;
  // A chosen day means its end, in the admin's time zone: the last day
  // whose end is within the allowed lifetime.
  const latest = new Date(Date.now() + (Math.min(p.maxLifetimeDays ?? 366, 366) - 1) * DAY_MS);
  picker.max = localDate(latest);
  picker.required = required;
  $("generate-expires-optional").hidden = required;
  $("generate-expires-hint").textContent = required
    ? `Your key policy requires an expiry, at most ${p.maxLifetimeDays ?? 366} days ahead. The owner is emailed 7 days and 1 day before.`
    : "Leave empty for a key that never expires. At most a year ahead; the owner is emailed 7 days and 1 day before.";
  if (required && !picker.value) picker.value = picker.max;
}

/** Restriction fields under the policy: "Full access" off and unavailable when permissions are required. */
export function applyPolicyToRestrictions(container, idPrefix) {
  if (!policy().requireRestrictions) return;
  const full = container.querySelector(`#${idPrefix}-full`);
  full.checked = false;
  full.disabled = true;
  full.parentElement.title = "Your key policy requires a key to name its permissions.";
  full.dispatchEvent(new Event("change"));
}

/** The rotate dialog under the policy: overlaps beyond its maximum cannot be chosen. */
export function applyPolicyToRotate() {
  const max = policy().maxOverlapSeconds;
  for (const option of $("rotate-overlap").options) {
    option.disabled = max != null && Number(option.value) > max;
  }
  $("rotate-overlap-hint").textContent =
    max != null ? `Your key policy keeps an old secret at most ${max} seconds.` : "";
}

/** Row action: allows or stops the key rotating itself. */
export async function toggleSelfRotation(key, onError) {
  try {
    const input = { id: key.id, selfRotation: !key.selfRotation };
    const result = (await gql(M_SET_SELF_ROTATION, { input })).setApiKeySelfRotation;
    if (showUserErrors(result.userErrors, {})) return;
    replaceKey(result.apiKey);
  } catch (error) {
    onError(error);
  }
}

function openPolicy(event) {
  hideBanner();
  const form = $("policy-form");
  clearFieldErrors(form);
  const p = policy();
  for (const [name, id] of Object.entries(NUMBER_FIELDS)) $(id).value = p[name] ?? "";
  for (const [name, id] of Object.entries(SWITCHES)) $(id).checked = Boolean(p[name]);
  openDialog($("policy-dialog"), event.currentTarget);
  $("policy-lifetime").focus();
}

/** The form as `UpdateTenantKeyPolicyInput`: the whole policy, an empty field null. */
function readPolicy() {
  const input = {};
  for (const [name, id] of Object.entries(NUMBER_FIELDS)) {
    const text = $(id).value.trim();
    input[name] = text === "" ? null : Number(text);
  }
  for (const [name, id] of Object.entries(SWITCHES)) input[name] = $(id).checked;
  return input;
}

export function initKeyPolicy(onError) {
  $("edit-policy").addEventListener("click", openPolicy);
  $("policy-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const result = (await gql(M_UPDATE_POLICY, { input: readPolicy() })).updateTenantKeyPolicy;
        if (showUserErrors(result.userErrors, NUMBER_FIELDS)) return;
        state.policy = result.policy;
        renderPolicy();
        closeDialog($("policy-dialog"));
        await loadKeys();
      } catch (error) {
        closeDialog($("policy-dialog"));
        onError(error);
      }
    });
  });
}

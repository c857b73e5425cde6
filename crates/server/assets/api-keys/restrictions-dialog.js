// Edit a key's restrictions: what it may do, in which clouds, from where.

import { M_RESTRICT, gql } from "./graphql.js";
import { applyPolicyToRestrictions } from "./key-policy.js";
import { readRestrictionFields, renderRestrictionFields, restrictionErrorFields } from "./restrictions-form.js";
import { replaceKey } from "./table.js";
import { $, busy, clearFieldErrors, closeDialog, hideBanner, openDialog, showUserErrors } from "./ui.js";

const PREFIX = "restrict-r";
let editing = null;

/** Row action: opens the dialog for `key`. */
export function openRestrictions(key, button) {
  hideBanner();
  editing = key;
  $("restrict-text").textContent = `“${key.description}” (••••${key.lastFour}). Changes apply at once.`;
  renderRestrictionFields($("restrict-fields"), key.restrictions, PREFIX);
  applyPolicyToRestrictions($("restrict-fields"), PREFIX);
  clearFieldErrors($("restrict-form"));
  openDialog($("restrict-dialog"), button);
}

export function initRestrictionsDialog(onError) {
  $("restrict-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    const input = { id: editing.id, restrictions: readRestrictionFields($("restrict-fields"), PREFIX) };
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const result = (await gql(M_RESTRICT, { input })).updateApiKeyRestrictions;
        if (showUserErrors(result.userErrors, restrictionErrorFields(PREFIX))) return;
        replaceKey(result.apiKey);
        closeDialog($("restrict-dialog"));
      } catch (error) {
        closeDialog($("restrict-dialog"));
        onError(error);
      }
    });
  });
}

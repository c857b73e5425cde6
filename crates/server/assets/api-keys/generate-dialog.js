// Generate a key: owner, description, an expiry (optional unless the key
// policy asks for one), restrictions and limits, whether it may rotate
// itself, then the secret once.

import { M_GENERATE, gql } from "./graphql.js";
import { applyPolicyToGenerate, applyPolicyToRestrictions } from "./key-policy.js";
import { showSecret } from "./secret-dialog.js";
import { limitErrorFields, readLimitFields, renderLimitFields } from "./limits-form.js";
import { readRestrictionFields, renderRestrictionFields, restrictionErrorFields } from "./restrictions-form.js";
import { loadKeys } from "./table.js";
import { $, busy, clearFieldErrors, closeDialog, hideBanner, openDialog, showUserErrors } from "./ui.js";

function openGenerate(event) {
  hideBanner();
  const form = $("generate-form");
  form.reset();
  clearFieldErrors(form);
  renderRestrictionFields($("generate-restrictions"), null, "generate-r");
  renderLimitFields($("generate-limits"), null, "generate-l");
  applyPolicyToGenerate();
  applyPolicyToRestrictions($("generate-restrictions"), "generate-r");
  openDialog($("generate-dialog"), event && event.currentTarget);
  $("generate-description").focus();
}

export function initGenerateDialog(onError) {
  $("generate").addEventListener("click", openGenerate);
  $("generate-empty").addEventListener("click", openGenerate);
  $("generate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    const input = { ownerId: $("generate-owner").value, description: $("generate-description").value };
    const expires = $("generate-expires").value;
    // The end of the chosen day, in the admin's time zone.
    if (expires) input.expiresAt = new Date(`${expires}T23:59:59`).toISOString();
    input.restrictions = readRestrictionFields($("generate-restrictions"), "generate-r");
    const { rateLimits, credits } = readLimitFields($("generate-limits"), "generate-l");
    if (rateLimits.length) input.rateLimits = rateLimits;
    if (credits) input.credits = credits;
    input.selfRotation = $("generate-self-rotation").checked;
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const result = (await gql(M_GENERATE, { input })).generateApiKey;
        if (showUserErrors(result.userErrors, {
            description: "generate-description",
            ownerId: "generate-owner",
            expiresAt: "generate-expires",
            ...restrictionErrorFields("generate-r"),
            ...limitErrorFields("generate-l"),
          })) return;
        closeDialog($("generate-dialog"));
        showSecret(result.secret, "Copy your new API key");
        await loadKeys();
      } catch (error) {
        closeDialog($("generate-dialog"));
        onError(error);
      }
    });
  });
}

// Rotate a key, choosing how long its old secret keeps working (within the
// key policy's maximum) and whether the first use of the new one ends it.

import { M_ROTATE, gql } from "./graphql.js";
import { applyPolicyToRotate } from "./key-policy.js";
import { showSecret } from "./secret-dialog.js";
import { loadKeys } from "./table.js";
import { $, busy, clearFieldErrors, closeDialog, hideBanner, openDialog, showUserErrors } from "./ui.js";

let rotating = null;

/** Row action: opens the rotate dialog for `key`. */
export function openRotate(key, button) {
  hideBanner();
  rotating = key;
  const form = $("rotate-form");
  form.reset();
  clearFieldErrors(form);
  $("rotate-text").textContent =
    `Rotating “${key.description}” (••••${key.lastFour}) creates a new secret. Integrations using the current secret must be updated.`;
  applyPolicyToRotate();
  openDialog($("rotate-dialog"), button);
  $("rotate-overlap").focus();
}

export function initRotateDialog(onError) {
  $("rotate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    const overlapSeconds = Number($("rotate-overlap").value);
    const input = { id: rotating.id, overlapSeconds };
    if (overlapSeconds > 0) input.endOverlapOnFirstUse = $("rotate-end-on-use").checked;
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const result = (await gql(M_ROTATE, { input })).rotateApiKey;
        if (showUserErrors(result.userErrors, { overlapSeconds: "rotate-overlap" })) return;
        closeDialog($("rotate-dialog"));
        showSecret(result.secret, "Copy your rotated API key");
        await loadKeys();
      } catch (error) {
        closeDialog($("rotate-dialog"));
        onError(error);
      }
    });
  });
}

// Rotate a key, choosing how long its old secret keeps working.

import { M_ROTATE, gql } from "./graphql.js";
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
  openDialog($("rotate-dialog"), button);
  $("rotate-overlap").focus();
}

export function initRotateDialog(onError) {
  $("rotate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    const input = { id: rotating.id, overlapSeconds: Number($("rotate-overlap").value) };
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

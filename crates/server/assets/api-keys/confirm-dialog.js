// Rotate and delete, each confirmed first.

import { M_DELETE, M_ROTATE, gql } from "./graphql.js";
import { showSecret } from "./secret-dialog.js";
import { loadKeys } from "./table.js";
import { $, busy, closeDialog, hideBanner, openDialog, showBanner } from "./ui.js";

let confirmAction = null;

function confirmWith(title, text, okLabel, action, opener) {
  hideBanner();
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  confirmAction = action;
  openDialog($("confirm-dialog"), opener);
  $("confirm-ok").focus();
}

/** Row action: rotate `key` once confirmed, then show its new secret. */
export function confirmRotate(key, button) {
  confirmWith(
    "Rotate API key?",
    `Rotating “${key.description}” (••••${key.lastFour}) creates a new secret. The current secret stops working immediately; integrations using it must be updated.`,
    "Rotate key",
    async () => {
      const result = (await gql(M_ROTATE, { input: { id: key.id } })).rotateApiKey;
      closeDialog($("confirm-dialog"));
      if (result.userErrors.length) return showBanner(result.userErrors[0].message);
      showSecret(result.secret, "Copy your rotated API key");
      await loadKeys();
    },
    button,
  );
}

/** Row action: delete `key` once confirmed. */
export function confirmDelete(key, button) {
  confirmWith(
    "Delete API key?",
    `Delete “${key.description}” (••••${key.lastFour})? Integrations using it will stop working immediately. This cannot be undone.`,
    "Delete key",
    async () => {
      const result = (await gql(M_DELETE, { input: { id: key.id } })).deleteApiKey;
      closeDialog($("confirm-dialog"));
      if (result.userErrors.length) return showBanner(result.userErrors[0].message);
      await loadKeys();
    },
    button,
  );
}

export function initConfirmDialog(onError) {
  $("confirm-ok").addEventListener("click", async () => {
    const buttons = [...$("confirm-dialog").querySelectorAll("button")];
    await busy(buttons, async () => {
      try {
        await confirmAction();
      } catch (error) {
        closeDialog($("confirm-dialog"));
        onError(error);
      }
    });
  });
}

// Changes confirmed first: delete, disable, and ending an overlap early
// (and enabling, which needs no confirmation).

import { M_DELETE, M_DISABLE, M_ENABLE, M_EXPIRE_PREVIOUS, gql } from "./graphql.js";
import { loadKeys, replaceKey } from "./table.js";
import { $, busy, closeDialog, hideBanner, openDialog, showBanner } from "./ui.js";

let confirmAction = null;

/** Asks `title`/`text` in the confirm dialog; `action` runs on `okLabel` (and closes it). */
export function confirmWith(title, text, okLabel, action, opener) {
  hideBanner();
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  confirmAction = action;
  openDialog($("confirm-dialog"), opener);
  $("confirm-ok").focus();
}

/** Row action: disable `key` once confirmed; enabling needs no confirmation. */
export function confirmDisable(key, button) {
  confirmWith(
    "Disable API key?",
    `Integrations using “${key.description}” (••••${key.lastFour}) stop working until you enable it again. Its secret does not change.`,
    "Disable key",
    async () => {
      const result = (await gql(M_DISABLE, { input: { id: key.id } })).disableApiKey;
      closeDialog($("confirm-dialog"));
      if (result.userErrors.length) return showBanner(result.userErrors[0].message);
      replaceKey(result.apiKey);
    },
    button,
  );
}

/** Row action: enable a disabled `key`. */
export async function enable(key, button, onError) {
  hideBanner();
  await busy([button], async () => {
    try {
      const result = (await gql(M_ENABLE, { input: { id: key.id } })).enableApiKey;
      if (result.userErrors.length) return showBanner(result.userErrors[0].message);
      replaceKey(result.apiKey);
    } catch (error) {
      onError(error);
    }
  });
}

/** "End now": stop a key's old secret before its overlap ends, once confirmed. */
export function confirmEndOverlap(key, button) {
  confirmWith(
    "Stop the old secret now?",
    `The old secret of “${key.description}” (••••${key.previousLastFour}) stops working immediately. Only ••••${key.lastFour} keeps working.`,
    "Stop old secret",
    async () => {
      const result = (await gql(M_EXPIRE_PREVIOUS, { input: { id: key.id } })).expireApiKeyPreviousSecret;
      closeDialog($("confirm-dialog"));
      if (result.userErrors.length) return showBanner(result.userErrors[0].message);
      replaceKey(result.apiKey);
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

// Give a key, or every key of its owner, to another owner (the secret stays).

import { M_TRANSFER, M_TRANSFER_ALL, gql } from "./graphql.js";
import { state } from "./state.js";
import { loadKeys, replaceKey } from "./table.js";
import { $, ROLE_NAMES, busy, clearFieldErrors, closeDialog, hideBanner, openDialog, showUserErrors } from "./ui.js";

let moving = null;

/** Row action: opens the dialog for `key`, offering every other eligible owner. */
export function openTransfer(key, button) {
  hideBanner();
  moving = key;
  clearFieldErrors($("transfer-form"));
  $("transfer-key").textContent = `“${key.description}” (ending in ${key.lastFour}), owned by ${key.owner.name}`;
  const options = state.candidates
    .filter((u) => u.id !== key.owner.id)
    .map((u) => {
      const o = document.createElement("option");
      o.value = u.id;
      o.textContent = `${u.name} — ${ROLE_NAMES[u.role] || u.role}`;
      return o;
    });
  $("transfer-owner").replaceChildren(...options);
  $("transfer-all").checked = false;
  $("transfer-all-label").textContent = `Also give every other key of ${key.owner.name}`;
  openDialog($("transfer-dialog"), button);
}

export function initTransferDialog(onError) {
  $("transfer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    clearFieldErrors(form);
    await busy([...form.querySelectorAll("button")], async () => {
      try {
        const owner = $("transfer-owner").value;
        if ($("transfer-all").checked) {
          const input = { fromOwnerId: moving.owner.id, toOwnerId: owner };
          const result = (await gql(M_TRANSFER_ALL, { input })).transferApiKeys;
          if (showUserErrors(result.userErrors, { toOwnerId: "transfer-owner" })) return;
          closeDialog($("transfer-dialog"));
          await loadKeys();
        } else {
          const result = (await gql(M_TRANSFER, { input: { id: moving.id, ownerId: owner } })).transferApiKey;
          if (showUserErrors(result.userErrors, { ownerId: "transfer-owner" })) return;
          replaceKey(result.apiKey);
          closeDialog($("transfer-dialog"));
        }
      } catch (error) {
        closeDialog($("transfer-dialog"));
        onError(error);
      }
    });
  });
}

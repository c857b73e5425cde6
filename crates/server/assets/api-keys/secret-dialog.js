// The secret, shown once: copy it, or confirm closing without copying. It
// leaves the DOM when the dialog closes.

import { $, closeDialog, openDialog } from "./ui.js";

let copied = false;

const KEY_WORDING = {
  warning: "This is the only time the key is shown. You cannot view it again after closing this dialog.",
  confirm: "You have not copied the key. Close anyway? It cannot be shown again.",
};

/** Shows `secret` once under `title`; `wording` says what it is (an API key by default). */
export function showSecret(secret, title, wording = KEY_WORDING) {
  copied = false;
  $("secret-title").textContent = title;
  $("secret-warning").textContent = wording.warning;
  $("secret-confirm-text").textContent = wording.confirm;
  $("secret-value").textContent = secret;
  $("copy-status").textContent = "";
  $("secret-confirm").hidden = true;
  $("secret-actions").hidden = false;
  openDialog($("secret-dialog"), $("generate"));
}

export function dropSecret() {
  $("secret-value").textContent = "";
  $("copy-status").textContent = "";
  closeDialog($("secret-dialog"));
}

function askToDrop() {
  if (copied) return dropSecret();
  $("secret-actions").hidden = true;
  $("secret-confirm").hidden = false;
  $("secret-back").focus();
}

async function copySecret() {
  const secret = $("secret-value").textContent;
  try {
    await navigator.clipboard.writeText(secret);
    copied = true;
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("secret-value"));
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    copied = document.execCommand && document.execCommand("copy");
    selection.removeAllRanges();
  }
  $("copy-status").textContent = copied ? "Copied to the clipboard." : "Copying failed: select the key and copy it by hand.";
}

export function initSecretDialog() {
  $("copy-secret").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", askToDrop);
  $("secret-back").addEventListener("click", () => {
    $("secret-confirm").hidden = true;
    $("secret-actions").hidden = false;
    $("copy-secret").focus();
  });
  $("secret-discard").addEventListener("click", dropSecret);
  $("secret-dialog").addEventListener("cancel", (event) => {
    if (!copied) {
      event.preventDefault();
      askToDrop();
    } else {
      $("secret-value").textContent = "";
    }
  });
}

// Shared page furniture: the banner, busy buttons, dialogs and field errors.
// Every user-supplied string is rendered with textContent.

export const $ = (id) => document.getElementById(id);

export const ROLE_NAMES = { INTERNAL_ADMIN: "Internal admin", ACADEMY_ADMIN: "Academy admin", INTEGRATION_USER: "Integration user" };

/** "Dec 3, 14:05", with the year only when it is not this year (the full instant is the title). */
export function formatDate(iso) {
  const d = new Date(iso);
  const year = d.getFullYear() === new Date().getFullYear() ? undefined : "numeric";
  return d.toLocaleString(undefined, { year, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

/** A table cell showing `text` (as text), with a class and a title (the full text, say). */
export function textCell(text, className, title) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  if (title) td.title = title;
  return td;
}

export function showBanner(message) {
  $("banner-text").textContent = message;
  $("banner").hidden = false;
}

export function hideBanner() {
  $("banner").hidden = true;
  $("banner-text").textContent = "";
}

/** Runs `action` with `buttons` disabled, so nothing is submitted twice. */
export async function busy(buttons, action) {
  buttons.forEach((b) => (b.disabled = true));
  try {
    return await action();
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

let returnFocus = null;

export function openDialog(dialog, opener) {
  returnFocus = opener || document.activeElement;
  dialog.showModal();
}

export function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

export function closeAllDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) closeDialog(dialog);
}

/** Focus returns to what opened a dialog; `data-close` buttons close it. */
export function initDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.addEventListener("close", () => {
      if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
    });
    for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => closeDialog(dialog));
  }
  $("banner-close").addEventListener("click", hideBanner);
}

export function clearFieldErrors(form) {
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** Shows each userError next to the field it names; returns whether there were any. */
export function showUserErrors(userErrors, fieldIds) {
  for (const error of userErrors) {
    const name = error.field[error.field.length - 1];
    const id = fieldIds[name];
    if (id) {
      $(`${id}-error`).textContent = error.message;
      $(id).setAttribute("aria-invalid", "true");
    } else {
      showBanner(error.message);
    }
  }
  const first = userErrors.map((e) => fieldIds[e.field[e.field.length - 1]]).find(Boolean);
  if (first) $(first).focus();
  return userErrors.length > 0;
}

// The admin page: list, add, re-role and remove users; reload the rules; show the running
// settings.
// Everything from the server is written with textContent (dom.js), never as HTML.

import { deleteUser, getRules, getSettings, listUsers, putUser, reloadRules } from "./api.js";
import { keepTabInside } from "./dialog-focus.js";
import { h, setText } from "./dom.js";
import { formatDateTime } from "./format.js";

const ROLES = ["viewer", "analyst", "admin"];
const me = document.querySelector('meta[name="fw-user"]')?.content ?? "";
const status = document.getElementById("admin-status");
const userRows = document.getElementById("user-rows");
const settingRows = document.getElementById("setting-rows");
const form = document.getElementById("add-user");
const rulesVersion = document.getElementById("rules-version");
const reloadButton = document.getElementById("reload-rules");
const rulesProblems = document.getElementById("rules-problems");
const removeDialog = document.getElementById("remove-dialog");
keepTabInside(removeDialog);

function say(text, kind = "ok") {
  status.dataset.kind = kind;
  setText(status, text);
}

function failed(error) {
  if (error.unauthenticated) {
    window.location.assign("/login");
    return;
  }
  say(error.message, "error");
}

function roleSelect(user) {
  const select = h("select", { "aria-label": `Role of ${user.name}`, disabled: user.name === me });
  for (const role of ROLES) {
    select.append(h("option", { value: role, text: role, selected: role === user.role }));
  }
  select.addEventListener("change", async () => {
    try {
      await putUser(user.name, select.value);
      say(`${user.name} is now ${select.value === "admin" ? "an" : "a"} ${select.value}.`);
    } catch (error) {
      failed(error);
    }
    await loadUsers();
  });
  return select;
}

function removeButton(user) {
  const button = h("button", {
    type: "button",
    className: "btn btn-quiet",
    text: "Remove",
    "aria-label": `Remove ${user.name}`,
    disabled: user.name === me,
  });
  button.addEventListener("click", async () => {
    if (!(await confirmRemove(user))) return;
    // The button goes with its row: the keyboard goes on to the next row's, as a list does.
    const at = removeButtons().indexOf(button);
    try {
      await deleteUser(user.name);
      say(`${user.name} was removed.`);
    } catch (error) {
      failed(error);
    }
    await loadUsers();
    if (!button.isConnected && at >= 0) {
      const buttons = removeButtons();
      (buttons[at] ?? buttons.at(-1) ?? document.getElementById("main")).focus();
    }
  });
  return button;
}

const removeButtons = () => [...userRows.querySelectorAll("button:not([disabled])")];

// Asks in the page, as the dashboard's resolve dialog does (it was window.confirm, which
// looks like neither and stops every script on the page): the keyboard starts on Cancel,
// Tab stays inside (dialog-focus.js), Esc or Cancel says no, and closing gives focus back
// to the button that asked. True to remove.
function confirmRemove(user) {
  setText(removeDialog.querySelector("#remove-title"), `Remove ${user.name}?`);
  removeDialog.returnValue = "";
  return new Promise((resolve) => {
    removeDialog.addEventListener("close", () => resolve(removeDialog.returnValue === "remove"), {
      once: true,
    });
    removeDialog.showModal();
    removeDialog.querySelector("#remove-cancel").focus();
  });
}

async function loadUsers() {
  try {
    const { users } = await listUsers();
    userRows.replaceChildren(
      ...users.map((user) =>
        h("tr", { dataset: { user: user.name } }, [
          h("td", { text: user.name === me ? `${user.name} (you)` : user.name }),
          h("td", {}, [roleSelect(user)]),
          h("td", { text: formatDateTime(user.updated_at) }),
          h("td", {}, [removeButton(user)]),
        ]),
      ),
    );
  } catch (error) {
    failed(error);
  }
}

async function loadSettings() {
  try {
    const { settings, hidden } = await getSettings();
    const rows = Object.entries(settings).map(([name, value]) =>
      h("tr", {}, [h("td", { text: name }), h("td", { text: JSON.stringify(value) })]),
    );
    rows.push(...hidden.map((name) => h("tr", {}, [h("td", { text: name }), h("td", { text: "(hidden)" })])));
    settingRows.replaceChildren(...rows);
  } catch (error) {
    failed(error);
  }
}

function showProblems(lines) {
  rulesProblems.replaceChildren(...lines.map((line) => h("li", { text: line })));
  rulesProblems.hidden = lines.length === 0;
}

async function loadRules() {
  try {
    setText(rulesVersion, (await getRules()).rules_version);
  } catch (error) {
    failed(error);
  }
}

reloadButton.addEventListener("click", async () => {
  reloadButton.disabled = true;
  try {
    const rules = await reloadRules();
    setText(rulesVersion, rules.rules_version);
    showProblems([]);
    const count = `${rules.rules.length} rule${rules.rules.length === 1 ? "" : "s"}`;
    say(
      rules.rules_version === rules.previous_version
        ? `Rules reloaded: unchanged, ${rules.rules_version} (${count}).`
        : `Rules reloaded: ${rules.previous_version} → ${rules.rules_version} (${count}).`,
    );
  } catch (error) {
    if (error.code === "invalid_rules") {
      // The server keeps the rules it had: show which, and every problem in the files.
      if (error.body?.rules_version) setText(rulesVersion, error.body.rules_version);
      showProblems(Array.isArray(error.body?.errors) ? error.body.errors.map(String) : []);
    }
    failed(error);
  } finally {
    reloadButton.disabled = false;
  }
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const name = String(data.get("name") ?? "").trim();
  if (!name) {
    say("Give the user a name.", "error");
    return;
  }
  try {
    const { user } = await putUser(name, String(data.get("role")), String(data.get("password") ?? ""));
    say(`Saved ${user.name} (${user.role}).`);
    form.reset();
  } catch (error) {
    failed(error);
  }
  await loadUsers();
});

loadUsers();
loadRules();
loadSettings();

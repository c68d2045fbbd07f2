// Opt-in sound and desktop notifications for new critical alerts. Off by default; the choice
// is kept in this browser. At most one every 10 s: critical alerts that arrive meanwhile are
// summed into the next one, an alert acknowledged or resolved before its turn is dropped, and
// a notification whose alerts have all been taken is closed.

import { formatMoney } from "./format.js";
import { loadPref, savePref } from "./prefs.js";

export const MIN_GAP_MS = 10_000;

function describe(alert) {
  const tx = alert.transaction ?? {};
  return [
    tx.merchant_name || tx.merchant_id,
    formatMoney(tx.amount, tx.currency),
    alert.reasons?.[0]?.message,
  ]
    .filter(Boolean)
    .join(" · ");
}

export class CriticalAlerts {
  constructor({ soundBox, desktopBox, stateNode, notices }) {
    const saved = loadPref("notify", {});
    this.prefs = { sound: saved.sound === true, desktop: saved.desktop === true };
    this.soundBox = soundBox;
    this.desktopBox = desktopBox;
    this.stateNode = stateNode;
    this.notices = notices;
    this.onOpen = () => {};
    this.pending = new Map();
    this.lastAt = Number.NEGATIVE_INFINITY;
    this.timer = 0;
    this.shown = null;
    this.audio = null;
    this.sent = 0;

    soundBox.checked = this.prefs.sound;
    desktopBox.checked = this.prefs.desktop && this._permission() === "granted";
    this.prefs.desktop = desktopBox.checked;
    soundBox.addEventListener("change", () => this._setSound(soundBox.checked));
    desktopBox.addEventListener("change", () => this._setDesktop(desktopBox.checked));
    // Browsers only let a page make sound after the user has interacted with it.
    const unlock = () => {
      if (this.prefs.sound) this._audio();
      window.removeEventListener("pointerdown", unlock);
      window.removeEventListener("keydown", unlock);
    };
    window.addEventListener("pointerdown", unlock);
    window.addEventListener("keydown", unlock);
    this._showState();
  }

  get enabled() {
    return this.prefs.sound || this.prefs.desktop;
  }

  // Every alert message from the live feed; `type` is "alert" (new) or "alert_updated".
  observe(type, alert) {
    if (alert.status !== "open") {
      this.pending.delete(alert.id);
      if (this.shown?.ids.delete(alert.id) && this.shown.ids.size === 0) {
        this.shown.notification.close();
        this.shown = null;
      }
      return;
    }
    if (type !== "alert" || alert.severity !== "critical" || !this.enabled) return;
    this.pending.set(alert.id, alert);
    if (!this.timer) {
      const wait = Math.max(0, this.lastAt + MIN_GAP_MS - Date.now());
      this.timer = setTimeout(() => this._flush(), wait);
    }
  }

  _flush() {
    this.timer = 0;
    const alerts = [...this.pending.values()];
    this.pending.clear();
    if (!alerts.length || !this.enabled) return;
    this.lastAt = Date.now();
    this.sent += 1;
    if (this.prefs.sound) this._beep();
    if (this.prefs.desktop && this._permission() === "granted") this._desktop(alerts);
  }

  _desktop(alerts) {
    const [first] = alerts;
    const title =
      alerts.length === 1
        ? `Critical alert · account ${first.account_id}`
        : `${alerts.length} critical alerts`;
    const body =
      alerts.length === 1
        ? describe(first)
        : alerts
            .slice(0, 3)
            .map((alert) => `${alert.account_id}: ${describe(alert)}`)
            .join("\n");
    try {
      this.shown?.notification.close();
      const notification = new Notification(title, { body, tag: "fraudwatch-critical" });
      notification.addEventListener?.("click", () => {
        window.focus();
        this.onOpen(first);
        notification.close();
      });
      this.shown = { notification, ids: new Set(alerts.map((alert) => alert.id)) };
    } catch {
      // Some browsers only notify from a service worker; the sound and the page remain.
    }
  }

  _permission() {
    return "Notification" in window ? Notification.permission : "unsupported";
  }

  async _setDesktop(on) {
    if (on) {
      let permission = this._permission();
      if (permission === "unsupported") {
        this.notices.show("This browser cannot show desktop notifications.", { kind: "warning" });
      } else if (permission === "default") {
        permission = await Notification.requestPermission();
      }
      if (permission !== "granted") {
        this.desktopBox.checked = false;
        on = false;
        if (permission === "denied") {
          this.notices.show(
            "Notifications are blocked for this site; allow them in the browser's site settings.",
            { kind: "warning" },
          );
        }
      }
    }
    this.prefs.desktop = on;
    this._save();
  }

  _setSound(on) {
    this.prefs.sound = on;
    this._save();
    if (on) this._beep();
  }

  _save() {
    savePref("notify", this.prefs);
    this._showState();
  }

  _showState() {
    const { sound, desktop } = this.prefs;
    this.stateNode.textContent =
      sound && desktop ? "sound + desktop" : sound ? "sound" : desktop ? "desktop" : "off";
    this.stateNode.closest(".menu")?.classList.toggle("is-on", sound || desktop);
  }

  _audio() {
    const Context = window.AudioContext ?? window.webkitAudioContext;
    if (!Context) return null;
    this.audio ??= new Context();
    if (this.audio.state === "suspended") this.audio.resume();
    return this.audio;
  }

  // Two short, soft tones: noticeable across a room, not alarming.
  _beep() {
    const audio = this._audio();
    if (!audio) return;
    const start = audio.currentTime + 0.01;
    [880, 660].forEach((frequency, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = frequency;
      const at = start + i * 0.16;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.08, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.14);
      osc.connect(gain).connect(audio.destination);
      osc.start(at);
      osc.stop(at + 0.15);
    });
  }
}

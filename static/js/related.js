// Alerts related to one alert, among those this page holds: same account, same device, same
// merchant. Only what is loaded here; the account's full transaction history comes from the
// server separately (GET /api/v1/accounts/{id}/transactions).

const GROUPS = ["account", "device", "merchant"];

export function relatedAlerts(entries, alert, limit = 25) {
  const tx = alert.transaction ?? {};
  const keys = { account: alert.account_id, device: tx.device_id, merchant: tx.merchant_id };
  const groups = { account: [], device: [], merchant: [] };
  const counts = { account: 0, device: 0, merchant: 0 };
  for (const { alert: other } of entries) {
    if (other.id === alert.id) continue;
    const otx = other.transaction ?? {};
    const values = { account: other.account_id, device: otx.device_id, merchant: otx.merchant_id };
    for (const group of GROUPS) {
      if (keys[group] && values[group] === keys[group]) {
        counts[group] += 1;
        if (groups[group].length < limit) groups[group].push(other);
      }
    }
  }
  return { keys, groups, counts };
}

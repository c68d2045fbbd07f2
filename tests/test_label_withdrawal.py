"""Reopening a resolved alert withdraws the label its resolution gave: the store's label
goes (or the one it replaced comes back), and the model's counters, merchant risk and the
scorecard are as if the resolution had never labelled the transaction. A label that came
after the resolution, or before it, stays. On the real app over a real SQLite file."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.detection.features import AMOUNT_HALF_LIFE_S
from server.state import DETECTOR, STORE, TRAINER
from tests.conftest import AUTH as BOOTSTRAP
from tests.conftest import Login, tx
from tests.test_api import post_batch, raise_alert
from tests.test_labels import post_labels


async def _alert(client: TestClient, alert_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers=BOOTSTRAP)
    assert resp.status == 200
    return await resp.json()  # type: ignore[no-any-return]


async def _act(client: TestClient, csrf: str, alert_id: str, action: str, **body: Any) -> Any:
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/{action}", json=body, headers={"X-CSRF-Token": csrf}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _model(client: TestClient) -> list[float]:
    """What the model counts, flat: compared with pytest.approx, exact but for the float
    sums' rounding."""
    learner = client.app[TRAINER].learner  # type: ignore[index]
    return [learner.count, learner.frauds, learner.weight_sum, *learner.sums, *learner.squares]


def same(counts: Any) -> Any:
    return pytest.approx(counts, abs=1e-9)


def _merchants(client: TestClient) -> dict[str, list[float]]:
    """Each merchant's labels by day, (day, labels, frauds) each, exactly; a day's bucket
    emptied by taking a label back counts nothing, as one never made."""
    featurizer = client.app[DETECTOR].featurizer  # type: ignore[index]
    found: dict[str, list[float]] = {}
    for key, state in featurizer.merchants.items():
        buckets = [] if state.labels is None else list(state.labels)
        kept = [x for i in range(0, len(buckets), 3) if buckets[i + 1] for x in buckets[i : i + 3]]
        if kept:
            found[key] = kept
    return found


def _rates(client: TestClient) -> dict[str, dict[int, list[float]]]:
    """The amount's and the hour's fraud rates: (labels, frauds, last label's time) each."""
    featurizer = client.app[DETECTOR].featurizer  # type: ignore[index]
    return {
        "amounts": {k: list(v) for k, v in featurizer.amounts.items()},
        "hours": {k: list(v) for k, v in featurizer.hours.items()},
    }


def _as_of(rates: dict[str, dict[int, list[float]]], at: float) -> dict[str, float]:
    """`rates` decayed to `at`, flat: a rate decays from its last label, so two states are
    the same rates when they agree at one moment after both."""
    flat: dict[str, float] = {}
    for kind, counts in rates.items():
        for key, (labels, frauds, last) in counts.items():
            keep = 0.5 ** (max(at - last, 0.0) / AMOUNT_HALF_LIFE_S)
            if labels * keep > 1e-9:
                flat[f"{kind} {key} labels"] = labels * keep
                flat[f"{kind} {key} frauds"] = frauds * keep
    return flat


async def _scorecard(client: TestClient) -> Any:
    resp = await client.get("/api/v1/scorecard", headers=BOOTSTRAP)
    return (await resp.json())["scorecard"]


async def _labelled_case(client: TestClient) -> tuple[str, str]:
    """A card-testing run and some other payments, all but the alerted one labelled (so the
    model, merchant risk and the scorecard hold something else too): the alert's id and its
    transaction's."""
    alert_id = await raise_alert(client)
    tx_id = (await _alert(client, alert_id))["alert"]["transaction_id"]
    await post_batch(client, [tx(f"ok-{i}", account="acct-ok", amount=7.0 + i) for i in range(4)])
    others = [
        {"transaction_id": f"ct-{i}", "label": "fraud"} for i in range(4) if f"ct-{i}" != tx_id
    ]
    others += [{"transaction_id": f"ok-{i}", "label": "legitimate"} for i in range(4)]
    status, answer = await post_labels(client, others)
    assert status == 200, answer
    await client.app[TRAINER].idle.wait()  # type: ignore[index]
    return alert_id, tx_id


async def test_reopening_withdraws_the_label_the_resolution_gave_exactly(
    client: TestClient, login: Login
) -> None:
    # Resolved as fraud by mistake, then undone (u, or Reopen): the fraud label stayed,
    # teaching the model, the merchant's risk and the scorecard.
    csrf = await login("alice")
    alert_id, tx_id = await _labelled_case(client)
    store, trainer = client.app[STORE], client.app[TRAINER]  # type: ignore[index]
    model, merchants, scorecard = _model(client), _merchants(client), await _scorecard(client)
    rates = _rates(client)
    resolved = await _act(client, csrf, alert_id, "resolve", disposition="fraud")
    await trainer.idle.wait()
    assert (await store.get_labels([tx_id]))[tx_id].label == "fraud"
    assert _model(client) != same(model) and _merchants(client) != merchants
    assert await _scorecard(client) != scorecard
    at = dt.datetime.fromisoformat(resolved["alert"]["updated_at"]).timestamp()
    assert _as_of(_rates(client), at) != same(_as_of(rates, at))

    reopened = await _act(client, csrf, alert_id, "reopen")
    await trainer.idle.wait()
    assert reopened["alert"]["status"] == "open"
    assert await store.get_labels([tx_id]) == {}
    assert _model(client) == same(model)
    assert trainer.status.labels_taken_back == 1
    assert _merchants(client) == merchants
    # As if the fraud label had never come: the amount's and the hour's rates too.
    assert _as_of(_rates(client), at) == same(_as_of(rates, at))
    assert await _scorecard(client) == scorecard
    # The log says so: the resolution's change, then its withdrawal (no label any more).
    log = [c for c in await store.label_changes_after(0, 1000) if c.transaction_id == tx_id]
    assert [(c.label, c.replaced and c.replaced[0]) for c in log] == [
        ("fraud", None),
        (None, "fraud"),
    ]
    assert log[1].replaced_seq == log[0].seq
    # Its audit entry says what became of the label.
    audit = (await _alert(client, alert_id))["audit"]
    assert audit[-1]["action"] == "reopen"
    assert audit[-1]["detail"]["label_withdrawn"] == "fraud"
    assert audit[-1]["detail"]["label_restored"] is None

    # Resolved again, now rightly: a new label, learnt as any first label is.
    await _act(client, csrf, alert_id, "resolve", disposition="legitimate")
    await trainer.idle.wait()
    assert (await store.get_labels([tx_id]))[tx_id].label == "legitimate"
    learner = trainer.learner
    assert (learner.count, learner.frauds) == (model[0] + 1, model[1])
    assert trainer.status.labels_taken_back == 1


async def test_reopening_puts_back_the_label_the_resolution_replaced(
    client: TestClient, login: Login
) -> None:
    # A chargeback said legitimate; the analyst overruled it with fraud, by mistake. Undone,
    # the chargeback's label is the transaction's again, as it was: source and time.
    csrf = await login("alice")
    alert_id, tx_id = await _labelled_case(client)
    store, trainer = client.app[STORE], client.app[TRAINER]  # type: ignore[index]
    # (Known a minute ago: merchant risk keeps 30 days of labels back from its newest, and
    # the resolution's, now, would have moved a label of long ago out of them for good.)
    known = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    body = {"transaction_id": tx_id, "label": "legitimate", "source": "chargeback",
            "labelled_at": known.isoformat()}  # fmt: skip
    status, answer = await post_labels(client, body)
    assert (status, answer["status"]) == (200, "created")
    await trainer.idle.wait()
    label = (await store.get_labels([tx_id]))[tx_id]
    model, merchants, scorecard = _model(client), _merchants(client), await _scorecard(client)

    await _act(client, csrf, alert_id, "resolve", disposition="fraud")
    await trainer.idle.wait()
    assert _model(client) != same(model)
    await _act(client, csrf, alert_id, "reopen", note="wrong row")
    await trainer.idle.wait()
    assert (await store.get_labels([tx_id]))[tx_id] == label
    assert _model(client) == same(model)
    assert _merchants(client) == merchants
    assert await _scorecard(client) == scorecard
    audit = (await _alert(client, alert_id))["audit"]
    assert audit[-1]["detail"]["label_withdrawn"] == "fraud"
    assert audit[-1]["detail"]["label_restored"] == "legitimate"
    # The chargeback's label is the transaction's own again: resent, it is a re-send.
    status, answer = await post_labels(client, body)
    assert answer["status"] == "unchanged"


@pytest.mark.parametrize("later", ["legitimate", "fraud"])
async def test_a_label_sent_after_the_resolution_is_not_withdrawn(
    client: TestClient, login: Login, later: str
) -> None:
    # A chargeback after the resolution: overruling it (legitimate) or confirming it
    # (fraud, which the store answers `unchanged`). Either way the label is no longer the
    # resolution's alone, and reopening the alert leaves it.
    csrf = await login("alice")
    alert_id, tx_id = await _labelled_case(client)
    store, trainer = client.app[STORE], client.app[TRAINER]  # type: ignore[index]
    await _act(client, csrf, alert_id, "resolve", disposition="fraud")
    _, answer = await post_labels(
        client, {"transaction_id": tx_id, "label": later, "source": "chargeback"}
    )
    assert answer["status"] == ("unchanged" if later == "fraud" else "updated")
    await trainer.idle.wait()
    label = (await store.get_labels([tx_id]))[tx_id]
    model, merchants, scorecard = _model(client), _merchants(client), await _scorecard(client)
    changes = await store.last_label_change()

    await _act(client, csrf, alert_id, "reopen")
    await trainer.idle.wait()
    assert (await store.get_labels([tx_id]))[tx_id] == label
    assert await store.last_label_change() == changes
    assert _model(client) == same(model) and _merchants(client) == merchants
    assert await _scorecard(client) == scorecard
    audit = (await _alert(client, alert_id))["audit"]
    assert audit[-1]["detail"]["label_withdrawn"] is None


async def test_a_label_given_before_the_resolution_is_not_withdrawn(
    client: TestClient, login: Login
) -> None:
    # The chargeback came first and the analyst agreed: the resolution gave no label (the
    # store answered `unchanged`), so its undoing takes none away.
    csrf = await login("alice")
    alert_id, tx_id = await _labelled_case(client)
    store, trainer = client.app[STORE], client.app[TRAINER]  # type: ignore[index]
    await post_labels(client, {"transaction_id": tx_id, "label": "fraud", "source": "chargeback"})
    await trainer.idle.wait()
    label = (await store.get_labels([tx_id]))[tx_id]
    model, merchants = _model(client), _merchants(client)
    await _act(client, csrf, alert_id, "resolve", disposition="fraud")
    await _act(client, csrf, alert_id, "reopen")
    await trainer.idle.wait()
    assert (await store.get_labels([tx_id]))[tx_id] == label
    assert _model(client) == same(model) and _merchants(client) == merchants


async def test_a_restart_between_resolve_and_reopen_still_withdraws_the_label(
    aiohttp_client: Any, client: TestClient, settings: Settings, login: Login
) -> None:
    # `client` is the app before the restart: the one `login` signs in on (no third app
    # over the same data dir).
    csrf = await login("alice")
    alert_id, tx_id = await _labelled_case(client)
    model, merchants, scorecard = _model(client), _merchants(client), await _scorecard(client)
    await _act(client, csrf, alert_id, "resolve", disposition="fraud")
    await client.app[TRAINER].idle.wait()  # type: ignore[index]
    assert _model(client) != same(model)
    await client.close()

    again: TestClient = await aiohttp_client(create_app(settings))
    # Learnt before the restart: the model file and merchant risk's snapshot hold it.
    assert _model(again) != same(model) and _merchants(again) != merchants
    resp = await again.post(
        "/login", data={"username": "alice", "password": "correct horse battery"}
    )
    assert resp.status == 200
    csrf = (await resp.text()).split('name="csrf-token" content="')[1].split('"')[0]
    await _act(again, csrf, alert_id, "reopen")
    await again.app[TRAINER].idle.wait()  # type: ignore[index]
    assert await again.app[STORE].get_labels([tx_id]) == {}  # type: ignore[index]
    assert _model(again) == same(model)
    assert _merchants(again) == merchants
    assert await _scorecard(again) == scorecard


async def test_a_duplicate_resolution_reopened_touches_no_label(
    client: TestClient, login: Login
) -> None:
    csrf = await login("alice")
    alert_id, tx_id = await _labelled_case(client)
    store = client.app[STORE]  # type: ignore[index]
    changes = await store.last_label_change()
    await _act(client, csrf, alert_id, "resolve", disposition="duplicate")
    await _act(client, csrf, alert_id, "reopen")
    assert await store.get_labels([tx_id]) == {}
    assert await store.last_label_change() == changes
    audit = (await _alert(client, alert_id))["audit"]
    assert audit[-1]["detail"]["label_withdrawn"] is None

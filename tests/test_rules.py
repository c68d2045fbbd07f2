"""The rule language: loading, validation errors, conditions, templates, allow/block lists."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from server.detection import Detector, RulesError, load_rules
from server.detection.detector import AMOUNT_SPAN
from server.detection.rules import compile_sources, default_pack, duration
from server.detection.severity import CRITICAL_LOSS, HIGH_LOSS, LossBands
from server.transactions import Transaction

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count()

RULE = """
[[rules]]
name = "big"
score = 0.6
severity = "high"
all = [{ feature = "amount", op = ">=", value = 100 }]
reason = "Amount {amount:,.2f} {currency} at or above {threshold:,.2f}"
"""


def make_tx(seconds: float = 0.0, *, amount: str = "40.00", **fields: Any) -> Transaction:
    values: dict[str, Any] = {"account_id": "acct-1", "merchant_id": "m-1", "currency": "USD"}
    values.update(fields)
    return Transaction(
        id=f"tx-{next(_ids)}",
        timestamp=T0 + dt.timedelta(seconds=seconds),
        amount=Decimal(amount),
        **values,
    )


def rules(text: str, name: str = "pack.toml") -> Detector:
    return Detector(rules=compile_sources([(name, text.encode())]))


def errors_of(text: str, name: str = "pack.toml") -> list[str]:
    with pytest.raises(RulesError) as caught:
        compile_sources([(name, text.encode())])
    return caught.value.errors


def codes(det: Detector, tx: Transaction) -> list[str]:
    return [r.code for r in det.score(tx).reasons]


# --- loading -------------------------------------------------------------------------------


def test_the_default_pack_loads_and_covers_the_scenarios() -> None:
    ruleset = load_rules()
    names = {r.name for r in ruleset.rules}
    assert {
        "card_testing",
        "account_takeover",
        "impossible_travel",
        "compromised_merchant",
        "amount_outlier",
        "velocity_1m",
        "velocity_10m",
    } <= names
    assert ruleset.files == (str(default_pack()),)
    assert "merchant_fraud_rate_30d" in ruleset.features


def test_a_rule_fires_with_observed_value_threshold_and_severity() -> None:
    det = rules(RULE)
    quiet = det.score(make_tx(amount="99.99"))
    assert quiet.reasons == ()
    scored = det.score(make_tx(amount="1250.00"))
    (reason,) = scored.reasons
    assert reason.code == "big"
    assert reason.message == "Amount 1,250.00 USD at or above 100.00"
    assert (reason.observed, reason.threshold, reason.weight) == (1250.0, 100.0, 0.6)
    assert reason.severity == "high"
    # A review, and 0.6 times 1,250 at stake: high (the rule's high stays on its reason).
    assert (scored.decision, scored.severity) == ("review", "high")
    assert scored.score == pytest.approx(0.6, abs=AMOUNT_SPAN)  # its amount orders its ties


# --- units: what a reason's figures measure, from the feature its rule observes -------------

DEFAULT_UNITS = {
    "card_testing": "count",
    "velocity_1m": "count",
    "velocity_10m": "count",
    "velocity_1h": "count",
    "amount_outlier": "ratio",
    "night_high_amount": "ratio",
    "night_high_amount_new": "JPY",  # an amount: the transaction's own currency
    "impossible_travel": "km/h",
    "new_country": None,  # text: a country, a device id, a merchant id
    "new_device": None,
    "new_merchant": None,
    "account_takeover": "ratio",
    "compromised_merchant": "fraction",
}


def test_each_default_pack_rule_gives_its_figures_unit() -> None:
    from server.detection.features import FEATURES

    ruleset = load_rules()
    assert {r.name for r in ruleset.rules} == DEFAULT_UNITS.keys()
    # Every feature known: each rule's reason as the detector asks for it once it fires.
    v: dict[str, Any] = {n: n.startswith("is_new_") or 2.0 for n in FEATURES}
    tx = make_tx(currency="JPY", country="GB", device_id="d-1")
    units = {r.name: r.reason(v, tx).unit for r in ruleset.rules}
    assert units == DEFAULT_UNITS


def test_a_fired_rule_carries_its_unit_through_the_detector() -> None:
    det = Detector(rules=load_rules())
    det.score(make_tx(0, lat=51.5, lon=-0.1))  # London
    reasons = det.score(make_tx(600, lat=40.7, lon=-74.0)).reasons  # New York, 10 min later
    travel = next(r for r in reasons if r.code == "impossible_travel")
    assert travel.unit == "km/h"
    assert travel.threshold == 900


def test_a_custom_rule_inherits_its_features_unit_and_may_override_it() -> None:
    tx = make_tx(amount="1250.00", currency="EUR")
    assert rules(RULE).score(tx).reasons[0].unit == "EUR"
    assert rules(RULE).score(make_tx(amount="1250.00", currency="")).reasons[0].unit is None
    spread = RULE.replace(
        'feature = "amount", op = ">=", value = 100', 'feature = "amount_z", op = ">=", value = 0'
    ).replace("{amount:,.2f} {currency}", "{amount}")
    det = rules(spread)
    for i, amount in enumerate(("10.00", "30.00")):
        det.score(make_tx(i, amount=amount))
    assert det.score(make_tx(5, amount="1250.00")).reasons[0].unit == "sd"
    # A file may say what its figures are in, say a rule on a fraction it reads as a ratio.
    assert rules(RULE + 'unit = "ratio"\n').score(tx).reasons[0].unit == "ratio"
    # Text has no unit: a rule observing a field.
    assert (
        rules(RULE + 'observed = "country"\n')
        .score(make_tx(amount="200.00", country="FR"))
        .reasons[0]
        .unit
        is None
    )


def test_every_feature_has_a_unit_from_the_vocabulary_or_none() -> None:
    from server.detection.features import FEATURE_UNITS, FEATURES
    from server.detection.verdict import UNITS

    assert FEATURE_UNITS.keys() == FEATURES.keys()
    assert {u for u in FEATURE_UNITS.values() if u is not None} <= UNITS.keys()
    assert FEATURE_UNITS["merchant_sum_30d"] == "currency"
    assert FEATURE_UNITS["merchant_fraud_rate_7d"] == "fraction"
    assert FEATURE_UNITS["elapsed_s"] == "s"


def test_templates_write_the_amount_as_sent_to_the_cent() -> None:
    # A float has about 15 significant digits: the feature would print ...999.98.
    huge = make_tx(amount="99999999999999.99")
    scored = rules(RULE).score(huge)
    assert scored.reasons[0].message == "Amount 99,999,999,999,999.99 USD at or above 100.00"
    # So does {observed} on a rule that observes the amount (the default).
    scored = rules(RULE.replace("{amount:,.2f}", "{observed:,.2f}")).score(huge)
    assert scored.reasons[0].message.startswith("Amount 99,999,999,999,999.99 USD")


def test_a_capped_number_reads_more_than_its_cap() -> None:
    det = rules(RULE.replace("{amount:,.2f}", "{amount:,.2f|1000}"))
    assert det.score(make_tx(amount="1000.00")).reasons[0].message.startswith("Amount 1,000.00")
    huge = det.score(make_tx(amount="99999999999999.99")).reasons[0]
    assert huge.message == "Amount more than 1,000 USD at or above 100.00"
    # The reason's observed value is still the number itself.
    assert huge.observed == 99999999999999.99
    # A '|' can still be a fill character.
    filled = rules(RULE.replace("{currency}", "{currency:|^7}")).score(make_tx(amount="120.00"))
    assert filled.reasons[0].message == "Amount 120.00 ||USD|| at or above 100.00"


def test_a_capped_number_below_minus_its_cap_and_infinite_ones() -> None:
    low = """
[[rules]]
name = "low"
score = 0.6
severity = "high"
all = [{ feature = "amount_z", op = "<=", value = -1 }]
reason = "{amount_z:.1f|2} standard deviations below the average"
"""
    det = rules(low)
    for i, amount in enumerate(("19.00", "20.00", "21.00")):
        det.score(make_tx(i, amount=amount))
    # Mean 20, spread 1: 10.00 is ten below it, past the cap.
    assert det.score(make_tx(10, amount="10.00")).reasons[0].message == (
        "less than -2 standard deviations below the average"
    )
    high = low.replace('op = "<=", value = -1', 'op = ">=", value = 1').replace("below", "above")
    det = rules(high)
    for i in range(3):
        det.score(make_tx(i, amount="20.00"))
    # Amounts that never varied: the z-score is infinite, and past any cap.
    assert det.score(make_tx(10, amount="21.00")).reasons[0].message == (
        "more than 2 standard deviations above the average"
    )
    # Without a cap, a rule pack's own template reads the sign, not Python's "inf".
    det = rules(high.replace(":.1f|2}", ":.1f}"))
    for i in range(3):
        det.score(make_tx(i, amount="20.00"))
    assert det.score(make_tx(10, amount="21.00")).reasons[0].message == (
        "∞ standard deviations above the average"
    )


def test_a_directory_of_files_is_one_rule_set(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(RULE)
    (tmp_path / "b.toml").write_text(RULE.replace('"big"', '"bigger"').replace("100", "1000"))
    (tmp_path / "notes.txt").write_text("not a rule file")
    ruleset = load_rules(tmp_path)
    assert [r.name for r in ruleset.rules] == ["big", "bigger"]
    first = ruleset.version
    (tmp_path / "b.toml").write_text(RULE.replace('"big"', '"bigger"').replace("100", "2000"))
    assert load_rules(tmp_path).version != first


def test_missing_path_and_empty_directory_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="no such file"):
        load_rules(tmp_path / "nope.toml")
    with pytest.raises(RulesError, match=r"no \*\.toml rule files"):
        load_rules(tmp_path)


# --- validation: every error names file, rule and problem ----------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("amount", "amout"), "rule 'big': unknown feature 'amout'"),
        (('op = ">="', 'op = "=>"'), "rule 'big': bad op '=>'"),
        (('severity = "high"\n', ""), "rule 'big': missing field 'severity'"),
        (('severity = "high"', 'severity = "urgent"'), "rule 'big': severity must be one of"),
        (("score = 0.6", "score = 1.5"), "rule 'big': score must be a number in [0, 1]"),
        (("value = 100", 'value = "100"'), "rule 'big': amount >= needs a number"),
        # TOML's nan compares false with everything: the rule would load and never fire.
        (("value = 100", "value = nan"), "rule 'big': amount >= needs a number, got nan"),
        (('op = ">=", value = 100', 'op = "in", value = [100, nan]'), "'in' on amount needs"),
        (("{currency}", "{currencyy}"), "rule 'big': reason template: unknown placeholder"),
        (("{currency}", "{amount.__class__}"), "unknown placeholder {amount.__class__}"),
        (("all = ", "every = "), "rule 'big': unknown key 'every'"),
        (('reason = "', 'reason = "{amount!r}'), "unknown placeholder {amount}"),
        (("{amount:,.2f}", "{amount:,.2f|0}"), "the cap in ',.2f|0' for {amount} must be"),
        (("{amount:,.2f}", "{amount:,.2f|-5}"), "the cap in ',.2f|-5' for {amount} must be"),
        (("{amount:,.2f}", "{amount:,.2f|lots}"), "bad format ',.2f|lots' for {amount}"),
        (("{currency}", "{settings.smal_amount}"), "unknown setting {settings.smal_amount}"),
        (("{currency}", "{settings}"), "rule 'big': reason template: unknown placeholder"),
        # A rule's name is its reasons' code: the dashboard took a rule named model for the
        # model (listed last, its figures as percentages), and rule=block_list found both.
        (('name = "big"', 'name = "model"'), "rule 'model': name 'model' is reserved"),
        (('name = "big"', 'name = "block_list"'), "name 'block_list' is reserved"),
        (('name = "big"', 'name = "allow_list"'), "name 'allow_list' is reserved"),
        (("{currency}", "{settings.small_amount:,.2f|x}"), "bad format ',.2f|x' for {settings"),
    ],
)
def test_validation_errors_name_file_rule_and_problem(
    change: tuple[str, str], problem: str
) -> None:
    errors = errors_of(RULE.replace(*change), name="rules/fraud.toml")
    assert any(e.startswith("rules/fraud.toml: ") and problem in e for e in errors), errors


def test_a_unit_outside_the_vocabulary_names_file_rule_and_unit() -> None:
    errors = errors_of(RULE + 'unit = "mph"\n', name="rules/fraud.toml")
    assert errors == [
        "rules/fraud.toml: rule 'big': unit must be one of count, currency, ratio, sd, "
        "fraction, s, km, km/h, got 'mph'"
    ]


def test_duplicate_names_across_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(RULE)
    (tmp_path / "b.toml").write_text(RULE)
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert caught.value.errors == [
        f"{tmp_path / 'b.toml'}: rule 'big': duplicate name (also in {tmp_path / 'a.toml'})"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = RULE.replace("amount", "amout") + RULE.replace('"big"', '"b2"').replace("0.6", "2")
    errors = errors_of(text + "\n[oops]\n[pack]\n")
    # The feature (in the clause and in the template), the score, the stray table.
    assert len(errors) == 5, errors
    # The stray tables last, where the file has them.
    assert "unknown top-level key 'oops'" in errors[3]
    # `pack` was taken and ignored: a table of nothing the loader reads.
    assert "unknown top-level key 'pack' (rules, lists, settings)" in errors[4]
    assert sum("rule 'big': " in e for e in errors) == 2
    assert sum("rule 'b2': score" in e for e in errors) == 1


def test_a_reason_reads_the_packs_settings() -> None:
    # The pack's small_amount in the reason, formatted as asked: change the setting and the
    # text follows, where it used to be written out beside it (and could disagree).
    text = RULE.replace(
        "{currency} at or", "{currency} (small is under {settings.small_amount:.2f}) at or"
    )
    for pack, small in (("", "5.00"), ("[settings]\nsmall_amount = 2.5\n", "2.50")):
        (reason,) = rules(pack + text).score(make_tx(amount="1250.00")).reasons
        assert reason.message == f"Amount 1,250.00 USD (small is under {small}) at or above 100.00"


def test_a_setting_in_another_file_of_the_set_reaches_every_template(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(RULE.replace("at or above", "over {settings.small_amount}?"))
    (tmp_path / "b.toml").write_text("[settings]\nsmall_amount = 7.25\n")
    (reason,) = Detector(rules=load_rules(tmp_path)).score(make_tx(amount="150.00")).reasons
    assert reason.message == "Amount 150.00 USD over 7.25? 100.00"


def test_the_default_packs_card_testing_reason_reads_its_small_amount(tmp_path: Path) -> None:
    # Its message said "under 5.00" whatever small_amount the pack set.
    pack = default_pack().read_text()
    assert "small_amount = 5.0\n" in pack
    small = pack.replace("small_amount = 5.0\n", "small_amount = 2.0\n")
    (tmp_path / "pack.toml").write_text(small)
    det = Detector(rules=load_rules(tmp_path / "pack.toml"))
    scored = [det.score(make_tx(s, amount="1.00")) for s in (0, 120, 240)][-1]
    (reason,) = [r for r in scored.reasons if r.code == "card_testing"]
    assert reason.message == "3 transactions under 2.00 USD in the last 10 min (threshold 3)"


def test_the_default_packs_amounts_are_on_the_streams_scale(tmp_path: Path) -> None:
    # A yen stream: typical amounts ~6,000, 150 times a dollar stream's 40.
    det = Detector()
    rng = random.Random(1)
    for i in range(1000):
        amount = f"{round(math.exp(rng.gauss(math.log(6000), 1.0)))}"
        det.score(make_tx(i, amount=amount, account_id=f"a-{i}", currency="JPY"))
    scale = det.featurizer.scale.scale
    assert scale is not None and 120 < scale < 180
    # Three amounts of 300 yen in ten minutes: card tests (5 on the scale is ~750 yen).
    scored = [det.score(make_tx(2000 + s, amount="300", account_id="card", currency="JPY"))
              for s in (0, 120, 240)][-1]  # fmt: skip
    (reason,) = [r for r in scored.reasons if r.code == "card_testing"]
    assert reason.message == (
        f"3 transactions under {5 * scale:,.2f} JPY in the last 10 min (threshold 3)"
    )
    # At 02:00: 5,000 yen is no night-time limit any more (1,000 was); 200,000 is, and the
    # reason shows the amount against the limit in yen.
    night = 14 * 3600
    small = det.score(make_tx(night, amount="5000", account_id="n-1", currency="JPY"))
    assert "night_high_amount_new" not in {r.code for r in small.reasons}
    big = det.score(make_tx(night, amount="200000", account_id="n-2", currency="JPY"))
    (reason,) = [r for r in big.reasons if r.code == "night_high_amount_new"]
    limit = round(1000 * scale, 2)
    assert (reason.observed, reason.threshold) == (200000.0, limit)
    assert reason.message == (
        f"Amount 200,000.00 JPY at 02:00 local time is at or above the night limit of "
        f"{limit:,.2f} JPY"
    )
    # Before the scale is known, the limits are the pack's own, in the file's units.
    fresh = Detector()
    early = fresh.score(make_tx(night, amount="5000", account_id="n-3", currency="JPY"))
    (reason,) = [r for r in early.reasons if r.code == "night_high_amount_new"]
    assert (reason.observed, reason.threshold) == (5000.0, 1000.0)
    assert reason.message.endswith("at or above the night limit of 1,000.00 JPY")


def test_bad_toml_names_the_file_and_line() -> None:
    (error,) = errors_of('[[rules]]\nname = "x\n', name="broken.toml")
    assert error.startswith("broken.toml: not valid TOML")
    assert "line 2" in error


def test_boolean_features_take_true_or_false() -> None:
    text = RULE.replace(
        'feature = "amount", op = ">=", value = 100',
        'feature = "is_new_device", op = ">=", value = 1',
    )
    assert any("is_new_device is true or false" in e for e in errors_of(text))


def test_a_rule_needs_exactly_one_condition() -> None:
    text = RULE.replace("all = [", 'any = [{ feature = "amount", op = ">", value = 1 }]\nall = [')
    assert any("needs exactly one condition" in e for e in errors_of(text))


# --- conditions ------------------------------------------------------------------------------


NESTED = """
[[rules]]
name = "nested"
score = 0.4
severity = "medium"
observed = "amount"
all = [
  { feature = "amount", op = ">", value = 50 },
  { any = [
    { feature = "local_hour", op = "in", value = [0, 1, 2] },
    { not = { feature = "distance_km", op = "<", value = 100 } },
  ] },
]
reason = "{amount} at {time}, {distance_km:,.0f} km away"
"""


def test_all_any_not_and_in() -> None:
    det = rules(NESTED)
    night = dt.datetime(2026, 3, 3, 1, 30, tzinfo=dt.UTC)
    night_tx = Transaction(
        id="n1", timestamp=night, account_id="a", merchant_id="m", amount=Decimal("60"),
        currency="USD",
    )  # fmt: skip
    scored = det.score(night_tx)
    assert [r.code for r in scored.reasons] == ["nested"]
    # No location yet: distance is unknown, and so is the message's part about it.
    assert scored.reasons[0].message == "60 at 01:30, unknown km away"
    assert codes(det, make_tx(0, amount="60.00", lat=40.7, lon=-74.0)) == []
    # 100 km or more away at noon: `not (distance < 100)` holds.
    assert codes(det, make_tx(3600, amount="60.00", lat=41.9, lon=-74.0)) == ["nested"]
    assert codes(det, make_tx(7200, amount="60.00", lat=41.95, lon=-74.0)) == []


def test_rules_on_unknown_features_do_not_fire_even_under_not() -> None:
    text = """
[[rules]]
name = "not_far"
score = 0.3
severity = "low"
all = [{ not = { feature = "distance_km", op = ">=", value = 100 } }]
reason = "near"

[[rules]]
name = "new_device"
score = 0.3
severity = "low"
all = [{ feature = "is_new_device", op = "==", value = true }]
reason = "new device"
"""
    det = rules(text)
    # No location and no device: both features unknown, neither rule fires.
    for i in range(3):
        assert codes(det, make_tx(i * 60.0)) == []
    assert codes(det, make_tx(200, lat=1.0, lon=1.0)) == []  # first located: still unknown
    assert codes(det, make_tx(300, lat=1.0, lon=1.1)) == ["not_far"]


ANY_AND_NOT = """
[[rules]]
name = "either"
score = 0.3
severity = "low"
any = [
  { feature = "amount", op = "<=", value = 5 },
  { all = [{ feature = "history", op = "!=", value = 0 },
           { feature = "local_hour", op = "not in", value = [9, 10] }] },
]
reason = "either"

[[rules]]
name = "not_both"
score = 0.3
severity = "low"
all = [
  { feature = "is_new_device", op = "==", value = false },
  { not = { all = [{ feature = "amount", op = "<", value = 20 },
                   { feature = "distance_km", op = ">", value = 3 }] } },
  { feature = "account_count_1m", op = ">=", value = 2 },
]
reason = "not both"

[[rules]]
name = "every_op"
score = 0.3
severity = "low"
all = [
  { feature = "local_hour", op = "not in", value = [9, 10] },
  { feature = "history", op = "!=", value = 3 },
  { feature = "amount", op = ">", value = 0.5 },
  { feature = "mean", op = "<=", value = 20 },
]
reason = "every op"
"""


@pytest.mark.parametrize("pack", ["default", "nested", "any_and_not"])
def test_the_compiled_check_fires_exactly_the_rules_whose_condition_holds(pack: str) -> None:
    """`RuleSet.fired` (each rule's clauses written out as code) agrees with every rule's
    interpreted condition, unknown features included, on random features."""
    texts = {"nested": NESTED, "any_and_not": ANY_AND_NOT}
    ruleset = (
        load_rules() if pack == "default" else compile_sources([("p.toml", texts[pack].encode())])
    )
    names = sorted({f for rule in ruleset.rules for f in rule.features})
    rng = random.Random(17)
    fired_any = 0
    for _ in range(3000):
        v: dict[str, Any] = {}
        for name in names:
            pick = rng.random()
            if pick < 0.15:
                v[name] = None
            elif pick < 0.25:
                v[name] = rng.random() < 0.5
            elif pick < 0.5:
                v[name] = rng.randrange(0, 12)
            elif pick < 0.9:
                v[name] = rng.choice([0.0, 0.5, 1.0, 2.9, 3.0, 5.0, 20.0, 60.0, 900.0, 1e4])
        expected = [rule for rule in ruleset.rules if rule.condition(v) is True]
        assert ruleset.fired(v) == expected, v
        fired_any += bool(expected)
    assert fired_any > 100  # the features drawn make rules fire as well as not


# --- allow and block lists -------------------------------------------------------------------


LISTS = (
    RULE
    + """
[[lists]]
name = "stolen_devices"
action = "block"
field = "device_id"
entries = [
  { value = "dev-bad", expires = 2026-03-02T13:00:00Z, note = "ring 42" },
  "dev-forever",
]

[[lists]]
name = "vip"
action = "allow"
field = "account_id"
entries = [{ value = "acct-vip", expires = 2026-03-02 }]
"""
)


def test_block_list_blocks_until_its_expiry_in_event_time() -> None:
    det = rules(LISTS)
    blocked = det.score(make_tx(0, device_id="dev-bad"))
    assert (blocked.score, blocked.decision, blocked.severity) == (1.0, "block", "critical")
    (reason,) = blocked.reasons
    assert reason.code == "block_list"
    assert reason.message == (
        "device_id dev-bad is on block list 'stolen_devices' until 2026-03-02 13:00 UTC (ring 42)"
    )
    assert det.score(make_tx(3599, device_id="dev-bad")).decision == "block"
    # Expired at 13:00 event time, whatever the wall clock says.
    assert det.score(make_tx(3600, device_id="dev-bad")).decision == "allow"
    assert det.score(make_tx(10**8, device_id="dev-forever")).decision == "block"
    assert det.score(make_tx(0, device_id="dev-ok")).decision == "allow"


def test_allow_list_silences_rules_through_its_last_day() -> None:
    det = rules(LISTS)
    vip = det.score(make_tx(0, amount="5000.00", account_id="acct-vip"))
    assert (vip.score, vip.decision) == (0.0, "allow")
    assert [r.code for r in vip.reasons] == ["allow_list"]
    # A date expiry holds through that day (UTC): the next day the rule applies again.
    later = det.score(make_tx(12 * 3600, amount="5000.00", account_id="acct-vip"))
    assert [r.code for r in later.reasons] == ["big"]


def test_block_wins_over_allow_and_rules_still_explain() -> None:
    det = rules(LISTS)
    scored = det.score(make_tx(0, amount="500.00", account_id="acct-vip", device_id="dev-bad"))
    assert scored.decision == "block"
    assert [r.code for r in scored.reasons] == ["block_list", "big"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('field = "device_id"', 'field = "password"'), "list 'stolen_devices': field must be"),
        (('action = "block"', 'action = "deny"'), "list 'stolen_devices': action must be"),
        (("2026-03-02T13:00:00Z", "2026-03-02T13:00:00"), "expires needs an offset"),
        (('"dev-forever",', '"dev-bad",'), "duplicate value 'dev-bad'"),
        (('note = "ring 42"', "note = 42"), "entry #1 (dev-bad): 'note' must be a string"),
    ],
)
def test_list_validation(change: tuple[str, str], problem: str) -> None:
    errors = errors_of(LISTS.replace(*change), name="lists.toml")
    assert any(e.startswith("lists.toml: ") and problem in e for e in errors), errors


def test_every_feature_is_documented() -> None:
    from server.detection.features import ENTITIES, FEATURES, WINDOWS

    text = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    windowed = {f"{e}_{k}_{w}" for e in ENTITIES for k in ("count", "sum") for w in WINDOWS}
    missing = [n for n in FEATURES if n not in windowed and f"`{n}`" not in text]
    assert not missing, f"docs/rules.md lacks {missing}"
    assert "`{key}_count_{window}`" in text
    assert all(f"`{w}`" in text for w in WINDOWS)
    assert all(f"`{e}`" in text for e in ENTITIES)


def test_the_units_table_gives_every_features_unit() -> None:
    import fnmatch
    import re

    from server.detection.features import FEATURE_UNITS

    text = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    section = text.split("### Units", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, str | None] = {}
    for unit, names in re.findall(r"^\| (`[^`]+`|none) \| (.+) \|$", section, re.MULTILINE):
        for pattern in re.findall(r"`([^`]+)`", names):
            for name in fnmatch.filter(FEATURE_UNITS, pattern):
                documented[name] = None if unit == "none" else unit.strip("`")
    assert documented == FEATURE_UNITS


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.4, "59 s"), (59.6, "1 min"), (600, "10 min"), (3569, "59 min"),
     (3599, "1.0 h"), (5400, "1.5 h")],
)  # fmt: skip
def test_a_duration_takes_its_unit_after_rounding(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# --- severity bands ([settings] high_loss, critical_loss) ------------------------------------


def test_the_loss_bands_default_to_todays_and_a_pack_sets_its_own() -> None:
    assert load_rules().bands == LossBands(HIGH_LOSS, CRITICAL_LOSS) == LossBands(100.0, 500.0)
    pack = "[settings]\nhigh_loss = 2000\ncritical_loss = 10000.5\n" + RULE
    assert rules(pack).ruleset.bands == LossBands(2000.0, 10000.5)
    # A template reads them like any setting.
    text = RULE.replace("at or above", "(high from {settings.high_loss:g}) at or above")
    (reason,) = rules("[settings]\nhigh_loss = 20\n" + text).score(make_tx(amount="150")).reasons
    assert reason.message == "Amount 150.00 USD (high from 20) at or above 100.00"


ORDER = ": critical_loss must be >= high_loss"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ("high_loss = 0", "high_loss must be a number > 0, got 0"),
        ("critical_loss = -5.0", "critical_loss must be a number > 0, got -5.0"),
        ('high_loss = "100"', "high_loss must be a number > 0, got '100'"),
        ("critical_loss = true", "critical_loss must be a number > 0, got True"),
        ("high_loss = nan", "high_loss must be a number > 0, got nan"),
        ("critical_loss = inf", "critical_loss must be a number > 0, got inf"),
        ("high_loss = 50\ncritical_loss = 20", "critical_loss 20 is below high_loss 50" + ORDER),
        # Against the other's default: 500 for critical_loss, 100 for high_loss.
        ("high_loss = 1000", "critical_loss 500 is below high_loss 1000" + ORDER),
        ("critical_loss = 50", "critical_loss 50 is below high_loss 100" + ORDER),
        ("hi_loss = 50", "unknown setting 'hi_loss' (small_amount, high_loss, critical_loss)"),
    ],
)
def test_bad_loss_bands_are_load_errors_naming_file_and_setting(settings: str, error: str) -> None:
    assert errors_of(f"[settings]\n{settings}\n{RULE}") == [f"pack.toml: [settings]: {error}"]


def test_loss_bands_may_be_set_in_different_files_and_are_checked_together(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.toml").write_text(RULE)
    (tmp_path / "b.toml").write_text("[settings]\nhigh_loss = 1000\n")
    (tmp_path / "c.toml").write_text("[settings]\ncritical_loss = 4000\n")
    assert load_rules(tmp_path).bands == LossBands(1000.0, 4000.0)
    (tmp_path / "c.toml").write_text("[settings]\ncritical_loss = 400\n")
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert caught.value.errors == [
        f"{tmp_path / 'c.toml'}: [settings]: critical_loss 400 is below high_loss 1000: "
        "critical_loss must be >= high_loss"
    ]
    (tmp_path / "c.toml").write_text("[settings]\nhigh_loss = 900\n")
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert caught.value.errors == [
        f"{tmp_path / 'c.toml'}: [settings]: high_loss 900 conflicts with 1000.0 set in "
        f"{tmp_path / 'b.toml'}"
    ]

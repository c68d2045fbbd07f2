"""Declarative rules: TOML files over named features, validated at load, compiled to closures.

A rule is a condition (clauses `{feature, op, value}` combined with `all` / `any` / `not`,
never Python code), a score contribution, a severity and a reason template. Allow and block
lists match transaction fields, each entry with an optional expiry in event time. See
docs/rules.md for the language.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
import stat
import string
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from math import inf, isfinite
from pathlib import Path
from typing import Any, Literal, TypeGuard, TypeVar, get_args

from server.detection.features import DEFAULT_SMALL_AMOUNT, FEATURE_UNITS, FEATURES, Value
from server.detection.severity import CRITICAL_LOSS, DEFAULT_BANDS, HIGH_LOSS, LossBands
from server.detection.verdict import UNITS, Reason, Severity, beyond_cap
from server.transactions import Transaction
from server.wording import cannot_read

# Bump when what the engine computes for the same files changes.
ENGINE = "rules-3"
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
LIST_FIELDS = ("account_id", "merchant_id", "device_id", "ip", "country", "mcc", "channel")
TX_FIELDS = ("account_id", "merchant_id", "currency", "country", "mcc", "channel", "device_id")
TEMPLATE_EXTRAS = ("observed", "threshold", "merchant", "time", *TX_FIELDS, "ip")
# The rule set's [settings] and their defaults, which a reason template reads as
# {settings.<name>}: each a number > 0, and critical_loss >= high_loss.
SETTINGS = ("small_amount", "high_loss", "critical_loss")
SETTING_DEFAULTS = {
    "small_amount": DEFAULT_SMALL_AMOUNT,
    "high_loss": HIGH_LOSS,
    "critical_loss": CRITICAL_LOSS,
}
SETTINGS_PREFIX = "settings."
BOOLEAN_FEATURES = frozenset(n for n in FEATURES if n.startswith("is_new_"))
RULE_KEYS = frozenset(
    {
        "name",
        "description",
        "score",
        "severity",
        "reason",
        "observed",
        "threshold",
        "unit",
        "all",
        "any",
    }
)
LIST_KEYS = frozenset({"name", "action", "field", "entries", "description"})

Cond = Callable[[dict[str, Value]], bool | None]
"""True, False, or None when a feature it needs is unknown: a rule fires only on True."""
Clause = tuple[str, str, Any]
"""One comparison: (feature, op as written, value; a list's values as a frozenset)."""

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda x, values: x in values,
    "not in": lambda x, values: x not in values,
}


RESERVED_CODES = ("allow_list", "block_list", "model")
"""Reason codes given by the lists and the model, so no rule may be named so."""


class RulesError(ValueError):
    """Rule files that cannot be loaded; `errors` has one line per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


class RulesPathError(RulesError):
    """The path itself names no rule file (missing, or a directory without *.toml): a
    setting's or a flag's value, which the caller names."""


@dataclass(frozen=True, slots=True)
class Leaf:
    feature: str
    op: str
    value: Any


@dataclass(slots=True)
class Rule:
    """One compiled rule: `condition` over the features, the reason it gives when it holds."""

    name: str
    score: float
    severity: Severity
    condition: Cond
    template: tuple[tuple[str, str | None, str], ...]
    observed: str
    threshold: float | str | None
    features: frozenset[str]
    description: str = ""
    # `condition` as `compile_check` writes it out: a top-level `all`'s items in order, each
    # a clause (feature, op, value), compared inline, or a compiled `any`/`not` it calls;
    # a top-level `any` is the one item, `condition` itself. The rule holds when every item
    # is true (a clause whose feature is unknown is not).
    clauses: tuple[Clause | Cond, ...] = ()
    # The threshold is on `amount_scaled` and the rule observes the amount: a reason shows it
    # times `amount_scale`, in the file's units as the amount is.
    scaled: bool = False
    # What observed and threshold are in (a key of UNITS): the observed feature's unit unless
    # the file says otherwise. "currency" becomes the transaction's code in a reason.
    unit: str | None = None

    def shown_threshold(self, v: dict[str, Value]) -> float | str | None:
        threshold = self.threshold
        if self.scaled and isinstance(threshold, float):
            scale = v.get("amount_scale")
            return round(threshold * scale, 2) if isinstance(scale, float) else threshold
        return threshold

    def reason(self, v: dict[str, Value], tx: Transaction, *, message: bool = True) -> Reason:
        """The reason this rule gives for `tx`, once its condition holds (without its message
        when `message` is False: `Detector.explain`)."""
        observed = _lookup(self.observed, v, tx)
        if isinstance(observed, float):
            observed = round(observed, 2) if isfinite(observed) else None
        elif isinstance(observed, bool):
            observed = str(observed).lower()
        unit = self.unit
        if unit == "currency":
            unit = tx.currency or None
        return Reason(
            self.name,
            self.render(v, tx) if message else "",
            observed,
            self.shown_threshold(v),
            self.score,
            self.severity,
            unit,
        )

    def render(self, v: dict[str, Value], tx: Transaction) -> str:
        parts: list[str] = []
        for literal, name, spec in self.template:
            parts.append(literal)
            if name is None:
                continue
            if name == "threshold":
                value: Any = self.shown_threshold(v)
            else:
                if name == "observed":
                    name = self.observed
                # The amount as sent (a Decimal): the feature is a float, which has about 15
                # significant digits and would print 99,999,999,999,999.99 as ...98.
                value = tx.amount if name == "amount" else _lookup(name, v, tx)
            parts.append(_format(value, spec))
        return "".join(parts)


@dataclass(slots=True)
class ListEntry:
    value: str
    expires: float  # epoch seconds of event time; inf: never
    note: str = ""


@dataclass(slots=True)
class ValueList:
    name: str
    action: Literal["allow", "block"]
    field: str
    entries: dict[str, ListEntry]

    def match(self, tx: Transaction, t: float) -> Reason | None:
        key = getattr(tx, self.field)
        if key is None:
            return None
        entry = self.entries.get(key)
        if entry is None or t >= entry.expires:
            return None
        until = (
            ""
            if entry.expires == inf
            else f" until {dt.datetime.fromtimestamp(entry.expires, dt.UTC):%Y-%m-%d %H:%M} UTC"
        )
        note = f" ({entry.note})" if entry.note else ""
        return Reason(
            f"{self.action}_list",
            f"{self.field} {key} is on {self.action} list '{self.name}'{until}{note}",
            key,
            None,
            1.0 if self.action == "block" else 0.0,
            "critical" if self.action == "block" else None,
        )


@dataclass(frozen=True, slots=True)
class RuleSet:
    """What a set of rule files compiles to; `version` is a hash of their content."""

    version: str
    rules: tuple[Rule, ...]
    lists: tuple[ValueList, ...] = ()
    small_amount: float = DEFAULT_SMALL_AMOUNT
    bands: LossBands = DEFAULT_BANDS
    """`[settings] high_loss` and `critical_loss`: the expected losses an alert's severity
    is banded by (server/detection/severity.py)."""
    files: tuple[str, ...] = ()
    features: frozenset[str] = field(default_factory=frozenset)

    fired: Callable[[dict[str, Value]], list[Rule]] = field(init=False, repr=False, compare=False)
    """The rules that hold for one transaction's features, in order (`compile_check`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fired", compile_check(self.rules))

    def check_lists(self, tx: Transaction, t: float) -> tuple[Reason | None, Reason | None]:
        """(block reason, allow reason); a block list wins over an allow list."""
        block = allow = None
        for lst in self.lists:
            hit = lst.match(tx, t)
            if hit is None:
                continue
            if lst.action == "block":
                block = block or hit
            else:
                allow = allow or hit
        return block, allow


# --- loading ---------------------------------------------------------------------------------


def default_pack() -> Path:
    return Path(str(resources.files("server.detection") / "rulepacks" / "default.toml"))


def rule_files(path: Path) -> list[Path]:
    """A file, or every *.toml in a directory (sorted by name)."""
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except OSError as exc:  # not there, or a directory on the way not searchable
        raise RulesPathError([cannot_read(path, exc)]) from None
    if is_dir:
        files = sorted(p for p in path.glob("*.toml") if p.is_file())
        if not files:
            raise RulesPathError([f"{path}: no *.toml rule files in this directory"])
        return files
    return [path]


def load_rules(path: Path | None = None) -> RuleSet:
    """Load, validate and compile the rules at `path` (default: the packaged default pack).

    Raises RulesError listing every problem found, each naming file, rule and problem.
    """
    return load_files(rule_files(default_pack() if path is None else path))


def load_files(files: Sequence[Path]) -> RuleSet:
    """Read and compile `files` as one rule set, in this order (`load_rules` of a directory
    passes its *.toml sorted by name). Raises RulesError listing every problem found."""
    sources: list[tuple[str, bytes]] = []
    errors: list[str] = []
    for f in files:
        try:
            sources.append((str(f), f.read_bytes()))
        except OSError as exc:
            errors.append(cannot_read(f, exc))
    if errors:
        raise RulesError(errors)
    return compile_sources(sources)


def compile_sources(sources: Sequence[tuple[str, bytes]]) -> RuleSet:
    """Compile (file name, content) pairs; the version covers every byte of each."""
    errors: list[str] = []
    rules: list[Rule] = []
    lists: list[ValueList] = []
    set_in: dict[str, tuple[float, str]] = {}  # setting: (value, the file that set it)
    bad_settings = False  # then the bands are not compared: their error is already said
    seen_rules: dict[str, str] = {}
    seen_lists: dict[str, str] = {}
    digest = hashlib.sha256(ENGINE.encode())
    for name, content in sources:
        digest.update(b"\0" + Path(name).name.encode() + b"\0" + content)
        try:
            data = tomllib.loads(content.decode("utf-8"))
        except UnicodeDecodeError:
            errors.append(f"{name}: not UTF-8 text")
            continue
        except tomllib.TOMLDecodeError as exc:
            errors.append(f"{name}: not valid TOML: {exc}")
            continue
        # Top to bottom, as the author wrote it (a TOML table keeps its keys' order): the
        # problems are listed in the file's order, not grouped by kind.
        for key in data:
            if key == "rules":
                rules += _named_tables(
                    data, "rules", "rule", name, seen_rules, _compile_rule, errors
                )
            elif key == "lists":
                lists += _named_tables(
                    data, "lists", "list", name, seen_lists, _compile_list, errors
                )
            elif key == "settings":
                bad_settings |= _read_settings(data["settings"], name, set_in, errors)
            else:
                errors.append(f"{name}: unknown top-level key '{key}' (rules, lists, settings)")
    # A setting may be set in any file of the set (or left at its default): its value is
    # known once every file is read, and is written into the templates that name it.
    values = {key: set_in[key][0] if key in set_in else SETTING_DEFAULTS[key] for key in SETTINGS}
    if not bad_settings and values["critical_loss"] < values["high_loss"]:
        # Else a critical alert could hold less than a high one. Reported in the file that
        # set critical_loss, else in the one that set high_loss.
        key = "critical_loss" if "critical_loss" in set_in else "high_loss"
        errors.append(
            f"{set_in[key][1]}: [settings]: critical_loss {values['critical_loss']:g} is below "
            f"high_loss {values['high_loss']:g}: critical_loss must be >= high_loss"
        )
    if errors:
        raise RulesError(errors)
    features = frozenset(f for rule in rules for f in rule.features)
    small_amount = values["small_amount"]
    for rule in rules:
        rule.template = _fill_settings(rule.template, values)
    return RuleSet(
        version=f"{ENGINE}+{digest.hexdigest()[:8]}",
        rules=tuple(rules),
        lists=tuple(lists),
        small_amount=small_amount,
        bands=LossBands(values["high_loss"], values["critical_loss"]),
        files=tuple(name for name, _ in sources),
        features=features,
    )


def _read_settings(
    settings: object, file: str, set_in: dict[str, tuple[float, str]], errors: list[str]
) -> bool:
    """One file's [settings] into `set_in`; True when a value is bad (then the bands are
    not compared: their error is already said)."""
    if not isinstance(settings, dict):
        errors.append(f"{file}: [settings] must be a table")
        return False
    bad = False
    for key, value in settings.items():
        if key not in SETTINGS:
            errors.append(f"{file}: [settings]: unknown setting '{key}' ({', '.join(SETTINGS)})")
        elif not _is_number(value) or not isfinite(value) or value <= 0:
            bad = True
            errors.append(f"{file}: [settings]: {key} must be a number > 0, got {value!r}")
        elif key in set_in and set_in[key][0] != value:
            bad = True
            errors.append(f"{file}: [settings]: {key} {value} conflicts with "
                          f"{set_in[key][0]} set in {set_in[key][1]}")  # fmt: skip
        else:
            set_in[key] = (float(value), file)
    return bad


T = TypeVar("T")


def _named_tables(
    data: dict[str, Any],
    key: str,
    kind: str,
    file: str,
    seen: dict[str, str],
    compile_one: Callable[[object, str, list[str]], T | None],
    errors: list[str],
) -> list[T]:
    """Compile one file's `[[key]]` tables, each named uniquely across every file."""
    raw_tables = data.get(key, [])
    if not isinstance(raw_tables, list):
        errors.append(f"{file}: '{key}' must be an array of tables ([[{key}]])")
        return []
    compiled: list[T] = []
    for i, raw in enumerate(raw_tables):
        where = f"{file}: {kind} #{i + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            where = f"{file}: {kind} '{raw['name']}'"
            if raw["name"] in seen:
                errors.append(f"{where}: duplicate name (also in {seen[raw['name']]})")
                continue
            seen[raw["name"]] = file
        item = compile_one(raw, where, errors)
        if item is not None:
            compiled.append(item)
    return compiled


def _compile_list(raw: object, where: str, errors: list[str]) -> ValueList | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be a table")
        return None
    before = len(errors)
    for key in [k for k in raw if k not in LIST_KEYS]:
        errors.append(f"{where}: unknown key '{key}' ({', '.join(sorted(LIST_KEYS))})")
    for key in ("name", "action", "field", "entries"):
        if key not in raw:
            errors.append(f"{where}: missing field '{key}'")
    action, field_name = raw.get("action"), raw.get("field")
    if "action" in raw and action not in ("allow", "block"):
        errors.append(f"{where}: action must be 'allow' or 'block', got {action!r}")
    if "field" in raw and field_name not in LIST_FIELDS:
        errors.append(f"{where}: field must be one of {', '.join(LIST_FIELDS)}, got {field_name!r}")
    entries: dict[str, ListEntry] = {}
    raw_entries = raw.get("entries", [])
    if not isinstance(raw_entries, list):
        errors.append(f"{where}: entries must be an array")
        raw_entries = []
    for i, item in enumerate(raw_entries):
        at = f"{where}: entry #{i + 1}"
        if isinstance(item, str):
            item = {"value": item}
        if not isinstance(item, dict):
            errors.append(f"{at}: must be a string or {{value, expires, note}}")
            continue
        for key in [k for k in item if k not in ("value", "expires", "note")]:
            errors.append(f"{at}: unknown key '{key}' (value, expires, note)")
        value = item.get("value")
        if not isinstance(value, str) or not value:
            errors.append(f"{at}: 'value' must be a non-empty string")
            continue
        expires = _expiry(item.get("expires"), f"{at} ({value})", errors)
        if value in entries:
            errors.append(f"{at}: duplicate value {value!r}")
        note = item.get("note", "")
        if not isinstance(note, str):
            # Shown to analysts in the list's reason as written: 5 would read "(5)".
            errors.append(f"{at} ({value}): 'note' must be a string")
            continue
        entries[value] = ListEntry(value, expires, note)
    if len(errors) > before:
        return None
    return ValueList(str(raw["name"]), action, str(field_name), entries)  # type: ignore[arg-type]


def _expiry(raw: object, where: str, errors: list[str]) -> float:
    """Epoch seconds an entry stops matching (compared with event time); inf: never."""
    if raw is None:
        return inf
    if isinstance(raw, dt.datetime):
        if raw.tzinfo is None:
            errors.append(f"{where}: expires needs an offset (2026-12-31T00:00:00Z), got {raw}")
            return inf
        return raw.timestamp()
    if isinstance(raw, dt.date):
        # A date alone: the entry holds through that day, UTC.
        end = dt.datetime.combine(raw, dt.time(), dt.UTC) + dt.timedelta(days=1)
        return end.timestamp()
    errors.append(f"{where}: expires must be a TOML date or date-time, got {raw!r}")
    return inf


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_value(value: object) -> TypeGuard[int | float]:
    """A number a clause can compare with: TOML's nan compares false with everything, so a
    rule holding it would load and never fire."""
    return _is_number(value) and value == value


def _compile_rule(raw: object, where: str, errors: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be a table")
        return None
    before = len(errors)
    for key in [k for k in raw if k not in RULE_KEYS]:
        errors.append(f"{where}: unknown key '{key}' ({', '.join(sorted(RULE_KEYS))})")
    for key in ("name", "score", "severity", "reason"):
        if key not in raw:
            errors.append(f"{where}: missing field '{key}'")
    name = raw.get("name")
    if "name" in raw and (not isinstance(name, str) or not name.isidentifier()):
        errors.append(f"{where}: name must be letters, digits and underscores, got {name!r}")
    elif name in RESERVED_CODES:
        # A rule's name is its reasons' code: these are the lists' and the model's, which the
        # dashboard and the alert filter tell apart by it.
        errors.append(
            f"{where}: name {name!r} is reserved for the reasons fraudwatch gives itself "
            f"({', '.join(RESERVED_CODES)})"
        )
    score = raw.get("score")
    if "score" in raw and (not _is_number(score) or not 0.0 <= score <= 1.0):
        errors.append(f"{where}: score must be a number in [0, 1], got {score!r}")
    severity = raw.get("severity")
    if "severity" in raw and severity not in SEVERITIES:
        errors.append(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    conditions = [k for k in ("all", "any") if k in raw]
    leaves: list[Leaf] = []
    condition: Cond | None = None
    if len(conditions) != 1:
        errors.append(f"{where}: needs exactly one condition, 'all = [...]' or 'any = [...]'")
    else:
        condition = _compile_cond({conditions[0]: raw[conditions[0]]}, where, errors, leaves)
    observed = raw.get("observed", leaves[0].feature if leaves else "")
    if "observed" in raw and (
        not isinstance(observed, str) or (observed not in FEATURES and observed not in TX_FIELDS)
    ):
        errors.append(f"{where}: observed {observed!r} is neither a feature nor a field")
    threshold = raw.get("threshold")
    if "threshold" in raw:
        if not (_is_number(threshold) or isinstance(threshold, str)):
            errors.append(f"{where}: threshold must be a number or a string")
    else:
        threshold = next(
            (leaf.value for leaf in leaves if leaf.feature == observed and _is_number(leaf.value)),
            None,
        )
    # An amount against a limit on the stream's scale: the limit is shown in the amount's
    # units (`Rule.shown_threshold`).
    scaled = threshold is None and observed == "amount" and "threshold" not in raw
    if scaled:
        threshold = next(
            (leaf.value for leaf in leaves
             if leaf.feature == "amount_scaled" and _is_number(leaf.value)),
            None,
        )  # fmt: skip
        scaled = threshold is not None
    unit = raw.get("unit", FEATURE_UNITS.get(str(observed)))
    if "unit" in raw and unit not in UNITS:
        errors.append(f"{where}: unit must be one of {', '.join(UNITS)}, got {unit!r}")
    template = _compile_template(raw.get("reason"), where, errors)
    if len(errors) > before or condition is None or template is None:
        return None
    clauses: tuple[Clause | Cond, ...] = (condition,)
    if "all" in raw:
        # Already validated with the whole condition: compiling an item cannot fail.
        clauses = tuple(
            (str(item["feature"]), str(item["op"]), _value(item))
            if "feature" in item
            else _compile_cond(item, where, [], []) or _holds
            for item in raw["all"]
        )
    used = {leaf.feature for leaf in leaves}
    used |= {n for _, n, _ in template if n in FEATURES}
    if observed in FEATURES:
        used.add(observed)
    if scaled:
        used.add("amount_scale")
    return Rule(
        name=str(name),
        score=float(score),  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        condition=condition,
        template=template,
        observed=str(observed),
        threshold=float(threshold) if _is_number(threshold) else threshold,
        features=frozenset(used),
        description=str(raw.get("description", "")),
        clauses=clauses,
        scaled=scaled,
        unit=unit,
    )


def _holds(v: dict[str, Value]) -> bool:
    return True


def compile_check(rules: Sequence[Rule]) -> Callable[[dict[str, Value]], list[Rule]]:
    """One function that returns the rules holding for a transaction's features, in order:
    every rule's `clauses` written out as one `if` of comparisons, in Python code compiled
    once per rule set. Interpreting the clauses (a loop over the rules, a call of the
    operator's function per comparison, a call per condition) cost the backtest's reader
    ~2,800 more instructions a row (docs/backtest.md#throughput-and-memory). Only feature names
    (validated identifiers of FEATURES) and ops (keys of _OPS) are written into the code;
    values, compiled conditions and the rules themselves are the function's globals. A
    clause holds only when its feature is known, so a rule holds when every item does, as
    `Rule.condition(v) is True` says."""
    namespace: dict[str, Any] = {}
    lines = ["def fired(v):", "    get = v.get", "    out = []"]
    for k, rule in enumerate(rules):
        tests = []
        for j, item in enumerate(rule.clauses):
            name = f"c{k}_{j}"
            if isinstance(item, tuple):
                feature, op, value = item
                if feature not in FEATURES or op not in _OPS:  # never: validated when compiled
                    raise ValueError(f"bad clause {feature!r} {op!r}")
                # The op as written in the pack: `x >= c`, `x in c` (a frozenset).
                namespace[name] = value
                tests.append(f"(x := get({feature!r})) is not None and x {op} {name}")
            else:
                namespace[name] = item
                tests.append(f"{name}(v) is True")
        namespace[f"rule{k}"] = rule
        lines.append(f"    if {' and '.join(tests) or 'True'}:")
        lines.append(f"        out.append(rule{k})")
    lines.append("    return out")
    exec(compile("\n".join(lines), "<rules>", "exec"), namespace)
    check: Callable[[dict[str, Value]], list[Rule]] = namespace["fired"]
    return check


def _compile_cond(raw: object, where: str, errors: list[str], leaves: list[Leaf]) -> Cond | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: a condition must be a table, got {raw!r}")
        return None
    if "feature" in raw:
        return _compile_leaf(raw, where, errors, leaves)
    keys = list(raw)
    if len(keys) != 1 or keys[0] not in ("all", "any", "not"):
        errors.append(
            f"{where}: a condition is {{feature, op, value}}, {{all = [...]}}, {{any = [...]}} "
            f"or {{not = {{...}}}}; got keys {', '.join(keys) or 'none'}"
        )
        return None
    kind = keys[0]
    body = raw[kind]
    if kind == "not":
        inner = _compile_cond(body, where, errors, leaves)
        if inner is None:
            return None
        return _not(inner)
    if not isinstance(body, list) or not body:
        errors.append(f"{where}: '{kind}' must be a non-empty array of conditions")
        return None
    parts = [_compile_cond(item, where, errors, leaves) for item in body]
    if any(p is None for p in parts):
        return None
    conds = [p for p in parts if p is not None]
    if kind == "all":
        flat = [item for item in body if isinstance(item, dict) and "feature" in item]
        if len(flat) == len(body):
            # The usual shape, inlined: one call per rule instead of one per clause.
            return _all_leaves(tuple((str(i["feature"]), _OPS[i["op"]], _value(i)) for i in flat))
        return _all(conds)
    return _any(conds)


def _value(item: dict[str, Any]) -> Any:
    value = item["value"]
    return frozenset(value) if isinstance(value, list) else value


def _compile_leaf(
    raw: dict[str, Any], where: str, errors: list[str], leaves: list[Leaf]
) -> Cond | None:
    before = len(errors)
    for key in [k for k in raw if k not in ("feature", "op", "value")]:
        errors.append(f"{where}: unknown key '{key}' in a clause (feature, op, value)")
    feature, op = raw.get("feature"), raw.get("op")
    if feature not in FEATURES:
        errors.append(f"{where}: unknown feature {feature!r} (see docs/rules.md for the list)")
    if op not in _OPS:
        errors.append(f"{where}: bad op {op!r} for {feature!r} (one of {', '.join(_OPS)})")
    if "value" not in raw:
        errors.append(f"{where}: clause on {feature!r} is missing 'value'")
    if len(errors) > before:
        return None
    value = raw["value"]
    if feature in BOOLEAN_FEATURES:
        if op not in ("==", "!=") or not isinstance(value, bool):
            errors.append(f"{where}: {feature} is true or false: use == or != with true/false")
            return None
    elif op in ("in", "not in"):
        if not isinstance(value, list) or not value or not all(_is_value(x) for x in value):
            errors.append(f"{where}: '{op}' on {feature} needs a non-empty array of numbers")
            return None
    elif not _is_value(value):
        errors.append(f"{where}: {feature} {op} needs a number, got {value!r}")
        return None
    leaves.append(Leaf(str(feature), str(op), value))
    fn = _OPS[str(op)]
    compare = frozenset(value) if isinstance(value, list) else value
    name = str(feature)

    def leaf(v: dict[str, Value]) -> bool | None:
        x = v.get(name)
        return None if x is None else bool(fn(x, compare))

    return leaf


def _all_leaves(clauses: tuple[tuple[str, Callable[[Any, Any], bool], Any], ...]) -> Cond:
    def cond(v: dict[str, Value]) -> bool | None:
        unknown = False
        for name, fn, value in clauses:
            x = v.get(name)
            if x is None:
                unknown = True
            elif not fn(x, value):
                return False
        return None if unknown else True

    return cond


def _all(conds: list[Cond]) -> Cond:
    def cond(v: dict[str, Value]) -> bool | None:
        unknown = False
        for c in conds:
            r = c(v)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    return cond


def _any(conds: list[Cond]) -> Cond:
    def cond(v: dict[str, Value]) -> bool | None:
        unknown = False
        for c in conds:
            r = c(v)
            if r is True:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    return cond


def _not(inner: Cond) -> Cond:
    def cond(v: dict[str, Value]) -> bool | None:
        r = inner(v)
        return None if r is None else not r

    return cond


# --- reason templates ------------------------------------------------------------------------


def _compile_template(
    raw: object, where: str, errors: list[str]
) -> tuple[tuple[str, str | None, str], ...] | None:
    if raw is None:
        return None  # already reported as missing
    if not isinstance(raw, str) or not raw.strip():
        errors.append(f"{where}: reason must be a non-empty string")
        return None
    try:
        parsed = list(string.Formatter().parse(raw))
    except ValueError as exc:
        errors.append(f"{where}: reason template: {exc}")
        return None
    out: list[tuple[str, str | None, str]] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            out.append((literal, None, ""))
            continue
        if name.startswith(SETTINGS_PREFIX) and conversion is None:
            setting = name.removeprefix(SETTINGS_PREFIX)
            if setting not in SETTINGS:
                errors.append(
                    f"{where}: reason template: unknown setting {{{name}}} (the [settings] a "
                    f"template can read: {', '.join(SETTINGS_PREFIX + s for s in SETTINGS)})"
                )
                continue
        elif conversion is not None or not (name in FEATURES or name in TEMPLATE_EXTRAS):
            errors.append(
                f"{where}: reason template: unknown placeholder {{{name}}} (a feature, "
                f"{', '.join(TEMPLATE_EXTRAS)}, settings.<name>)"
            )
            continue
        spec = spec or ""
        if spec != "duration":
            number, cap = _split_cap(spec)
            if cap is not None and not (isfinite(cap) and cap > 0):
                errors.append(f"{where}: reason template: the cap in '{spec}' for {{{name}}} "
                              "must be a number > 0")  # fmt: skip
                continue
            try:
                format(1.5, number)
            except ValueError:
                errors.append(f"{where}: reason template: bad format '{spec}' for {{{name}}}")
                continue
        out.append((literal, name, spec))
    return tuple(out)


def _fill_settings(
    template: tuple[tuple[str, str | None, str], ...], values: dict[str, float]
) -> tuple[tuple[str, str | None, str], ...]:
    """The template with each {settings.<name>} written in as text: a setting is one value
    for the whole rule set, so it is formatted once, at load, not for every reason."""
    out: list[tuple[str, str | None, str]] = []
    for literal, name, spec in template:
        if name is not None and name.startswith(SETTINGS_PREFIX):
            value = values[name.removeprefix(SETTINGS_PREFIX)]
            out.append((literal + _format(value, spec), None, ""))
        else:
            out.append((literal, name, spec))
    return tuple(out)


def _lookup(name: str, v: dict[str, Value], tx: Transaction) -> Any:
    if name in v:
        return v[name]
    if name == "merchant":
        return tx.merchant_id if tx.merchant_name is None else tx.merchant_name
    if name == "time":
        return f"{tx.timestamp:%H:%M}"
    if name in TX_FIELDS or name == "ip":
        return getattr(tx, name)
    return None


def duration(seconds: float) -> str:
    """A window or gap as a reason reads it; the unit is chosen after rounding, so 59.6 s
    reads "1 min", not "60 s", and 3,599 s "1.0 h", not "60 min"."""
    if round(seconds) < 60:
        return f"{seconds:.0f} s"
    if round(seconds / 60) < 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _split_cap(spec: str) -> tuple[str, float | None]:
    """A number's format and its cap: `.1f|1000` is ('.1f', 1000.0). Without a `|N` ending
    (a `|` can also be a fill character, as in `|^9`) the spec is all format."""
    number, bar, cap = spec.rpartition("|")
    if not bar:
        return spec, None
    try:
        return number, float(cap)
    except ValueError:
        return spec, None


def _format(value: Any, spec: str) -> str:
    if value is None:
        return "unknown"
    if spec == "duration":
        return duration(float(value)) if _is_number(value) else str(value)
    spec, cap = _split_cap(spec)
    if cap is not None:
        if value != value:  # NaN: no number at all
            return "unknown"
        beyond = beyond_cap(value, cap)
        if beyond is not None:
            return beyond
    elif isinstance(value, float) and not isfinite(value):
        # Without a cap, a format would write "inf" or "nan" into an analyst's sentence.
        return "unknown" if value != value else ("∞" if value > 0 else "-∞")
    if not spec:
        if isinstance(value, float):
            return f"{value:g}" if value == int(value) and isfinite(value) else f"{value:.2f}"
        return str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)


def describe(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """Rules as the API lists them: with the `unit` their reasons' figures are in (a key of
    UNITS: `currency` stands for the transaction's code a reason gives), absent when they
    have none, as a reason leaves it out."""
    listed = []
    for r in rules:
        rule: dict[str, Any] = {
            "name": r.name,
            "score": r.score,
            "severity": r.severity,
            "description": r.description,
            "features": sorted(r.features),
        }
        if r.unit is not None:
            rule["unit"] = r.unit
        listed.append(rule)
    return listed

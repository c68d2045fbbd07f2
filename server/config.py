"""Settings: one frozen dataclass read from defaults, a TOML file, FRAUDWATCH_* env and flags.

Precedence, lowest first: defaults, the TOML file (`--config` or FRAUDWATCH_CONFIG), the
environment, command-line flags. Every setting has a help string; docs/settings.md lists
them all and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from server.transactions import is_currency_code

ENV_PREFIX = "FRAUDWATCH_"
_ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[^/\s:@\[\]]+)(:[0-9]{1,5})?")
_DISPOSITION = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _s(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = _s("127.0.0.1", "Address the HTTP server binds to.")
    port: int = _s(8000, "TCP port of the HTTP server.")
    data_dir: Path = _s(
        Path("fraudwatch-data"),
        "Directory for the SQLite database, the session secret and the demo credentials.",
    )
    api_key: str | None = _s(
        None,
        "The bootstrap Bearer key for machine clients, with every scope; more keys, each with "
        "its own scopes, come from `fraudwatch keys`. Unset: one is generated and kept in "
        "DATA_DIR/api-key.",
    )
    simulator: bool = _s(False, "Feed the server from the built-in transaction simulator.")
    rate: float = _s(50.0, "Simulator transactions per second.")
    seed: int = _s(7, "Simulator random seed; the same seed gives the same stream.")
    fraud_rate: float = _s(0.02, "Expected share of simulated transactions that are fraudulent.")
    default_currency: str = _s("USD", "ISO 4217 currency assumed when a transaction has none.")
    review_threshold: float = _s(0.5, "Score at or above which a transaction is flagged.")
    block_threshold: float = _s(0.8, "Score at or above which a transaction is blocked.")
    batch_max: int = _s(2000, "Most transactions the detection loop scores in one batch.")
    batch_wait_ms: float = _s(
        10.0, "Longest the detection loop waits to fill a batch after its first transaction."
    )
    queue_max: int = _s(
        20000, "Transactions that may wait for detection; feeds wait when it is full."
    )
    ingest_timeout: float = _s(
        10.0,
        "Seconds an ingest request waits for its verdicts to be stored; then it gets 503 "
        "'store_unavailable' (what it sent is still stored; re-send for the verdicts).",
    )
    store_busy_timeout: float = _s(
        5.0,
        "Seconds a store write waits for a lock another process holds before it counts as "
        "failed and is retried (intake pauses meanwhile).",
    )
    max_body_bytes: int = _s(8 * 1024 * 1024, "Largest accepted request body, in bytes.")
    max_batch_records: int = _s(
        10_000,
        "Most transactions one ingest request may carry; a larger batch is refused whole "
        "(413 too_many_records) before any of it is accepted.",
    )
    ws_max_msg_size: int = _s(16 * 1024, "Largest message a WebSocket client may send, in bytes.")
    ws_heartbeat: float = _s(20.0, "Seconds between WebSocket pings; a silent peer is dropped.")
    ws_queue_max: int = _s(
        2000,
        "Messages a WebSocket client may have waiting before it is disconnected "
        "(it resumes by seq on reconnect, so it loses nothing).",
    )
    ws_stall_seconds: float = _s(
        5.0,
        "Seconds a WebSocket client may stay more than 'ws_queue_max' alerts behind before "
        "it is disconnected (1013).",
    )
    ws_rate_limit: float = _s(
        20.0,
        "WebSocket messages per second a client may send (token bucket); over it a message "
        "is refused with a 'rate_limited' error, and a sustained flood closes the socket.",
    )
    ws_rate_burst: int = _s(40, "WebSocket messages a client may send at once above the rate.")
    allowed_origins: str = _s(
        "",
        "Comma-separated origins (scheme://host[:port]) besides the server's own that may "
        "open /ws and post the login form, e.g. the public URL behind a TLS proxy. "
        "Empty: same origin only.",
    )
    session_max_age: int = _s(12 * 3600, "Seconds an analyst's login lasts.")
    cookie_secure: bool = _s(False, "Mark the session cookie Secure (set when served over TLS).")
    login_max_failures: int = _s(
        5, "Failed logins per user name within 'login_window' before it is locked (429)."
    )
    login_max_failures_per_ip: int = _s(
        20, "Failed logins per client address within 'login_window' before it is locked (429)."
    )
    login_window: float = _s(300.0, "Seconds over which failed logins are counted.")
    api_key_cache_ttl: float = _s(
        5.0,
        "Seconds a running server trusts its cached lookup of an API key: the longest a key "
        "revoked by 'fraudwatch keys revoke' keeps working.",
    )
    model: bool = _s(
        True,
        "Learn from labels with the online model and, once it has learnt enough, score with it "
        "(rules and model combined into one probability). Off: the rules alone.",
    )
    model_min_labels: int = _s(
        500, "Labels the model must have learnt before its score replaces the rules' score."
    )
    model_min_frauds: int = _s(
        20,
        "Of those, the fewest frauds (and the fewest legitimate ones) before the model's score "
        "is used.",
    )
    model_negative_ratio: float = _s(
        0.0,
        "Legitimate labels the model learns per fraud once they abound: beyond that a sample, "
        "each weighted by what it stands for (keeps it calibrated). 0, the default, learns "
        "every label: better ranking at about the same cost.",
    )
    model_memory: int = _s(
        250_000,
        "Recent transactions whose model inputs are kept in memory until their label arrives "
        "(about 300 bytes each); a label for an older one is learnt from the copy stored with "
        "its verdict.",
    )
    simulator_labels: bool = _s(
        False,
        "Hand the simulator's ground truth to the model as labels (source 'simulator') after "
        "'simulator_label_delay'. The demo turns it on; never on for real traffic.",
    )
    simulator_label_delay: float = _s(
        30.0, "Seconds after a simulated transaction before its ground-truth label is sent."
    )
    simulator_history: float = _s(
        300.0,
        "Seconds of the simulated stream's recent past that the built-in simulator scores "
        "first, as fast as it can, when the store holds no transaction yet (a fresh demo), "
        "then goes live: alerts and a model that has learnt from the start. At most 15,000 "
        "transactions. 0: none.",
    )
    dispositions: str = _s(
        "fraud,legitimate,duplicate",
        "Comma-separated outcomes an analyst may resolve an alert with (lower-case names: "
        "letters, digits, '_' or '-'). Sent to dashboards in the WebSocket 'hello'.",
    )
    rules_path: Path | None = _s(
        None,
        "Rule file, or directory of *.toml rule files, the detector scores with (see "
        "docs/rules.md). Unset: the default pack shipped with fraudwatch. An admin's "
        "POST /api/v1/rules/reload, or a SIGHUP to the server process, re-reads it without "
        "a restart.",
    )
    state_snapshot_interval: float = _s(
        300.0,
        "Seconds between snapshots of the detector's per-key state to "
        "DATA_DIR/detector-state.msgpack (also written at shutdown and on request, which "
        "`fraudwatch backup` makes, and read at start, so a restart keeps each account's "
        "history; what was stored after it is replayed: 'state_replay_max'). 0: only at "
        "shutdown and on request.",
    )
    state_replay_max: int = _s(
        1_000_000,
        "At start, the most stored transactions replayed into the detector's state: those "
        "scored after its snapshot (after a crash), or, with no snapshot, those received in "
        "the last 31 days, newest first. 0: none (after a crash the state is the last "
        "snapshot's).",
    )
    retention_days: float = _s(
        0.0,
        "Days a transaction that raised no alert is kept after the server received it; older "
        "ones are deleted with their labels and model inputs, at start and then hourly. An "
        "alert's transaction is kept with its case. A label for a deleted transaction is "
        "answered not_found. 0: keep everything.",
    )
    state_ttl_days: float = _s(
        45.0,
        "Days of event time after its last transaction that an account, merchant, device "
        "or IP is forgotten (at least 31: the longest window is 30 days).",
    )
    pipeline: Literal["batched", "naive"] = _s(
        "batched",
        "Detection design. 'naive' (one task per transaction, each verdict awaited to every "
        "client in turn) exists only as the benchmark's baseline.",
    )

    def __post_init__(self) -> None:
        if not self.host.strip():
            # An empty host listens on every address: say 0.0.0.0 (or ::) for that.
            raise ConfigError("Setting 'host' must not be empty (0.0.0.0 listens on every address)")
        if self.api_key is not None and not self.api_key.strip():
            # An empty key is no key: the server would start with no bootstrap key at all.
            raise ConfigError(
                "Setting 'api_key' must not be empty (leave it unset to have one generated "
                "in DATA_DIR/api-key)"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"Setting 'port' must be 1-65535, got {self.port}")
        if not 0 <= self.review_threshold <= self.block_threshold <= 1:
            raise ConfigError(
                "Settings 'review_threshold' and 'block_threshold' must satisfy "
                f"0 <= review <= block <= 1, got {self.review_threshold} and {self.block_threshold}"
            )
        for name in (
            "rate",
            "batch_wait_ms",
            "ws_rate_limit",
            "login_window",
            "ingest_timeout",
            "store_busy_timeout",
            "ws_stall_seconds",
            # 0 would drop every socket at its first ping, before any pong could come back.
            "ws_heartbeat",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"Setting '{name}' must be > 0, got {getattr(self, name)}")
        for name in (
            "batch_max",
            "queue_max",
            "max_body_bytes",
            "max_batch_records",
            "ws_max_msg_size",
            "ws_queue_max",
            "ws_rate_burst",
            "session_max_age",
            "login_max_failures",
            "login_max_failures_per_ip",
            "model_memory",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"Setting '{name}' must be >= 1, got {getattr(self, name)}")
        for name in (
            "model_min_labels",
            "model_min_frauds",
            "model_negative_ratio",
            "simulator_label_delay",
            "simulator_history",
            "state_replay_max",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"Setting '{name}' must be >= 0, got {getattr(self, name)}")
        if self.api_key_cache_ttl < 0:
            raise ConfigError(
                f"Setting 'api_key_cache_ttl' must be >= 0, got {self.api_key_cache_ttl}"
            )
        for origin in self.origins:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    f"Setting 'allowed_origins': {origin!r} is not an origin "
                    "(scheme://host[:port], no path)"
                )
        names = self.disposition_names
        if not names:
            raise ConfigError("Setting 'dispositions' must name at least one disposition")
        for name in names:
            if not _DISPOSITION.fullmatch(name):
                raise ConfigError(
                    f"Setting 'dispositions': {name!r} is not a valid name (lower-case letters, "
                    "digits, '_' or '-', at most 32, starting with a letter)"
                )
        if len(set(names)) != len(names):
            raise ConfigError("Setting 'dispositions' names a disposition twice")
        if not 0 <= self.fraud_rate <= 0.5:
            raise ConfigError(f"Setting 'fraud_rate' must be in [0, 0.5], got {self.fraud_rate}")
        if self.state_snapshot_interval < 0:
            raise ConfigError(
                "Setting 'state_snapshot_interval' must be >= 0, "
                f"got {self.state_snapshot_interval}"
            )
        if self.retention_days != 0 and not self.retention_days >= 1:
            raise ConfigError(
                f"Setting 'retention_days' must be 0 (keep everything) or >= 1, "
                f"got {self.retention_days}"
            )
        if self.state_ttl_days < 31:
            raise ConfigError(f"Setting 'state_ttl_days' must be >= 31, got {self.state_ttl_days}")
        if not is_currency_code(self.default_currency):
            # Given to every transaction sent without one, where ingest would refuse it.
            raise ConfigError(
                "Setting 'default_currency' must be an ISO 4217 code like USD, "
                f"got {self.default_currency!r}"
            )
        if self.pipeline not in ("batched", "naive"):
            raise ConfigError(
                f"Setting 'pipeline' must be 'batched' or 'naive', got {self.pipeline!r}"
            )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "fraudwatch.db"

    @property
    def disposition_names(self) -> tuple[str, ...]:
        """`dispositions` as a tuple, in the order given (the dashboard offers them so)."""
        return tuple(d.strip() for d in self.dispositions.split(",") if d.strip())

    @property
    def state_path(self) -> Path:
        return self.data_dir / "detector-state.msgpack"

    @property
    def origins(self) -> frozenset[str]:
        """`allowed_origins` as browsers send them: lower case, no trailing slash."""
        items = (o.strip().rstrip("/").lower() for o in self.allowed_origins.split(","))
        return frozenset(o for o in items if o)


def setting_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Settings)]


def setting_help() -> dict[str, str]:
    return {f.name: f.metadata["help"] for f in dataclasses.fields(Settings)}


def _target(name: str) -> Any:
    hint = get_type_hints(Settings)[name]
    kinds = [a for a in get_args(hint) if a is not type(None)] or [hint]
    # A Literal's arguments are its values, all strings here ('batched', 'naive').
    return str if isinstance(kinds[0], str) else kinds[0]


# What a TOML value of each type may set, and the words for each type.
_TOML_TAKES: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    bool: (bool,),
    str: (str,),
    Path: (str,),
}
_EXPECTED = {
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    str: "a string",
    Path: "a path, as a string",
}
_TOML_TYPE = {
    bool: "a boolean",
    int: "a whole number",
    float: "a decimal number",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _fits(target: Any, value: Any) -> bool:
    # TOML's true is Python's bool, which is an int: not a number here.
    return isinstance(value, _TOML_TAKES[target]) and (
        target is bool or not isinstance(value, bool)
    )


def _check_toml_type(key: str, name: str, value: Any, source: str) -> None:
    """Refuse a value of the settings file whose TOML type is not its setting's: the file
    says what it means (`port = "8109"` is text), where an environment variable is always
    text, read as its setting. A value that would pass without its quotes says so."""
    target = _target(name)
    if _fits(target, value):
        return
    got = _TOML_TYPE.get(type(value), "a date or time")
    reason = f"expected {_EXPECTED[target]}, not {got}"
    if isinstance(value, str):
        try:
            unquoted = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            unquoted = None
        if unquoted is not None and _fits(target, unquoted):
            reason += f": write {key} = {value.strip()}, without quotes"
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    raise ConfigError(f"Setting '{name}' from {source}: {shown} is not valid ({reason})")


def _coerce(name: str, value: Any, source: str) -> Any:
    target = _target(name)
    if value is None:
        return None
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if target is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            try:
                return int(value)
            except ValueError:
                # Not Python's "invalid literal for int() with base 10: 'eighty'".
                raise ValueError("expected a whole number") from None
        if target is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            try:
                number = float(value)
            except ValueError:
                # Not Python's "could not convert string to float: 'high'".
                raise ValueError("expected a number") from None
            if not math.isfinite(number):
                # TOML and float() both take nan and inf, which every check below lets pass.
                raise ValueError("expected a finite number")
            return number
        if target is Path:
            if not isinstance(value, str | os.PathLike):
                raise ValueError("expected a path, as a string")
            return Path(value).expanduser()
        return str(value)
    except ValueError as exc:
        raise ConfigError(
            f"Setting '{name}' from {source}: {value!r} is not valid ({exc})"
        ) from None


def is_base_url(url: str) -> bool:
    """Whether `url` is a server's base URL, http(s)://HOST[:PORT][/...]: what a command that
    talks to a server (`replay --target`, `backup --server`) checks before any request,
    where urllib would fail each try the same way, or with a traceback."""
    parts = urllib.parse.urlsplit(url)
    try:
        _ = parts.port  # raises on a port that is not a number, or out of range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def unknown_environment(env: Mapping[str, str] | None = None) -> list[str]:
    """`FRAUDWATCH_*` variables that name no setting: a typo there (FRAUDWATCH_RETENTION_DAY)
    would otherwise leave the default in force without a word."""
    env = os.environ if env is None else env
    known = {ENV_PREFIX + name.upper() for name in setting_names()} | {ENV_PREFIX + "CONFIG"}
    return sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    sources: dict[str, str] | None = None,
) -> Settings:
    """Build Settings from the layers; unknown names in the file are errors, not ignored.
    `sources`, if given, is filled with where each setting not left at its default came
    from ("environment FRAUDWATCH_PORT"), for a message about its value found later."""
    sources = {} if sources is None else sources
    env = os.environ if env is None else env
    names = set(setting_names())
    values: dict[str, Any] = {}
    path = config_file or (
        Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None
    )
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in names:
                raise ConfigError(f"Config file {path}: unknown setting '{key}'")
            sources[name] = f"config file {path}"
            _check_toml_type(key, name, value, sources[name])
            values[name] = _coerce(name, value, sources[name])
            if isinstance(values[name], Path) and not values[name].is_absolute():
                # Relative to the file, not to wherever the server was started from (`/`
                # under systemd): a file and the folders it names move together.
                values[name] = path.parent / values[name]
    for name in names:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            sources[name] = f"environment {ENV_PREFIX}{name.upper()}"
            values[name] = _coerce(name, raw, sources[name])
    for name, value in (flags or {}).items():
        if value is not None:
            if name not in names:
                raise ConfigError(f"Unknown setting '{name}'")
            sources[name] = f"flag --{name.replace('_', '-')}"
            values[name] = _coerce(name, value, sources[name])
    return Settings(**values)

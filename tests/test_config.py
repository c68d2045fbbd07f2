"""Settings: layered sources, clear errors naming the setting, every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, Settings, load_settings, setting_help, setting_names

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_defaults() -> None:
    settings = load_settings({}, env={})
    assert settings == Settings()
    assert settings.port == 8000
    assert settings.db_path == Path("fraudwatch-data") / "fraudwatch.db"


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "fw.toml"
    config.write_text('port = 7000\nrate = 5\nhost = "0.0.0.0"\n')
    env = {"FRAUDWATCH_PORT": "7100", "FRAUDWATCH_RATE": "9.5"}
    settings = load_settings({"port": 7200}, env=env, config_file=config)
    assert (settings.port, settings.rate, settings.host) == (7200, 9.5, "0.0.0.0")
    env_config = load_settings({}, env={"FRAUDWATCH_CONFIG": str(config)})
    assert env_config.port == 7000


def test_api_key_from_environment() -> None:
    assert load_settings({}, env={"FRAUDWATCH_API_KEY": "k-123"}).api_key == "k-123"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FRAUDWATCH_PORT": "eighty"}, "port"),
        ({"FRAUDWATCH_PORT": "70000"}, "port"),
        ({"FRAUDWATCH_COOKIE_SECURE": "perhaps"}, "cookie_secure"),
        ({"FRAUDWATCH_REVIEW_THRESHOLD": "0.9", "FRAUDWATCH_BLOCK_THRESHOLD": "0.5"}, "threshold"),
        ({"FRAUDWATCH_PIPELINE": "turbo"}, "pipeline"),
        ({"FRAUDWATCH_BATCH_MAX": "0"}, "batch_max"),
        # Given to every transaction sent without a currency, which ingest would refuse.
        ({"FRAUDWATCH_DEFAULT_CURRENCY": "usd"}, "default_currency"),
        ({"FRAUDWATCH_DEFAULT_CURRENCY": "US Dollar"}, "default_currency"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({}, env=env)


def test_a_value_of_the_wrong_kind_is_explained_in_our_words() -> None:
    # settings.md shows this message; Python's "invalid literal for int() with base 10"
    # and "could not convert string to float" followed it instead.
    with pytest.raises(ConfigError) as port:
        load_settings({}, env={"FRAUDWATCH_PORT": "eighty"})
    assert str(port.value) == (
        "Setting 'port' from environment FRAUDWATCH_PORT: 'eighty' is not valid "
        "(expected a whole number)"
    )
    with pytest.raises(ConfigError) as threshold:
        load_settings({}, env={"FRAUDWATCH_REVIEW_THRESHOLD": "high"})
    assert str(threshold.value).endswith("'high' is not valid (expected a number)")


def test_file_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings({}, env={}, config_file=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({}, env={}, config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, env={}, config_file=broken)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # Not a string: Path() raised TypeError, which reached the operator as a traceback.
        ("data_dir = 5", "Setting 'data_dir' from config file .*expected a path"),
        ('rules_path = ["a.toml"]', "Setting 'rules_path' from config file .*expected a path"),
        # TOML's nan and inf passed every range check below them.
        ("rate = nan", "Setting 'rate' from config file .*expected a finite number"),
        ("retention_days = inf", "Setting 'retention_days' .*expected a finite number"),
        # 0 closed every dashboard's socket at its first ping.
        ("ws_heartbeat = 0", "Setting 'ws_heartbeat' must be > 0"),
        # Listened on every address, and printed the URL as http://:8000/.
        ('host = ""', "Setting 'host' must not be empty"),
        # Started with no bootstrap key at all, and printed an empty one.
        ('api_key = ""', "Setting 'api_key' must not be empty"),
    ],
)
def test_bad_file_values_name_the_setting(tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "fraudwatch.toml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings({}, env={}, config_file=config)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # Read as 8109 and started: the file said something else than the operator meant
        # to write, and every other mistyped value in it would pass the same way.
        ('port = "8109"', "'8109' is not valid (expected a whole number, not a string: "
         "write port = 8109, without quotes)"),
        ('simulator = "false"', "'false' is not valid (expected true or false, not a string: "
         "write simulator = false, without quotes)"),
        ('rate = "fast"', "'fast' is not valid (expected a number, not a string)"),
        ("batch_max = 2000.0", "2000.0 is not valid (expected a whole number, not a decimal "
         "number)"),
        ('port = "true"', "'true' is not valid (expected a whole number, not a string)"),
        ("port = false", "false is not valid (expected a whole number, not a boolean)"),
        ("cookie_secure = 1", "1 is not valid (expected true or false, not a whole number)"),
        ("host = 127", "127 is not valid (expected a string, not a whole number)"),
        ("api_key = true", "true is not valid (expected a string, not a boolean)"),
        # An array or a table was a TypeError from int() or float(), with a traceback.
        ("port = [8109]", "[8109] is not valid (expected a whole number, not an array)"),
        ("rate = {per_second = 5}", "{'per_second': 5} is not valid (expected a number, not a "
         "table)"),
    ],
)  # fmt: skip
def test_a_file_value_of_the_wrong_toml_type_is_refused(
    tmp_path: Path, line: str, expected: str
) -> None:
    config = tmp_path / "fraudwatch.toml"
    config.write_text(line + "\n")
    name = line.split(" =")[0]
    with pytest.raises(ConfigError) as refused:
        load_settings({}, env={}, config_file=config)
    assert str(refused.value) == f"Setting '{name}' from config file {config}: {expected}"


def test_environment_values_are_text_and_read_as_their_setting() -> None:
    # An environment variable has no type of its own: a number there is read as one.
    env = {"FRAUDWATCH_PORT": "8109", "FRAUDWATCH_SIMULATOR": "false", "FRAUDWATCH_RATE": "5"}
    settings = load_settings({}, env=env)
    assert (settings.port, settings.simulator, settings.rate) == (8109, False, 5.0)


def test_non_finite_numbers_from_the_environment_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"Setting 'rate' from environment .*finite"):
        load_settings({}, env={"FRAUDWATCH_RATE": "nan"})
    with pytest.raises(ConfigError, match=r"Setting 'state_ttl_days' .*finite"):
        load_settings({}, env={"FRAUDWATCH_STATE_TTL_DAYS": "inf"})


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [name for name in setting_names() if f"`{name}`" not in text]
    assert not missing, f"docs/settings.md lacks {missing}"
    assert all(help_text for help_text in setting_help().values())
    for name in setting_names():
        assert f"FRAUDWATCH_{name.upper()}" in text, name


def test_the_documented_defaults_are_the_defaults() -> None:
    # The table's third column is what an operator reads before setting anything; a default
    # changed in config.py and not there would go unnoticed, so compare every row.
    import dataclasses
    import re
    import tomllib

    documented: dict[str, str] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\| `(\w+)` \| `FRAUDWATCH_\w+` \| ([^|]+) \|", line)
        if row:
            documented[row[1]] = row[2].strip().strip("`")
    assert set(documented) == set(setting_names())
    for f in dataclasses.fields(Settings):
        cell = documented[f.name]
        if cell == "unset":
            assert f.default is None, f.name
        elif isinstance(f.default, Path):
            assert Path(cell) == f.default, f.name
        else:
            value = tomllib.loads(f"v = {cell}")["v"]
            assert value == f.default and type(value) is type(f.default), (f.name, cell)


def test_the_model_settings_default_to_what_the_model_does_without_them() -> None:
    # Backtests build a ModelSlot with its own defaults; the server passes the settings. The
    # two must not drift apart, or a backtest measures another model than the server runs.
    import inspect

    from server.detection.model import ModelSlot

    defaults = inspect.signature(ModelSlot).parameters
    settings = Settings()
    for name in ("memory", "min_labels", "min_frauds", "negative_ratio"):
        assert getattr(settings, f"model_{name}") == defaults[name].default, name


def test_sources_say_where_each_setting_given_came_from(tmp_path: Path) -> None:
    config = tmp_path / "fraudwatch.toml"
    config.write_text('rules_path = "/etc/rules"\nport = 8001\nseed = 3\n')
    sources: dict[str, str] = {}
    settings = load_settings(
        {"seed": 4},
        env={"FRAUDWATCH_PORT": "8002"},
        config_file=config,
        sources=sources,
    )
    assert (settings.port, settings.seed, settings.rules_path) == (8002, 4, Path("/etc/rules"))
    # The layer whose value is in force; a setting left at its default has no entry.
    assert sources == {
        "rules_path": f"config file {config}",
        "port": "environment FRAUDWATCH_PORT",
        "seed": "flag --seed",
    }


def test_a_relative_path_in_the_file_is_relative_to_the_file(tmp_path: Path) -> None:
    """Under systemd the server starts in `/`: `data_dir = "data"` in /etc/fraudwatch's file
    made /data. A path in the file is the file's folder's; from the environment or a flag,
    the working directory's, as a shell user expects."""
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "fraudwatch.toml"
    config.write_text('data_dir = "data"\nrules_path = "rules/pack.toml"\n')
    settings = load_settings({}, env={}, config_file=config)
    assert settings.data_dir == folder / "data"
    assert settings.rules_path == folder / "rules" / "pack.toml"
    config.write_text(f'data_dir = "{tmp_path / "abs"}"\n')
    assert load_settings({}, env={}, config_file=config).data_dir == tmp_path / "abs"
    env = {"FRAUDWATCH_DATA_DIR": "here"}
    assert load_settings({}, env=env, config_file=config).data_dir == Path("here")
    assert load_settings({"data_dir": "there"}, env={}).data_dir == Path("there")

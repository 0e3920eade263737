"""Settings: api.md's names and defaults, the MySQL URL, one clear line for a bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from session_service.config import DEFAULT_DATABASE_URL, ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


def test_defaults_match_the_contract() -> None:
    settings = load_settings()
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.llm_provider == "offline"
    assert settings.ragflow_enabled is False
    assert settings.ragflow_timeout_seconds == 60
    assert settings.agent_max_age_seconds == 1800
    assert settings.agent_cleanup_interval_seconds == 300
    assert settings.agent_pool_max_size == 1000
    assert settings.turn_lock_timeout_seconds == 120
    assert settings.auth_jwt_secret is None
    assert settings.dev_mode
    assert settings.log_file == "logs/app.log"
    assert settings.mysql_password is None


def test_mysql_variables_build_a_utf8mb4_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    monkeypatch.setenv("MYSQL_PORT", "3307")
    monkeypatch.setenv("MYSQL_USER", "svc")
    monkeypatch.setenv("MYSQL_PASSWORD", "p@ss:w/rd")
    monkeypatch.setenv("MYSQL_DATABASE", "chat")
    assert load_settings().database_url == (
        "mysql+aiomysql://svc:p%40ss%3Aw%2Frd@db.internal:3307/chat?charset=utf8mb4"
    )


def test_database_url_wins_over_mysql_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    monkeypatch.setenv("DATABASE_URL", "mysql+aiomysql://a@b/c")
    assert load_settings().database_url == "mysql+aiomysql://a@b/c"


def test_mysql_host_without_user_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_HOST", "db.internal")
    with pytest.raises(ConfigError, match="MYSQL_USER"):
        load_settings()


def test_dataset_ids_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGFLOW_DATASET_IDS", " ds1, ds2 ,,ds3")
    assert load_settings().ragflow_dataset_ids == ["ds1", "ds2", "ds3"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENT_POOL_MAX_SIZE", "abc"),
        ("AGENT_POOL_MAX_SIZE", "0"),
        ("AGENT_MAX_AGE_SECONDS", "-5"),
        ("LLM_PROVIDER", "magic"),
        ("MYSQL_PORT", "70000"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert name in message
    assert repr(value) in message
    assert "\n" not in message


def test_every_setting_is_in_env_example_and_the_readme() -> None:
    root = Path(__file__).resolve().parent.parent
    example = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (root / ".env.example").read_text(), re.M)
    )
    readme = (root / "README.md").read_text()
    contract = (root / "docs" / "api.md").read_text()
    for name in (field.upper() for field in Settings.model_fields):
        assert name in example, f"{name} is missing from .env.example"
        assert f"`{name}`" in readme, f"{name} is missing from the README"
        assert f"`{name}`" in contract, f"{name} is missing from docs/api.md"


def test_jwks_needs_issuer_and_audience_and_ends_development_mode() -> None:
    with pytest.raises(ConfigError, match="AUTH_ISSUER and AUTH_AUDIENCE"):
        load_settings(auth_jwks_url="https://idp.example/jwks")
    settings = load_settings(
        auth_jwks_url="https://idp.example/jwks", auth_issuer="i", auth_audience="a"
    )
    assert not settings.dev_mode
    assert load_settings().dev_mode


def test_database_hosts_are_hosts_with_ports() -> None:
    settings = load_settings(database_hosts="db1:3307, db2 ,10.0.0.3:3306")
    assert settings.database_host_list == [("db1", 3307), ("db2", 3306), ("10.0.0.3", 3306)]
    assert load_settings().database_host_list == []
    for bad in ("db1:", ":3306", "db1:port", "db1:70000"):
        with pytest.raises(ConfigError, match="DATABASE_HOSTS"):
            load_settings(database_hosts=bad)


def test_a_database_url_may_name_the_cluster_nodes() -> None:
    """`DATABASE_URL` with several hosts is the URL of the first and DATABASE_HOSTS of all."""
    settings = load_settings(database_url="mysql+aiomysql://u:p%40w@db1:3307,db2,10.0.0.3/sessions")
    assert settings.database_url == "mysql+aiomysql://u:p%40w@db1:3307/sessions"
    assert settings.database_host_list == [("db1", 3307), ("db2", 3306), ("10.0.0.3", 3306)]
    with pytest.raises(ConfigError, match="DATABASE_URL: 'db2:x' is not host or host:port"):
        load_settings(database_url="mysql+aiomysql://u@db1,db2:x/sessions")
    with pytest.raises(ConfigError, match="leave DATABASE_HOSTS unset"):
        load_settings(database_url="mysql+aiomysql://u@db1,db2/sessions", database_hosts="db3")

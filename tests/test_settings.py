"""Settings: defaults, environment, validation, and the docs table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.settings import Settings, SettingsError, describe, markdown_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_every_setting_has_a_safe_default_and_a_description():
    settings = Settings()
    for name, env, default, doc in describe():
        assert getattr(settings, name) == default
        assert env == "TETHER_" + name.upper()
        assert doc.endswith(".")


def test_environment_variables_set_settings_by_type():
    settings = Settings.from_env(
        {
            "TETHER_MAX_MESSAGE_SIZE": "0x10000",
            "TETHER_DEBUG": "yes",
            "TETHER_SHUTDOWN_TIMEOUT": "2.5",
        }
    )
    assert settings.max_message_size == 65536
    assert settings.debug is True
    assert settings.shutdown_timeout == 2.5


def test_explicit_values_win_over_the_environment():
    settings = Settings.from_env({"TETHER_THREAD_POOL_SIZE": "3"}, thread_pool_size=5)
    assert settings.thread_pool_size == 5


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TETHER_THREAD_POOL_SIZE": "many"}, "cannot read 'many' as int"),
        ({"TETHER_DEBUG": "perhaps"}, "cannot read 'perhaps' as bool"),
        ({"TETHER_MAX_MESSAGE_SIZE": "-1"}, "must not be negative"),
        ({"TETHER_MAX_MESSAGE_SIZE": "10"}, "at least 1024"),
        ({"TETHER_THREAD_POOL_SIZE": "0"}, "at least 1"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_naming_it(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_an_unknown_setting_is_refused():
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_env({}, max_bananas=3)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().debug = True  # type: ignore[misc]


def test_docs_settings_md_holds_the_current_table():
    assert markdown_table() in DOCS.read_text(), (
        "docs/settings.md is stale: regenerate its table with `python -m tether.settings`"
    )

"""Settings are validated at start-up, and a bad one names its variable."""

from __future__ import annotations

import pytest

from sendgrid_operator.controller.settings import Settings, SettingsError


def test_defaults_and_parsing() -> None:
    s = Settings.from_env({"SGOP_WATCH_NAMESPACES": "a, b,", "SGOP_JOB_COMMAND": "python -m x job"})
    assert s.watch_namespaces == ("a", "b")
    assert s.job_command == ("python", "-m", "x", "job")
    assert s.peering is None


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SGOP_HTTP_PORT": "eighty"}, "SGOP_HTTP_PORT"),
        ({"SGOP_LOG_FORMAT": "xml"}, "SGOP_LOG_FORMAT"),
        ({"SGOP_REPORT_URL": "ftp://x"}, "SGOP_REPORT_URL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)

from __future__ import annotations

import pytest

from roomlog.settings import Settings


def test_reads_env_with_types_and_port() -> None:
    s = Settings.from_env({"ROOMLOG_PAGE_SIZE": "10", "ROOMLOG_MAX_WAIT": "2.5",
                           "ROOMLOG_WS_COMPRESSION": "yes", "PORT": "9000"})
    assert (s.page_size, s.max_wait, s.ws_compression, s.port) == (10, 2.5, True, 9000)
    assert Settings.from_env({}, page_size=3).page_size == 3


def test_bad_values_stop_with_the_setting_named() -> None:
    with pytest.raises(SystemExit, match="ROOMLOG_PAGE_SIZE"):
        Settings.from_env({"ROOMLOG_PAGE_SIZE": "many"})


def test_auto_migrate_only_for_sqlite() -> None:
    assert Settings.from_env({}).migrates_on_start
    assert not Settings.from_env({"ROOMLOG_DATABASE_URL": "postgresql+asyncpg://h/db"}
                                 ).migrates_on_start


def test_every_setting_is_described() -> None:
    rows = Settings.describe()
    assert len(rows) > 20 and all(name.startswith("ROOMLOG_") and help for name, _, help in rows)

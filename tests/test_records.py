"""The records database: created private, appended to off the caller's thread, bounded, never replaced."""
from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from broke.records import Appender, RecordsError, open_records, prune, records_path

SCHEMA = "CREATE TABLE IF NOT EXISTS things (at REAL NOT NULL, name TEXT NOT NULL);"
INSERT = "INSERT INTO things (at, name) VALUES (?, ?)"


def names(home: Path) -> list[str]:
    return [row[0] for row in open_records(home, SCHEMA).execute("SELECT name FROM things ORDER BY rowid")]


def test_the_database_is_created_private_in_wal_mode(tmp_path: Path) -> None:
    connection = open_records(tmp_path / "home", SCHEMA)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(records_path(tmp_path / "home").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


def test_an_appender_writes_rows_from_its_own_thread_and_flush_waits_for_them(tmp_path: Path) -> None:
    appender = Appender(tmp_path, SCHEMA, INSERT, table="things")
    callers = {threading.get_ident()}
    for number in range(600):
        appender.add((float(number), f"n{number}"))
    assert appender.flush()
    assert names(tmp_path) == [f"n{number}" for number in range(600)]
    assert appender.thread.ident not in callers
    appender.close()
    assert not appender.thread.is_alive()


def test_a_row_made_by_a_function_is_made_on_the_writer_thread_and_one_that_fails_is_left_out(
        tmp_path: Path) -> None:
    appender = Appender(tmp_path, SCHEMA, INSERT, table="things", linger_s=0.01)
    made_on: list[int] = []

    def made() -> tuple[float, str]:
        made_on.append(threading.get_ident())
        return 1.0, "made"

    def fails() -> tuple[float, str]:
        raise ValueError("no row")

    for row in ((0.0, "given"), made, fails, (2.0, "after")):
        appender.add(row)
    assert appender.flush()
    assert names(tmp_path) == ["given", "made", "after"]
    assert made_on == [appender.thread.ident]
    appender.close()


def test_a_bounded_table_keeps_its_newest_rows(tmp_path: Path) -> None:
    appender = Appender(tmp_path, SCHEMA, INSERT, table="things", keep=300)
    for number in range(1000):
        appender.add((float(number), f"n{number}"))
    appender.close()
    kept = names(tmp_path)
    assert kept[-1] == "n999" and 300 <= len(kept) < 1000
    connection = open_records(tmp_path, SCHEMA)
    assert prune(connection, "things", 10) == len(kept) - 10
    assert names(tmp_path) == [f"n{number}" for number in range(990, 1000)]


def test_a_file_that_is_not_a_database_is_reported_and_kept(tmp_path: Path) -> None:
    path = records_path(tmp_path)
    path.write_bytes(b"this is not sqlite\n" * 100)
    with pytest.raises(RecordsError, match="records.sqlite.*move it aside"):
        open_records(tmp_path, SCHEMA)
    assert path.read_bytes() == b"this is not sqlite\n" * 100

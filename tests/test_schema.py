"""Tier 1: the migrations of several folders merged into one sequence (no I/O)."""

from __future__ import annotations

import pytest

from events.schema import merged, migrations


def test_folders_merge_by_version() -> None:
    found = merged(
        [
            ("events/migrations/0001_log.sql", "a"),
            ("projections/migrations/0002_views.sql", "b"),
            ("events/migrations/0003_more.sql", "c"),
            ("events/migrations/README", "not a migration"),
        ]
    )
    assert [(m.version, m.name, m.sql) for m in found] == [
        (1, "log", "a"),
        (2, "views", "b"),
        (3, "more", "c"),
    ]


def test_one_version_in_two_folders_is_refused() -> None:
    with pytest.raises(RuntimeError, match="0002 is defined twice"):
        merged([("events/migrations/0002_a.sql", "a"), ("projections/migrations/0002_b.sql", "b")])


def test_a_gap_is_refused() -> None:
    with pytest.raises(RuntimeError, match="0002 is missing"):
        merged([("events/migrations/0001_a.sql", "a"), ("events/migrations/0003_b.sql", "b")])


def test_the_shipped_schema_keeps_its_versions_and_names() -> None:
    # Databases migrated before the read models' files moved recorded these.
    assert [(m.version, m.name) for m in migrations()] == [
        (1, "event_log"),
        (2, "state_cache"),
        (3, "read_models"),
        (4, "version_lineage"),
        (5, "provenance"),
        (6, "lineage_chains"),
        (7, "projection_progress"),
        (8, "document_json"),
        (9, "parallel_rebuild"),
        (10, "projection_quarantine"),
        (11, "stream_records_index"),
        (12, "checkpoint_origin"),
    ]

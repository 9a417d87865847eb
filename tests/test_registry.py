"""The registry of read models: one list, each entry built from one ``Needs``."""

from __future__ import annotations

import pytest

from events.postgres import PostgresEventStore
from projections import registry
from projections.registry import Needs


async def test_every_read_model_builds_from_one_needs_under_its_name(store: PostgresEventStore):
    projections = registry.build(Needs(store))
    assert [p.name for p in projections] == list(registry.NAMES)
    assert len(set(registry.NAMES)) == len(registry.NAMES)
    assert all(p.tables for p in projections)


async def test_a_subset_is_built_in_registry_order(store: PostgresEventStore):
    names = list(reversed(registry.NAMES))[:2]
    built = [p.name for p in registry.build(Needs(store), names)]
    assert built == [n for n in registry.NAMES if n in names]


def test_the_shareable_read_model_is_registered_and_unknown_names_are_refused():
    assert registry.read_model(registry.SHAREABLE).name == registry.SHAREABLE
    with pytest.raises(KeyError):
        registry.read_model("nope")

"""The read models: the one list that the projection worker folds, that
``collab projections status`` reports and ``rebuild`` rebuilds, and that ``/ready``
waits for.

A new read model is a module in this package (its projection), its migration and an
entry in :data:`READ_MODELS`; nothing in ``collab/`` names it (docs/architecture.md).
Each entry names the projection's class and what it needs to be built, taken from
:class:`Needs` by keyword, so a process that builds them all passes one :class:`Needs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from events.checkpoints import Signer
from events.store import EventStore
from projections import audit_log, lineage, projects
from projections.audit_log import AuditLogProjection
from projections.fold import Projection
from projections.lineage import LineageProjection
from projections.projects import ProjectsProjection


@dataclass(frozen=True, slots=True)
class Needs:
    """Everything a read model may need to be built; each takes what its entry names."""

    store: EventStore
    #: ``projects``: store a project's document state every this many updates
    state_every: int = 500
    #: ``audit_log``: signs its checkpoints; None signs nothing and checks the roots a
    #: fold passes (a rebuild outside the server)
    signer: Signer | None = None
    #: ``audit_log``: sign a checkpoint every this many events ...
    checkpoint_every: int = 1000
    #: ... or once the newest unsealed event is this old (seconds)
    checkpoint_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class ReadModel:
    name: str
    #: the projection's class (or a function building it), called with ``needs`` by keyword
    factory: Callable[..., Projection]
    #: the fields of :class:`Needs` it takes
    needs: tuple[str, ...] = ()

    def build(self, needs: Needs) -> Projection:
        return self.factory(**{field: getattr(needs, field) for field in self.needs})


#: every read model, in the order they are built and reported
READ_MODELS: Final = (
    ReadModel(projects.NAME, ProjectsProjection, ("store", "state_every")),
    ReadModel(lineage.NAME, LineageProjection),
    ReadModel(
        audit_log.NAME,
        AuditLogProjection,
        ("signer", "checkpoint_every", "checkpoint_seconds"),
    ),
)
NAMES: Final = tuple(model.name for model in READ_MODELS)
#: the read model whose rows and state each belong to one stream, so that several
#: processes may fold it, each a share of the streams (:mod:`projections.sharded`);
#: ``lineage`` links events across streams and ``audit_log`` chains the whole log
SHAREABLE: Final = projects.NAME


def read_model(name: str) -> ReadModel:
    """The entry named ``name``; KeyError if there is none."""
    for model in READ_MODELS:
        if model.name == name:
            return model
    raise KeyError(name)


def build(needs: Needs, names: Iterable[str] = NAMES) -> list[Projection]:
    """The projections named (all by default), in :data:`NAMES` order."""
    chosen = set(names)
    return [model.build(needs) for model in READ_MODELS if model.name in chosen]

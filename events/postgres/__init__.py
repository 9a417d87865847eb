"""The PostgreSQL event store: the only package that imports asyncpg.

Driver errors are translated here into the store's own error tree
(``events.errors``). Appends go through the server-side function ``collab_append``
(one round trip); see ``migrations/0001_event_log.sql`` for why positions are
commit-ordered and dense. One module per concern; :class:`PostgresEventStore`
(``store.py``) wires them together.
"""

from events.postgres.appender import BeforeCommit
from events.postgres.migrations import MigrationStatus
from events.postgres.store import PostgresEventStore
from events.postgres.subscriptions import NOTIFY_CHANNEL
from events.postgres.verify import VerifyReport

__all__ = [
    "NOTIFY_CHANNEL",
    "BeforeCommit",
    "MigrationStatus",
    "PostgresEventStore",
    "VerifyReport",
]

"""Prometheus metrics of one server, in a registry of its own (one per app)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("collab_connections", "Open WebSocket connections", registry=r)
        self.rooms = Gauge("collab_rooms", "Rooms loaded in memory", registry=r)
        self.updates_received = Counter(
            "collab_updates_received",
            "Document updates received from clients and the API",
            registry=r,
        )
        self.updates_committed = Counter(
            "collab_updates_committed", "Document updates appended to the event log", registry=r
        )
        self.updates_broadcast = Counter(
            "collab_updates_broadcast", "Update frames queued to clients after commit", registry=r
        )
        self.commit_batch_size = Histogram(
            "collab_commit_batch_size",
            "Events per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=r,
        )
        self.commit_latency = Histogram(
            "collab_commit_seconds",
            "Time of one group commit (the batched append)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.refused = Counter(
            "collab_refused_messages", "Messages refused, by reason", ["reason"], registry=r
        )
        self.intake_paused = Gauge(
            "collab_intake_paused",
            "1 while editors' sockets are not read because updates wait for the database",
            registry=r,
        )
        self.paused_sockets = Gauge(
            "collab_paused_sockets",
            "Editors' sockets not read for now because updates wait for the database (the"
            " busiest first)",
            registry=r,
        )
        self.corrected = Counter(
            "collab_corrected_values",
            "Values outside the document schema that a correcting update put back or removed",
            registry=r,
        )
        self.room_load_seconds = Histogram(
            "collab_room_load_seconds", "Time to load a room from the log", registry=r
        )
        self.room_load_skipped = Counter(
            "collab_room_load_skipped_updates",
            "Stored updates left out of a room's document because they cannot be applied",
            registry=r,
        )
        self.fanout_messages = Counter(
            "collab_fanout_messages",
            "Messages of the cross-node fan-out, by direction (out: published, heartbeats"
            " included; in: updates, presence and access changes from other nodes)",
            ["direction"],
            registry=r,
        )
        self.fanout_dropped = Counter(
            "collab_fanout_dropped",
            "Fan-out messages not published (Redis unreachable or the outbox full); the"
            " other nodes read those updates from the log",
            registry=r,
        )
        self.fanout_bad = Counter(
            "collab_fanout_bad_messages", "Fan-out messages dropped as unreadable", registry=r
        )
        self.forwarded = Counter(
            "collab_forwarded_updates",
            "Updates handed to the node that appends their project's updates (out: sent"
            " to that home node; in: other nodes forwarded here)",
            ["direction"],
            registry=r,
        )
        for direction in ("out", "in"):
            self.forwarded.labels(direction)  # exported at 0 before the first
        self.forward_fallbacks = Counter(
            "collab_forward_fallbacks",
            "Forwarded updates this node appended itself after all (no answer in time,"
            " the home node lost or declining, the fan-out down)",
            registry=r,
        )
        self.fanout_connected = Gauge(
            "collab_fanout_connected", "1 while the fan-out reaches Redis (0: alone)", registry=r
        )
        self.gap_reads = Counter(
            "collab_room_gap_reads",
            "Reads of the log for versions a room missed (neither its own commits nor the"
            " fan-out brought them)",
            registry=r,
        )
        self.projection_quarantined = Gauge(
            "collab_projection_quarantined_events",
            "Events a projection set aside because they cannot be folded (read at scrape)",
            ["projection"],
            registry=r,
        )
        self.audit_key_mismatch = Gauge(
            "collab_audit_key_mismatch",
            "1 when this node's audit key is not the one that signed the log's newest"
            " checkpoint: it refuses to seal while it leads (read at scrape)",
            registry=r,
        )

    def observe_commit(self, events: int, seconds: float) -> None:
        """One group commit written: its events and how long its write took."""
        self.commit_batch_size.observe(events)
        self.commit_latency.observe(seconds)

    def key_mismatch(self, *, refused: bool) -> None:
        self.audit_key_mismatch.set(1 if refused else 0)

    def quarantined(self, names: Iterable[str], counts: Mapping[str, int]) -> None:
        """Set the quarantine gauge of each projection in ``names`` from ``counts``."""
        for name in names:
            self.projection_quarantined.labels(name).set(counts.get(name, 0))

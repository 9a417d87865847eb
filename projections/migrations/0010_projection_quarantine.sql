-- Events a projection could not fold and set aside, so that its fold goes on past them
-- (projections.quarantine). The log is append-only: an event stored before a fold could
-- handle it (a Yjs update that decodes but cannot be applied, a value a column refuses)
-- stays there for good, and a read model that retried it forever would never move
-- again. Each row is written in the transaction that moves the projection's checkpoint
-- past the event; a rebuild deletes the projection's rows with its tables and finds
-- them again. /ready, `collab projections status` and the metrics list them.
create table projection_quarantine (
    projection text not null,
    position bigint not null,
    stream_id text not null,
    event_type text not null,
    reason text not null,
    quarantined_at timestamptz not null default now(),
    primary key (projection, position)
);

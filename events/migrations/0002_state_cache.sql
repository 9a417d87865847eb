-- A derived, rebuildable cache: the encoded state of a stream as of one version, so
-- that loading a long stream reads the cache plus the events after it. It holds
-- nothing that is not in the events table; truncating it loses nothing.

create table state_cache (
    stream_id text primary key,
    version bigint not null check (version > 0),
    position bigint not null check (position > 0),
    state bytea not null,
    saved_at timestamptz not null default now()
);

-- A stream's events other than document updates (its creation, members, snapshots,
-- analyses, rollbacks) are few; document updates are almost all of a project's events.
-- Authorization reads a project's member events on every request and connection: this
-- partial index makes that read a handful of index entries however long the project's
-- history, and costs nothing on the hot path (doc.updated rows are not in it).
create index if not exists events_stream_records_idx
    on events (stream_id, stream_version)
 where event_type <> 'doc.updated';

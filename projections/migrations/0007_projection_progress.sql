-- Projections may run in another process than the server answering reads (a worker
-- process, by default, or another machine). What a reader needs to know of them is
-- therefore kept here, next to the checkpoint, instead of in the runner's memory:
-- whether the projection is running or failing, the last error and how many times in
-- a row the same batch failed. A moved checkpoint is announced on the channel
-- collab_projections as 'name:position' (delivered when the batch commits), so a
-- read with ?min_position=N wakes as soon as its event is folded.

alter table projection_checkpoints
    add column state text not null default 'starting'
        check (state in ('starting', 'running', 'failing', 'stopped')),
    add column error text,
    add column failures integer not null default 0;

create function collab_checkpoint_moved() returns trigger
language plpgsql as $$
begin
    perform pg_notify('collab_projections', new.name || ':' || new.position::text);
    return null;
end;
$$;

create trigger projection_checkpoints_moved
    after insert or update of position on projection_checkpoints
    for each row execute function collab_checkpoint_moved();

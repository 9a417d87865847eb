-- `collab projections rebuild --jobs N` folds the projects read model in N processes,
-- each over its own share of the project streams with a checkpoint row of its own
-- ('projects#i/N'). While they run, the projection's own row says 'rebuilding': a
-- runner that finds it so leaves the batch alone until the rebuild moves the
-- checkpoint to the head it folded to (or, when the rebuilding command died, empties
-- the read model and starts it over: see projections.runner).
alter table projection_checkpoints drop constraint projection_checkpoints_state_check;
alter table projection_checkpoints add constraint projection_checkpoints_state_check
    check (state in ('starting', 'running', 'failing', 'stopped', 'rebuilding'));

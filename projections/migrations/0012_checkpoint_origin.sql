-- Checkpoints as C2SP signed notes (tlog-checkpoint): the origin line they were signed
-- with. Checkpoints signed before have none; their signature covers the JSON statement
-- of events/checkpoints.py, and they keep verifying as such. The table stays
-- append-only (its triggers refuse UPDATE, DELETE and TRUNCATE; adding a column is not
-- one of them).
alter table audit_checkpoints add column origin text;

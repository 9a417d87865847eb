-- The projects projection writes each active project's whole document once per batch
-- it folds. As jsonb, every write parsed the text into jsonb and pglz-compressed it:
-- for 100 documents of 32 kB, 150-180 ms of PostgreSQL's time per batch, about a
-- tenth of a catch-up over a long log. Nothing queries inside these documents (the
-- parts SQL queries live in project_tracks, project_clips and project_effects; readers
-- decode the whole text), so they are stored as json (text, checked on the way in)
-- and, for the current one, uncompressed: 30-45 ms for the same batch, and reads
-- return the stored text as it is. The price is disk: about 20 times more for the one
-- current document per project. Stored states are written every few hundred versions
-- and kept: they stay compressed.
alter table projects alter column document type json using document::json;
alter table projects alter column document set storage external;
alter table project_states alter column document type json using document::json;

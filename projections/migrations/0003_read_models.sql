-- Read models of the projections (projections/). Everything here is derived from the
-- events table and can be dropped and rebuilt (`collab projections rebuild`); each
-- projection writes its rows and its checkpoint in one transaction. There are no
-- foreign keys between them: a batch may write a project's parts before its row, and
-- a rebuild empties all of them together.

create table projection_checkpoints (
    name text primary key,
    -- global position of the last event folded into the read model
    position bigint not null default 0 check (position >= 0),
    updated_at timestamptz not null default now()
);

-- The current project: one row each, with the document as JSON.
create table projects (
    project_id uuid primary key,
    name text not null,
    owner text not null,
    created_at timestamptz not null,
    created_position bigint not null,
    updated_at timestamptz not null,
    -- stream version and global position of the last event of the project folded
    version bigint not null,
    position bigint not null,
    -- stream version of the last event that changed the document
    doc_version bigint not null,
    -- stream version of the newest row in project_states
    state_version bigint not null default 0,
    tempo double precision,
    time_signature text,
    key text,
    sample_rate integer,
    document jsonb not null
);
create index projects_position_idx on projects (position desc);
create index projects_name_idx on projects (lower(name));

create table project_members (
    project_id uuid not null,
    member text not null,
    role text not null,
    granted_at timestamptz not null,
    primary key (project_id, member)
);
create index project_members_member_idx on project_members (member);

create table project_tracks (
    project_id uuid not null,
    track_id text not null,
    -- place in track_order (tracks missing from it come last, by id)
    ordinal integer not null,
    name text,
    kind text,
    instrument text,
    color text,
    volume_db double precision,
    pan double precision,
    mute boolean,
    solo boolean,
    armed boolean,
    clip_count integer not null,
    note_count integer not null,
    effect_count integer not null,
    primary key (project_id, track_id)
);

create table project_clips (
    project_id uuid not null,
    track_id text not null,
    clip_id text not null,
    name text,
    start_beats double precision,
    length_beats double precision,
    source text,
    note_count integer not null,
    primary key (project_id, track_id, clip_id)
);

create table project_effects (
    project_id uuid not null,
    track_id text not null,
    ordinal integer not null,
    effect_id text,
    type text,
    enabled boolean,
    params jsonb not null,
    primary key (project_id, track_id, ordinal)
);

create table project_snapshots (
    project_id uuid not null,
    name text not null,
    description text not null,
    version bigint not null,
    position bigint not null,
    daid text not null,
    actor text not null,
    created_at timestamptz not null,
    primary key (project_id, name)
);

create table project_analyses (
    project_id uuid not null,
    analysis_type text not null,
    count integer not null,
    last_version bigint not null,
    primary key (project_id, analysis_type)
);

-- One row per event of a project, with what it changed.
create table project_history (
    project_id uuid not null,
    version bigint not null,
    position bigint not null unique,
    recorded_at timestamptz not null,
    actor text not null,
    agent_id text not null,
    event_type text not null,
    daid text not null,
    -- structured changes: [{op, path, old, new, where}] (see projections/changes.py)
    changes jsonb not null,
    summary text[] not null,
    -- how a document event changed the JSON view, replayable (projections/changes.py
    -- apply_patch); null for other events
    patch jsonb,
    primary key (project_id, version)
);

-- The document as of a version, every N versions, as a Yjs state (to load a project
-- into the projection, and for rollback) and as JSON: time travel reads the nearest
-- JSON view and replays the patches of the few versions after it.
create table project_states (
    project_id uuid not null,
    version bigint not null,
    position bigint not null,
    state bytea not null,
    document jsonb not null,
    primary key (project_id, version)
);

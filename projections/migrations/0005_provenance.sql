-- Provenance and audit read models. Everything here except audit_checkpoints is
-- derived from the log and emptied by `collab projections rebuild`.

-- Analyses, one row each (projection `projects`; project_analyses keeps the counts).
create table project_analysis_results (
    project_id uuid not null,
    position bigint primary key,
    event_version bigint not null,
    daid text not null,
    analysis_type text not null,
    target_version bigint not null,
    target_daid text,
    track_id text,
    clip_id text,
    inputs jsonb not null,
    results jsonb not null,
    tool jsonb not null,
    actor text not null,
    recorded_at timestamptz not null
);
create index project_analysis_results_project_idx
    on project_analysis_results (project_id, analysis_type, position);

-- The DAID lineage graph (projection `lineage`). A node is an event of the log, or a
-- DAID that events name as a parent but that was minted elsewhere (known = false).
create table lineage_nodes (
    daid text primary key,
    known boolean not null,
    -- the event's position; for an external DAID, where it was first named
    position bigint not null,
    stream_id text,
    project_id uuid,
    stream_version bigint,
    event_type text,
    entity_type text not null,
    entity_id text not null,
    agent_id text not null,
    actor text,
    activity text not null,
    tool jsonb,
    -- what the record says about itself (entity and content hash, analysis target, ...)
    details jsonb not null,
    recorded_at timestamptz not null
);
create index lineage_nodes_position_idx on lineage_nodes (position);
create index lineage_nodes_time_idx on lineage_nodes (recorded_at);

-- child derives from parent; position is the child's event (edges are never removed).
create table lineage_edges (
    child text not null,
    parent text not null,
    relation text not null,
    position bigint not null,
    primary key (child, parent)
);
create index lineage_edges_parent_idx on lineage_edges (parent, child);

-- The global Merkle log over event positions (RFC 6962), projection `audit_log`:
-- every complete subtree, leaves at level 0 (leaf index = position - 1).
create table audit_nodes (
    level smallint not null,
    index bigint not null,
    hash bytea not null,
    primary key (level, index)
);

-- Signed tree heads. Not derived: each is a statement made at a moment with a key, and
-- what auditors keep; a rebuild leaves them alone and verification checks the log
-- against them. Append-only like the events.
create table audit_checkpoints (
    tree_size bigint primary key check (tree_size > 0),
    root bytea not null,
    signed_at timestamptz not null,
    key_id text not null,
    signature bytea not null
);

create trigger audit_checkpoints_append_only
    before update or delete on audit_checkpoints
    for each row execute function events_refuse_change();

create trigger audit_checkpoints_no_truncate
    before truncate on audit_checkpoints
    for each statement execute function events_refuse_change();

-- A lineage walk: the nodes reached from p_start along edges towards parents (p_up)
-- or children, each with the depth at which it was first reached, its row and its
-- edges towards parents (as 'parent relation' texts). Every path stops at p_depth and
-- the walk after p_budget rows (a node reached by several paths is read once per path
-- and depth), so no graph, cyclic or dense, can make it run away; rows_read =
-- p_budget means it was cut short. One call, one round trip. The planner settings pin
-- index lookups: a plan chosen while the tables are small (a hash join over a
-- sequential scan, repeated at every level) would be kept for a walk a thousand
-- levels deep.
create function lineage_walk(
    p_start text, p_depth integer, p_as_of bigint, p_budget integer, p_limit integer,
    p_up boolean
) returns table (
    daid text, depth integer, rows_read bigint, known boolean, "position" bigint,
    stream_id text, project_id uuid, stream_version bigint, event_type text,
    entity_type text, entity_id text, agent_id text, actor text, activity text,
    tool jsonb, details jsonb, recorded_at timestamptz, up text[]
)
language plpgsql stable
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    nodes text[];
    levels integer[];
    total bigint;
begin
    -- Two branches that differ only in the edge's direction: a join column chosen by
    -- a parameter (a CASE) would lose its index.
    if p_up then
        with recursive walk(node, level) as (
            select p_start, 0
            union
            select e.parent, w.level + 1
              from walk w join lineage_edges e on e.child = w.node
             where w.level < p_depth and e.position <= p_as_of
        ), reached as (
            select r.node, min(r.level) as level, (sum(count(*)) over ())::bigint as total
              from (select node, level from walk limit p_budget) as r
             group by r.node
             order by 2, 1
             limit p_limit
        )
        select array_agg(x.node), array_agg(x.level), max(x.total)
          into nodes, levels, total from reached x;
    else
        with recursive walk(node, level) as (
            select p_start, 0
            union
            select e.child, w.level + 1
              from walk w join lineage_edges e on e.parent = w.node
             where w.level < p_depth and e.position <= p_as_of
        ), reached as (
            select r.node, min(r.level) as level, (sum(count(*)) over ())::bigint as total
              from (select node, level from walk limit p_budget) as r
             group by r.node
             order by 2, 1
             limit p_limit
        )
        select array_agg(x.node), array_agg(x.level), max(x.total)
          into nodes, levels, total from reached x;
    end if;
    return query
    select x.node, x.level, total, n.known, n.position, n.stream_id, n.project_id,
           n.stream_version, n.event_type, n.entity_type, n.entity_id, n.agent_id,
           n.actor, n.activity, n.tool, n.details, n.recorded_at,
           array(select e.parent || ' ' || e.relation from lineage_edges e
                  where e.child = x.node and e.position <= p_as_of order by e.parent)
      from unnest(nodes, levels) as x(node, level)
      join lineage_nodes n on n.daid = x.node;
end;
$$;

-- Version chains in the lineage read model, so that a deep walk costs a range scan
-- instead of one recursion step per version.
--
-- The versions of a stream form a chain (each names the one before it first among its
-- parents, checked by collab_append since 0004). The lineage projection numbers it:
-- chain_head is the DAID of the chain's first version, chain_seq the version's place
-- in it (1 for the head). An edge that continues a chain is marked chained; a walk
-- steps over all chained edges within its depth at once (lineage_walk below). A
-- version whose previous version already has a successor (only possible in a log
-- written before 0004) starts a chain of its own, so chain numbers stay unique.
--
-- Each node also keeps what the API shows of it, as JSON text built at insert time,
-- and its parents ('daid relation'); a walk then returns stored text instead of
-- building a thousand objects and probing the edges of each node.
--
-- Read models are derived: the lineage projection is emptied here and refolds from
-- the log when the server (or `collab projections rebuild lineage`) next runs.

delete from lineage_edges;
delete from lineage_nodes;
update projection_checkpoints set position = 0, updated_at = now() where name = 'lineage';

alter table lineage_nodes
    add column chain_head text,
    add column chain_seq integer,
    add column parents text[] not null default '{}',
    -- whether some parent edge is not chained (a walk up need not look otherwise)
    add column free_parents boolean not null default false,
    add column doc text not null default '{}';
create index lineage_nodes_chain_idx on lineage_nodes (chain_head, chain_seq)
    include (daid, position) where chain_head is not null;

alter table lineage_edges add column chained boolean not null default false;
-- What a walk follows edge by edge: every edge but the chained ones. Without these, a
-- walk along a chain of a thousand versions probes a thousand edges only to skip them.
create index lineage_edges_unchained_child_idx on lineage_edges (child) where not chained;
create index lineage_edges_unchained_parent_idx on lineage_edges (parent) where not chained;

drop function lineage_walk(text, integer, bigint, integer, integer, boolean);

-- The nodes within p_depth edges of p_start (ancestors when p_up, else descendants),
-- each with its shortest depth, at most p_limit of them (the closest first, ties by
-- DAID), after reading at most p_budget rows. rows_read says how many rows the nodes
-- returned were reached by: all rows read, unless p_limit cut the answer (which the
-- caller sees from the count anyway).
--
-- A walk row reached by an ordinary edge (or the start) that lies on a version chain
-- jumps along the chain: every version within the remaining depth, at its distance,
-- in one index range scan. Rows reached by a jump follow their other edges (a
-- rollback's restores, an analysis's inputs, ...) but do not jump again: the jump
-- that reached them already covered their part of the chain. The depth cap bounds
-- every path, so a cycle (possible only in a hand-edited read model) ends too.
create function lineage_walk(
    p_start text, p_depth integer, p_as_of bigint, p_budget integer, p_limit integer,
    p_up boolean
) returns table (
    daid text, depth integer, rows_read bigint, "position" bigint, doc text, up text[]
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
        -- probe: whether the row's node may have parents off its chain (a row
        -- reached by a jump knows it from free_parents, and skips the lookup).
        with recursive walk(node, level, jumped, probe) as (
            select p_start, 0, false, true
            union
            select s.node, w.level + s.step, s.jumped, s.probe
              from walk w cross join lateral (
                  select e.parent, 1, false, true
                    from lineage_edges e
                   where w.probe and e.child = w.node and not e.chained
                     and e.position <= p_as_of
                  union all
                  select c.daid, n.chain_seq - c.chain_seq, true, c.free_parents
                    from lineage_nodes n
                    join lineage_nodes c
                      on c.chain_head = n.chain_head
                     and c.chain_seq >= n.chain_seq - (p_depth - w.level)
                     and c.chain_seq < n.chain_seq
                   where n.daid = w.node and not w.jumped and n.chain_head is not null
                     and c.position <= p_as_of
              ) as s(node, step, jumped, probe)
             where w.level < p_depth
        ), reached as (
            select r.node, min(r.level) as level, count(*) as seen
              from (select node, level from walk limit p_budget) as r
             group by r.node
             order by 2, 1
             limit p_limit
        )
        select array_agg(x.node), array_agg(x.level), sum(x.seen)
          into nodes, levels, total from reached x;
    else
        with recursive walk(node, level, jumped) as (
            select p_start, 0, false
            union
            select s.node, w.level + s.step, s.jumped
              from walk w cross join lateral (
                  select e.child, 1, false
                    from lineage_edges e
                   where e.parent = w.node and not e.chained and e.position <= p_as_of
                  union all
                  select c.daid, c.chain_seq - n.chain_seq, true
                    from lineage_nodes n
                    join lineage_nodes c
                      on c.chain_head = n.chain_head
                     and c.chain_seq > n.chain_seq
                     and c.chain_seq <= n.chain_seq + (p_depth - w.level)
                   where n.daid = w.node and not w.jumped and n.chain_head is not null
                     and c.position <= p_as_of
              ) as s(node, step, jumped)
             where w.level < p_depth
        ), reached as (
            select r.node, min(r.level) as level, count(*) as seen
              from (select node, level from walk limit p_budget) as r
             group by r.node
             order by 2, 1
             limit p_limit
        )
        select array_agg(x.node), array_agg(x.level), sum(x.seen)
          into nodes, levels, total from reached x;
    end if;
    return query
    select x.node, x.level, total, n.position, n.doc, n.parents
      from unnest(nodes, levels) as x(node, level)
      join lineage_nodes n on n.daid = x.node;
end;
$$;

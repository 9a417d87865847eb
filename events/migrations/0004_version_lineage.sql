-- Version lineage: every event that makes a new version of a stream's document
-- (project.created, doc.updated, project.rolled_back) names the previous version's DAID
-- among its parents, so that the DAID of version 41 reaches every earlier version.
--
-- The writer computes DAIDs before the append (their hash covers the parents), so it
-- has to guess the previous version; the guess is checked here, under the stream's row
-- lock, against streams.last_version_daid. A wrong guess (another node or process
-- appended a version meanwhile) fails that request alone with status
-- 'stale_lineage' and the current tip in detail; the store re-prepares it and retries.

alter table streams add column last_version_daid text;

update streams s
   set last_version_daid = (
       select e.daid from events e
        where e.stream_id = s.stream_id
          and e.event_type in ('project.created', 'doc.updated', 'project.rolled_back')
        order by e.stream_version desc
        limit 1);

drop function collab_append(text[], bigint[], integer[], uuid[], text[], integer[], jsonb[],
                            bytea[], jsonb[], text[], jsonb[], bytea[]);

-- As in 0001, plus per request p_base (the version DAID the writer assumed was the
-- stream's tip; NULL for none) and p_tip (the DAID of the request's last version
-- event; NULL when the request makes no version, and then nothing is checked).
-- Idempotent retries now compare data and payload instead of the DAID hash, because
-- a retried version event may have been prepared against a different tip.
create function collab_append(
    p_streams text[],
    p_expected bigint[],
    p_req integer[],
    p_ids uuid[],
    p_types text[],
    p_schema integer[],
    p_data jsonb[],
    p_payloads bytea[],
    p_metadata jsonb[],
    p_daids text[],
    p_parents jsonb[],
    p_hashes bytea[],
    p_base text[],
    p_tip text[]
) returns table (
    req integer,
    status text,
    current_version bigint,
    versions bigint[],
    positions bigint[],
    daids text[],
    detail text
) language plpgsql as $$
declare
    n_req integer := coalesce(cardinality(p_streams), 0);
    n_ev integer := coalesce(cardinality(p_ids), 0);
    first_ev integer[] := array_fill(0, array[greatest(n_req, 1)]);
    last_ev integer[] := array_fill(-1, array[greatest(n_req, 1)]);
    st text[] := array_fill(null::text, array[greatest(n_req, 1)]);
    cur bigint[] := array_fill(0::bigint, array[greatest(n_req, 1)]);
    det text[] := array_fill(null::text, array[greatest(n_req, 1)]);
    o_start integer[] := array_fill(0, array[greatest(n_req, 1)]);
    pending text[] := '{}';
    locked text[];
    lv0 bigint[] := '{}';
    lv bigint[];
    lh bytea[] := '{}';
    ld text[] := '{}';
    d text;
    o_idx integer[] := '{}';
    o_pos bigint[] := '{}';
    o_ver bigint[] := '{}';
    o_prev bytea[] := '{}';
    o_hash bytea[] := '{}';
    o_n integer := 0;
    total bigint := 0;
    base bigint;
    ts timestamptz;
    us bigint;
    i integer;
    j integer;
    k integer;
    s text;
    v bigint;
    h bytea;
    n_found integer;
    n_same integer;
    bad_id text;
begin
    for j in 1 .. n_ev loop
        i := p_req[j];
        if first_ev[i] = 0 then
            first_ev[i] := j;
        end if;
        last_ev[i] := j;
    end loop;

    -- Idempotent retries and reused event ids. Same content means same stream,
    -- type, data and payload; metadata, parents and the DAID may differ between a
    -- request and its retry. One index probe
    -- answers the common case (no id seen before).
    perform 1 from events e where e.event_id = any(p_ids) limit 1;
    if found then
        for i in 1 .. n_req loop
            select count(e.event_id),
                   count(e.event_id) filter (
                       where e.stream_id = p_streams[i] and e.event_type = x.typ
                         and e.data = x.dat and e.payload is not distinct from x.pay),
                   min(x.id::text) filter (
                       where e.event_id is not null and not (
                           e.stream_id = p_streams[i] and e.event_type = x.typ
                           and e.data = x.dat and e.payload is not distinct from x.pay))
              into n_found, n_same, bad_id
              from unnest(p_ids[first_ev[i]:last_ev[i]], p_types[first_ev[i]:last_ev[i]],
                          p_data[first_ev[i]:last_ev[i]],
                          p_payloads[first_ev[i]:last_ev[i]]) as x(id, typ, dat, pay)
              left join events e on e.event_id = x.id;
            if n_found = 0 then
                continue;
            elsif n_found = last_ev[i] - first_ev[i] + 1 and n_same = n_found then
                st[i] := 'existing';
            elsif bad_id is null then
                select min(x.id::text) into bad_id
                  from unnest(p_ids[first_ev[i]:last_ev[i]]) as x(id)
                  join events e on e.event_id = x.id;
                st[i] := 'duplicate';
                det[i] := bad_id || ': only part of this request was stored before';
            else
                st[i] := 'duplicate';
                det[i] := bad_id || ': stored with different content';
            end if;
        end loop;
    end if;
    for i in 1 .. n_req loop
        if st[i] is null then
            pending := pending || p_streams[i];
        end if;
    end loop;

    -- Lock the streams in a fixed order (no deadlocks between batches).
    if cardinality(pending) <= 1 then
        locked := pending;  -- the common single-request call needs no sort
    else
        locked := array(select distinct x from unnest(pending) as x order by x);
    end if;
    foreach s in array locked loop
        select t.version, t.last_hash, t.last_version_daid into v, h, d
          from streams t where t.stream_id = s for update;
        if not found then
            insert into streams (stream_id, version, last_hash)
                values (s, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                on conflict (stream_id) do nothing;
            select t.version, t.last_hash, t.last_version_daid into v, h, d
              from streams t where t.stream_id = s for update;
        end if;
        lv0 := lv0 || v;
        lh := lh || h;
        ld := ld || d;
    end loop;

    -- Expected versions and version tips, in request order (a batch may hold one
    -- stream twice).
    lv := lv0;
    for i in 1 .. n_req loop
        continue when st[i] is not null;
        k := array_position(locked, p_streams[i]);
        if p_expected[i] is not null and p_expected[i] <> lv[k] then
            st[i] := 'wrong_version';
            cur[i] := lv[k];
        elsif p_tip[i] is not null and p_base[i] is distinct from ld[k] then
            st[i] := 'stale_lineage';
            cur[i] := lv[k];
            det[i] := ld[k];
        else
            if p_tip[i] is not null then
                ld[k] := p_tip[i];
            end if;
            st[i] := 'ok';
            lv[k] := lv[k] + (last_ev[i] - first_ev[i] + 1);
            total := total + (last_ev[i] - first_ev[i] + 1);
        end if;
    end loop;

    if total > 0 then
        -- The global counter, taken last and held to commit.
        update event_log_head set last_position = last_position + total
            returning last_position - total into base;
        ts := clock_timestamp();
        us := (extract(epoch from ts) * 1000000)::bigint;
        lv := lv0;
        o_idx := array_fill(0, array[total::integer]);
        o_pos := array_fill(0::bigint, array[total::integer]);
        o_ver := array_fill(0::bigint, array[total::integer]);
        o_prev := array_fill(null::bytea, array[total::integer]);
        o_hash := array_fill(null::bytea, array[total::integer]);
        for i in 1 .. n_req loop
            continue when st[i] <> 'ok';
            k := array_position(locked, p_streams[i]);
            o_start[i] := o_n + 1;
            for j in first_ev[i] .. last_ev[i] loop
                o_n := o_n + 1;
                lv[k] := lv[k] + 1;
                o_idx[o_n] := j;
                o_pos[o_n] := base + o_n;
                o_ver[o_n] := lv[k];
                o_prev[o_n] := lh[k];
                o_hash[o_n] := sha256(lh[k] || p_hashes[j] || int8send(lv[k])
                                      || int8send(base + o_n) || int8send(us));
                lh[k] := o_hash[o_n];
            end loop;
        end loop;

        insert into events (position, stream_id, stream_version, event_id, event_type,
                            schema_version, data, payload, metadata, daid, parents,
                            recorded_at, content_hash, prev_hash, hash)
        select o.pos, p_streams[p_req[o.j]], o.ver, p_ids[o.j], p_types[o.j], p_schema[o.j],
               p_data[o.j], p_payloads[o.j], p_metadata[o.j], p_daids[o.j], p_parents[o.j],
               ts, p_hashes[o.j], o.prev, o.hash
          from unnest(o_idx, o_pos, o_ver, o_prev, o_hash) as o(j, pos, ver, prev, hash);

        for k in 1 .. cardinality(locked) loop
            if lv[k] <> lv0[k] then
                update streams set version = lv[k], last_hash = lh[k], last_version_daid = ld[k]
                 where stream_id = locked[k];
            end if;
        end loop;

        -- A wake-up only: subscribers poll as well, so a lost notification stalls nobody.
        perform pg_notify('collab_events', (base + total)::text);
    end if;

    for i in 1 .. n_req loop
        req := i;
        status := st[i];
        current_version := cur[i];
        detail := det[i];
        versions := null;
        positions := null;
        daids := null;
        if st[i] = 'ok' then
            k := o_start[i];
            j := k + (last_ev[i] - first_ev[i]);
            versions := o_ver[k:j];
            positions := o_pos[k:j];
            daids := p_daids[first_ev[i]:last_ev[i]];
            current_version := o_ver[j];
        elsif st[i] = 'existing' then
            select array_agg(e.stream_version order by x.ord),
                   array_agg(e.position order by x.ord),
                   array_agg(e.daid order by x.ord)
              into versions, positions, daids
              from unnest(p_ids[first_ev[i]:last_ev[i]]) with ordinality as x(id, ord)
              join events e on e.event_id = x.id;
            current_version := versions[cardinality(versions)];
        end if;
        return next;
    end loop;
end;
$$
-- Custom plans for the array parameters were re-planned on every call (~0.2 ms per
-- statement), so the plans are generic and cached per session. A generic plan made
-- while a table is still small would be a sequential scan kept forever (appends then
-- slow down as the log grows); every statement here is a key lookup, so index plans
-- are pinned.
set plan_cache_mode = force_generic_plan
set enable_seqscan = off;

-- The append-only event log.
--
-- Positions come from a single-row counter (event_log_head) updated inside the
-- appending transaction: the row lock serialises appends, so positions follow
-- commit order and stay dense (a rolled-back append returns its numbers). A reader
-- that advances by position therefore never skips an event that commits later.

create table event_log_head (
    singleton boolean primary key default true check (singleton),
    last_position bigint not null
);
insert into event_log_head (singleton, last_position) values (true, 0);

-- One row per stream: its version and the chain hash of its last event. Locked
-- (in stream-id order) before the counter, so a writer with a stale expected
-- version fails without ever touching the log head.
create table streams (
    stream_id text primary key,
    version bigint not null check (version >= 0),
    last_hash bytea not null
);

create table events (
    position bigint primary key check (position > 0),
    stream_id text not null,
    stream_version bigint not null check (stream_version > 0),
    event_id uuid not null,
    event_type text not null,
    schema_version integer not null,
    data jsonb not null,
    payload bytea,
    metadata jsonb not null,
    daid text not null,
    parents jsonb not null,
    recorded_at timestamptz not null,
    content_hash bytea not null,
    prev_hash bytea not null,
    hash bytea not null,
    constraint events_stream_version_key unique (stream_id, stream_version),
    constraint events_event_id_key unique (event_id)
);
create index events_daid_idx on events (daid);

create function events_refuse_change() returns trigger language plpgsql as $$
begin
    raise exception 'events are append-only: % on events is refused', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

create trigger events_append_only
    before update or delete on events
    for each row execute function events_refuse_change();

create trigger events_no_truncate
    before truncate on events
    for each statement execute function events_refuse_change();

-- Append the events of one or more requests in one call (one round trip).
--
-- Requests are indexed from 1; p_req[j] names the request of event j, and each
-- request's events are contiguous and in order. p_expected[i] is NULL for "any",
-- otherwise the exact version the stream must be at (0 = the stream has no events).
--
-- Each request gets one row back: status is 'ok', 'existing' (every event id was
-- already stored with the same content: an idempotent retry, stored result
-- returned), 'wrong_version' (current_version says where the stream is) or
-- 'duplicate' (detail names an event id stored with different content).
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
    p_hashes bytea[]
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
    -- type and DAID content hash (data, payload and parents); metadata and the
    -- DAID's timestamp may differ between a request and its retry. One index probe
    -- answers the common case (no id seen before).
    perform 1 from events e where e.event_id = any(p_ids) limit 1;
    if found then
        for i in 1 .. n_req loop
            select count(e.event_id),
                   count(e.event_id) filter (
                       where e.stream_id = p_streams[i] and e.event_type = x.typ
                         and right(e.daid, 16) = right(x.daid, 16)),
                   min(x.id::text) filter (
                       where e.event_id is not null and not (
                           e.stream_id = p_streams[i] and e.event_type = x.typ
                           and right(e.daid, 16) = right(x.daid, 16)))
              into n_found, n_same, bad_id
              from unnest(p_ids[first_ev[i]:last_ev[i]], p_types[first_ev[i]:last_ev[i]],
                          p_daids[first_ev[i]:last_ev[i]]) as x(id, typ, daid)
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
        select t.version, t.last_hash into v, h from streams t where t.stream_id = s for update;
        if not found then
            insert into streams (stream_id, version, last_hash)
                values (s, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
                on conflict (stream_id) do nothing;
            select t.version, t.last_hash into v, h from streams t where t.stream_id = s for update;
        end if;
        lv0 := lv0 || v;
        lh := lh || h;
    end loop;

    -- Expected versions, in request order (a batch may hold one stream twice).
    lv := lv0;
    for i in 1 .. n_req loop
        continue when st[i] is not null;
        k := array_position(locked, p_streams[i]);
        if p_expected[i] is not null and p_expected[i] <> lv[k] then
            st[i] := 'wrong_version';
            cur[i] := lv[k];
        else
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
                update streams set version = lv[k], last_hash = lh[k]
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

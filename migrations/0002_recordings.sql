-- Recordings: one broadcast (live) or one imported VOD. A reconnect inside the
-- observer's standby window is a new epoch of the same recording.
CREATE TYPE recording_state AS ENUM ('recording', 'standby', 'complete', 'interrupted', 'failed');
CREATE TYPE media_source AS ENUM ('live', 'vod');

CREATE TABLE recordings (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      bigint NOT NULL REFERENCES channels (id) ON DELETE RESTRICT,
    source          media_source NOT NULL DEFAULT 'live',
    state           recording_state NOT NULL DEFAULT 'recording',
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    epoch           integer NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    -- Fencing: every write of the holding cell carries this token; handing the
    -- recording to a replacement bumps it, which refuses the old cell's writes.
    lease_token     bigint NOT NULL DEFAULT 1,
    holder_cell_id  uuid,
    -- Progress, kept current by heartbeats and finalize.
    segment_count   bigint NOT NULL DEFAULT 0,
    gap_count       bigint NOT NULL DEFAULT 0,
    bytes           bigint NOT NULL DEFAULT 0,
    duration_secs   double precision NOT NULL DEFAULT 0,
    last_sequence   bigint,
    -- Where the media lives, relative to the store root (already sanitised).
    storage_prefix  text NOT NULL,
    source_url      text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- At most one open live recording per channel.
CREATE UNIQUE INDEX recordings_one_open_live_per_channel
    ON recordings (channel_id)
    WHERE source = 'live' AND state IN ('recording', 'standby');

CREATE INDEX recordings_channel_started ON recordings (channel_id, started_at DESC);

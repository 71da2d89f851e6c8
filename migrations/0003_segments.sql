-- The segment ledger: one row per stored segment, and explicit rows for gaps.
-- The primary key makes uploads idempotent and dedupes a replacement cell's overlap.
CREATE TABLE segments (
    recording_id      bigint NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    epoch             integer NOT NULL CHECK (epoch >= 0),
    media_sequence    bigint NOT NULL CHECK (media_sequence >= 0),
    duration_secs     double precision NOT NULL CHECK (duration_secs >= 0),
    bytes             bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    -- NULL only for gap rows.
    object_key        text,
    -- fMP4 sources: the EXT-X-MAP init segment this one needs.
    init_key          text,
    program_date_time timestamptz,
    source            media_source NOT NULL,
    is_gap            boolean NOT NULL DEFAULT false,
    -- For a gap row: how many source segments are missing from here on.
    gap_count         integer NOT NULL DEFAULT 0 CHECK (gap_count >= 0),
    is_ad             boolean NOT NULL DEFAULT false,
    discontinuity     boolean NOT NULL DEFAULT false,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recording_id, epoch, media_sequence),
    CHECK (is_gap OR object_key IS NOT NULL)
);

-- A backfill download retried after a crash must find the recording it
-- started, not open a second one: one VOD recording per channel and source URL.
CREATE UNIQUE INDEX recordings_one_vod_per_source
    ON recordings (channel_id, source_url)
    WHERE source = 'vod';

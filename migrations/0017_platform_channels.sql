-- Channels on a streaming platform (Twitch, YouTube, Kick). Their source is
-- the channel's page, which the cell turns into an HLS URL with the
-- platform's resolver template; live detection asks the platform's API in
-- batches. The handle is what the operator gave, the id the platform's own
-- (filled in once known).
ALTER TABLE channels DROP CONSTRAINT channels_source_kind_check;
ALTER TABLE channels ADD CONSTRAINT channels_source_kind_check
    CHECK (source_kind IN ('hls', 'command', 'platform'));
ALTER TABLE channels ADD COLUMN platform text CHECK (platform IN ('twitch', 'youtube', 'kick'));
ALTER TABLE channels ADD COLUMN platform_handle text CHECK (length(platform_handle) BETWEEN 1 AND 100);
ALTER TABLE channels ADD COLUMN platform_id text CHECK (length(platform_id) BETWEEN 1 AND 100);
ALTER TABLE channels ADD CONSTRAINT channels_platform_named CHECK (
    (source_kind = 'platform') = (platform IS NOT NULL)
    AND (platform IS NULL OR platform_handle IS NOT NULL OR platform_id IS NOT NULL)
);
CREATE UNIQUE INDEX channels_platform_handle ON channels (platform, platform_handle) WHERE platform_handle IS NOT NULL;
CREATE UNIQUE INDEX channels_platform_id ON channels (platform, platform_id) WHERE platform_id IS NOT NULL;

-- The broadcast the platform reports now, as the last probe saw it.
ALTER TABLE channels ADD COLUMN stream_id text;
ALTER TABLE channels ADD COLUMN stream_title text;
ALTER TABLE channels ADD COLUMN stream_category text;
ALTER TABLE channels ADD COLUMN stream_started_at timestamptz;

-- The broadcast a live recording is of.
ALTER TABLE recordings ADD COLUMN stream_id text;
ALTER TABLE recordings ADD COLUMN title text;
ALTER TABLE recordings ADD COLUMN category text;
ALTER TABLE recordings ADD COLUMN stream_started_at timestamptz;

-- Title and category as they changed during a recording: the first chapter
-- starts with the recording, each change starts a new one.
CREATE TABLE chapters (
    recording_id    bigint NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL,
    title           text,
    category        text,
    PRIMARY KEY (recording_id, at)
);

-- A platform's app access token, shared by every tick (a new process under
-- cron) until it nears expiry or the platform refuses it.
CREATE TABLE platform_tokens (
    platform        text PRIMARY KEY CHECK (platform IN ('twitch', 'youtube', 'kick')),
    client_id       text NOT NULL,
    access_token    text NOT NULL,
    expires_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

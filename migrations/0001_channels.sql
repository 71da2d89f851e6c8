-- Channels: what the archive watches. A login is used in object keys, so the
-- database enforces the same safe-name rule as the CLI.
CREATE TABLE channels (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login           text NOT NULL UNIQUE
                    CHECK (login ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    display_name    text NOT NULL,
    source_kind     text NOT NULL CHECK (source_kind IN ('hls', 'command')),
    source_url      text NOT NULL,
    -- For source_kind = 'command': the resolver, e.g. 'streamlink --stream-url {url} best'.
    resolver        text,
    variant         text NOT NULL DEFAULT 'best',
    enabled         boolean NOT NULL DEFAULT true,
    -- Job kinds enqueued when a recording of this channel is finalized.
    pipeline        jsonb NOT NULL DEFAULT '["thumbnails"]'::jsonb,
    -- Liveness as last probed by the mothership.
    live            boolean NOT NULL DEFAULT false,
    live_since      timestamptz,
    probed_at       timestamptz,
    probe_error     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (source_kind <> 'command' OR resolver IS NOT NULL)
);

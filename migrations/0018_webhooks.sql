-- Signed webhooks: where to tell another service about what happened here,
-- which events it wants, and the secret its deliveries are signed with
-- (Standard Webhooks: HMAC-SHA256). The mothership's tick finds the events
-- by scanning the tables below over a window since its last scan, and
-- queues one `webhook` job per (webhook, event).
CREATE TABLE webhooks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         text NOT NULL CHECK (url ~ '^https?://'),
    events      text[] NOT NULL CHECK (
                    cardinality(events) >= 1
                    AND events <@ ARRAY['channel.live', 'channel.offline',
                                        'recording.started', 'recording.completed',
                                        'recording.interrupted', 'recording.failed',
                                        'job.dead', 'cell.dead']::text[]),
    format      text NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'discord')),
    -- `whsec_<base64>`, shown to the operator once; never printed again.
    secret      text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/=]+$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    enabled     boolean NOT NULL DEFAULT true
);

-- When the last probe found a live channel offline (NULL while live), the
-- counterpart of live_since: the `channel.offline` event.
ALTER TABLE channels ADD COLUMN offline_since timestamptz;

-- The end of the last event scan. The next one starts a little before it,
-- so an event whose row committed late is still found; unique keys keep a
-- rescan from queuing anything twice.
ALTER TABLE colony ADD COLUMN webhook_scanned_until timestamptz;

-- The scan reads each kind of event by its time; these keep it off the
-- large tables' full history.
CREATE INDEX recordings_live_started ON recordings (started_at) WHERE source = 'live';
CREATE INDEX recordings_ended ON recordings (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX jobs_dead_finalized ON jobs (finalized_at) WHERE state = 'dead';
CREATE INDEX cells_dead_exited ON cells (exited_at) WHERE state = 'dead';
-- A delivery, in any state (a dead one included), is never queued again.
CREATE INDEX jobs_webhook_unique_key ON jobs (unique_key) WHERE kind = 'webhook';

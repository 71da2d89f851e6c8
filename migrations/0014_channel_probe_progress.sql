-- What the last probe saw of a channel's playlist (its last segment), and
-- when that last changed. A source that keeps serving the same playlist is
-- frozen, not live: the mothership stops starting observers for it.
ALTER TABLE channels ADD COLUMN probe_fingerprint text;
ALTER TABLE channels ADD COLUMN progressed_at timestamptz;

-- Hosts a channel's playlists may send Colony to besides the source's own
-- (CDNs): exact names or '*.suffix' patterns. Segment, key, map and variant
-- URIs on any other host are refused before a connection is made.
ALTER TABLE channels ADD COLUMN allowed_hosts text[] NOT NULL DEFAULT '{}';

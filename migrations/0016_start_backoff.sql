-- Starts that failed in a row, and when the next may be tried: per channel
-- for observers, once per colony for the harvest pool. The mothership backs
-- off exponentially (10 s, doubling, at most 10 minutes) instead of retrying
-- a failing launch on every tick.
ALTER TABLE channels ADD COLUMN start_failures integer NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN start_retry_at timestamptz;
ALTER TABLE colony ADD COLUMN harvest_start_failures integer NOT NULL DEFAULT 0;
ALTER TABLE colony ADD COLUMN harvest_start_retry_at timestamptz;

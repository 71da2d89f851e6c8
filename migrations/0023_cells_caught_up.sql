-- Make before break: a silent observer may still be capturing, so the
-- mothership stops it only once its replacement holds the lease and has
-- fetched from the source (or found it offline). The replacement says so
-- here, once.
ALTER TABLE cells ADD COLUMN caught_up_at timestamptz;

-- Observers running when this migration ran have long caught up.
UPDATE cells SET caught_up_at = last_heartbeat
 WHERE kind = 'observer' AND state IN ('running', 'stopping') AND last_heartbeat IS NOT NULL;

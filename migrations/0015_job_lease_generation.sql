-- A job's lease generation: drawn from one sequence on every claim,
-- give-back, retry, rescue and cancel, so it only ever goes up and is never
-- reused. Heartbeat, complete, fail and every job-side write are fenced on it.
-- (The attempt number alone was reused: a give-back or a retry sets it back.)
CREATE SEQUENCE job_lease_generation;
ALTER TABLE jobs ADD COLUMN lease_generation bigint NOT NULL DEFAULT 0;

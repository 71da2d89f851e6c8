-- The job queue, of River's shape. Claiming uses FOR UPDATE SKIP LOCKED;
-- completing and failing are fenced on (id, attempt).
CREATE TYPE job_state AS ENUM ('available', 'running', 'retryable', 'succeeded', 'dead', 'cancelled');

CREATE TABLE jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
    args            jsonb NOT NULL DEFAULT '{}'::jsonb,
    state           job_state NOT NULL DEFAULT 'available',
    -- Higher runs first.
    priority        smallint NOT NULL DEFAULT 0,
    run_at          timestamptz NOT NULL DEFAULT now(),
    attempt         integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts    integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    attempted_at    timestamptz,
    attempted_by    text,
    lease_until     timestamptz,
    finalized_at    timestamptz,
    last_error      text,
    -- Every failed attempt: [{attempt, at, error}].
    errors          jsonb NOT NULL DEFAULT '[]'::jsonb,
    progress        jsonb,
    unique_key      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The claim path: ready jobs in priority, run_at, id order.
CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, id)
    WHERE state IN ('available', 'retryable');
-- The rescuer: running jobs by lease expiry.
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
-- Stats and dashboards skip the (large) succeeded history.
CREATE INDEX jobs_open_by_kind ON jobs (kind, state) WHERE state <> 'succeeded';
-- Dedupe: one live-or-succeeded job per unique key; a dead or cancelled job
-- does not block enqueueing the same work again.
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running', 'retryable', 'succeeded');

-- Wake idle workers in the inserting transaction; they poll as a fallback.
CREATE FUNCTION colony_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('colony_jobs', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION colony_notify_jobs();

-- Cells: every observer and harvest cell the mothership launched (or that joined
-- by itself), with the backend's own handle so it can be found again.
CREATE TYPE cell_kind AS ENUM ('observer', 'harvest');
CREATE TYPE cell_state AS ENUM ('starting', 'running', 'stopping', 'exited', 'dead');

CREATE TABLE cells (
    id              uuid PRIMARY KEY,
    kind            cell_kind NOT NULL,
    backend         text NOT NULL CHECK (backend IN ('process', 'docker', 'ecs', 'manual')),
    -- pid, container id or task ARN.
    backend_ref     text,
    channel_id      bigint REFERENCES channels (id) ON DELETE SET NULL,
    recording_id    bigint REFERENCES recordings (id) ON DELETE SET NULL,
    lease_token     bigint,
    state           cell_state NOT NULL DEFAULT 'starting',
    started_at      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz,
    exited_at       timestamptz,
    exit_code       integer,
    host            text,
    version         text,
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX cells_active ON cells (kind, state) WHERE state IN ('starting', 'running', 'stopping');

-- Ticks: one row per mothership reconcile pass, with the plan it made. The
-- planner keeps no state of its own; the scale-down stabilization window and
-- the idle cooldown are read back from here.
CREATE TABLE ticks (
    id              uuid PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    launcher        text NOT NULL,
    -- The harvest pool size this tick wanted (after min/max clamping).
    harvest_want    integer NOT NULL CHECK (harvest_want >= 0),
    -- The queue had ready or running jobs.
    queue_busy      boolean NOT NULL,
    plan            jsonb NOT NULL,
    report          jsonb
);

CREATE INDEX ticks_at ON ticks (at DESC);

-- Decisions: every action the mothership took, why, and how it went.
CREATE TABLE decisions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tick_id     uuid NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,
    subject     text NOT NULL,
    reason      text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'failed', 'skipped')),
    error       text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX decisions_at ON decisions (at DESC);
CREATE INDEX decisions_tick ON decisions (tick_id);

-- This colony's identity. Launchers label every container, task and process
-- with it, so two colonies sharing a Docker host, an ECS cluster or a machine
-- never list (or reap) each other's cells.
CREATE TABLE colony (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    instance_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO colony DEFAULT VALUES;

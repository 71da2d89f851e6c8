-- Counters the tick keeps for /metrics. The rows they summarise are pruned
-- (ticks after a day) or kept for ever (decisions), so neither can be counted
-- at scrape time without going down or growing slower; these only go up.
-- One row per metric and label set; the tick is their only writer.
CREATE TABLE metric_counters (
    name    text NOT NULL CHECK (name ~ '^colony_[a-z0-9_]+$'),
    -- The label set as a JSON object of strings, e.g. {"action": "start_observer", "outcome": "ok"}.
    labels  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    value   double precision NOT NULL DEFAULT 0 CHECK (value >= 0),
    PRIMARY KEY (name, labels)
);

-- A channel names a resolver profile; it never carries a command. The
-- profile's template lives in the configuration of each host that runs it
-- (COLONY_RESOLVER_<NAME>), so a row written by anyone who holds a database
-- URL cannot make any host run anything.
--
-- `mothership migrate` turns each stored template into the name of the
-- host's profile that holds the same template before this runs; a template
-- no profile holds stops the migration with a line that says how to define
-- it. This guard stops any other path (sqlx migrate run) the same way.
DO $$
DECLARE
    left_over text;
BEGIN
    SELECT string_agg(login, ', ' ORDER BY login) INTO left_over
      FROM channels
     WHERE resolver IS NOT NULL AND resolver !~ '^[a-z][a-z0-9_]{0,31}$';
    IF left_over IS NOT NULL THEN
        RAISE EXCEPTION 'channels % store a resolver command; run `mothership migrate`, which says how to define each as a profile (COLONY_RESOLVER_<NAME>)', left_over;
    END IF;
END $$;

ALTER TABLE channels RENAME COLUMN resolver TO resolver_profile;
ALTER TABLE channels ADD CONSTRAINT channels_resolver_profile_name
    CHECK (resolver_profile ~ '^[a-z][a-z0-9_]{0,31}$');

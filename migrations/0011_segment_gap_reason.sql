-- Why a gap row is a gap: the source skipped the segments, a fetch failed
-- until the window moved on, the fetch policy refused the URI, the segment
-- was over its size cap, the database refused its row, or storage was down
-- at finalize. Shown in `status`, the playlists' gap comments and the API.
ALTER TABLE segments ADD COLUMN gap_reason text;

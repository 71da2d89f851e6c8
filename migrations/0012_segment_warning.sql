-- What the repair job found wrong with a segment it kept: ffmpeg decoded it
-- but complained, or it could not be decoded and no verified replacement
-- exists. Repair never deletes media it cannot replace; it flags it here.
ALTER TABLE segments ADD COLUMN warning text;

-- Chat archives: a Twitch channel's live chat, recorded by its observer beside
-- the video. Messages go to object storage in compressed NDJSON chunks under
-- the recording's prefix; each chunk and each stretch of chat that could not
-- be heard is a row here, written under the recording's lease token like the
-- segment ledger (`WITH fence AS ... FOR SHARE`), by the ledger module only.

-- Chat is recorded for Twitch channels unless turned off (`channel add --no-chat`).
ALTER TABLE channels ADD COLUMN chat boolean NOT NULL DEFAULT true;

CREATE TABLE chat_chunks (
    recording_id    bigint NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    -- Increases across cells: a replacement continues after the last chunk.
    seq             bigint NOT NULL CHECK (seq >= 0),
    object_key      text NOT NULL,
    messages        integer NOT NULL CHECK (messages >= 0),
    bytes           bigint NOT NULL CHECK (bytes >= 0),
    -- The server times (tmi-sent-ts) of the first and last message, and their
    -- offsets on the recording's timeline.
    first_sent_at   timestamptz NOT NULL,
    last_sent_at    timestamptz NOT NULL,
    first_offset_secs double precision NOT NULL,
    last_offset_secs  double precision NOT NULL,
    -- Messages cut to the size limit in this chunk.
    truncated       integer NOT NULL DEFAULT 0 CHECK (truncated >= 0),
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recording_id, seq)
);

-- A stretch with no chat connection: messages sent then are not in the archive.
CREATE TABLE chat_gaps (
    recording_id    bigint NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    from_at         timestamptz NOT NULL,
    to_at           timestamptz NOT NULL CHECK (to_at >= from_at),
    reason          text NOT NULL,
    PRIMARY KEY (recording_id, from_at)
);

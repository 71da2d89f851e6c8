//! What `up` prints while it runs: decisions, recordings, jobs, as they happen.

use std::collections::HashMap;
use std::path::PathBuf;

use sqlx::PgPool;

use super::{Layout, say};

/// Prints what happens: decisions, recordings, jobs.
pub(super) struct Narrator {
    pool: PgPool,
    media: PathBuf,
    file_storage: bool,
    last_decision: i64,
    recordings: HashMap<i64, (String, i64)>,
    jobs: HashMap<i64, String>,
}

impl Narrator {
    pub async fn new(pool: &PgPool, layout: &Layout, last_decision: i64) -> anyhow::Result<Self> {
        let mut n = Self {
            pool: pool.clone(),
            media: layout.media.clone(),
            file_storage: std::env::var_os("COLONY_STORAGE_URL").is_none(),
            last_decision,
            recordings: HashMap::new(),
            jobs: HashMap::new(),
        };
        // What already happened is not news.
        let done: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT id, state::text, segment_count FROM recordings").fetch_all(pool).await?;
        n.recordings = done.into_iter().map(|(id, s, c)| (id, (s, c))).collect();
        let jobs: Vec<(i64, String)> = sqlx::query_as("SELECT id, state::text FROM jobs").fetch_all(pool).await?;
        n.jobs = jobs.into_iter().collect();
        Ok(n)
    }

    pub async fn look(&mut self) -> anyhow::Result<()> {
        let decisions: Vec<(i64, String, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, action, subject, reason, outcome, error FROM decisions WHERE id > $1 ORDER BY id",
        )
        .bind(self.last_decision)
        .fetch_all(&self.pool)
        .await?;
        for (id, action, subject, reason, outcome, error) in decisions {
            self.last_decision = id;
            let error = error.map(|e| format!(": {e}")).unwrap_or_default();
            say(format!("mothership: {action} {subject} ({reason}) → {outcome}{error}"));
        }

        let recordings: Vec<(i64, String, String, i64, f64, String)> = sqlx::query_as(
            "SELECT r.id, c.login, r.state::text, r.segment_count, r.duration_secs, r.storage_prefix
               FROM recordings r JOIN channels c ON c.id = r.channel_id ORDER BY r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, login, state, segments, secs, prefix) in recordings {
            let before = self.recordings.get(&id).cloned();
            let changed = before.as_ref().is_none_or(|(s, _)| *s != state);
            let progressed = before.as_ref().is_some_and(|(_, n)| segments / 10 > n / 10);
            if changed || progressed {
                let playlist = self.media.join(&prefix).join("playlist.m3u8");
                let tail = match state.as_str() {
                    "complete" | "interrupted" if self.file_storage => {
                        format!("; play it: ffplay {}", playlist.display())
                    }
                    "complete" | "interrupted" => format!("; playlist at {prefix}/playlist.m3u8"),
                    _ => String::new(),
                };
                say(format!("recording {id} of {login}: {state}, {segments} segments, {secs:.0}s{tail}"));
            }
            self.recordings.insert(id, (state, segments));
        }

        let jobs: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, kind::text, state::text, last_error FROM jobs ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        for (id, kind, state, error) in jobs {
            if self.jobs.get(&id) != Some(&state) {
                let error = error.filter(|_| state != "succeeded").map(|e| format!(": {e}")).unwrap_or_default();
                say(format!("job {id} ({kind}): {state}{error}"));
                self.jobs.insert(id, state);
            }
        }
        Ok(())
    }
}

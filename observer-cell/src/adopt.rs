//! Adopting media an earlier cell stored but could not put in the ledger.
//!
//! A cell uploads a segment and then queues its ledger row. If it is cut off
//! from Postgres (a partition, a half-open connection) or killed between the
//! two, the mothership replaces it and the old cell's queued rows are lost,
//! though the objects are in storage. Keys are deterministic
//! (`e<epoch>/<seq:08>.ts`), so before a replacement records sequences as a
//! gap it asks storage for each one, and adopts what is there: a complete
//! object (uploads are atomic) of plausible size gets a ledger row with an
//! estimated duration and a warning saying so. At finalize it looks again at
//! the recording's gap rows, for what a cell that woke up late (SIGSTOP,
//! SIGCONT) uploaded after the gap was written.
//!
//! Only replacements do this, and each probe is one `HEAD`, so an observer
//! that never lost a row never pays for it.

use std::collections::{BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;

use futures::StreamExt;

use colony::hls::FetchLimits;
use colony::recording::{self, Ledger, LedgerError, LedgerRow, MediaSource};
use colony::storage::{ObjectKey, ObjectStore};

/// Most sequence numbers probed for one run, and at one finalize.
pub const MAX_PROBES: u64 = 50_000;

/// HEAD requests in flight at once.
const CONCURRENCY: usize = 16;

const ADOPTED: &str = "adopted from storage: an earlier cell stored it but its ledger row was lost; duration estimated";

pub struct Adopter {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: ObjectKey,
    pub limits: FetchLimits,
    /// A segment's duration, when nothing better is known.
    pub duration_secs: f64,
}

impl Adopter {
    /// Split `run` (sequence numbers of `epoch` about to become a gap) into
    /// rows for what storage already holds and the runs still missing.
    pub async fn settle(
        &self,
        epoch: u32,
        run: RangeInclusive<u64>,
        init_key: Option<&str>,
    ) -> (Vec<LedgerRow>, Vec<RangeInclusive<u64>>) {
        let probed_end = (*run.end()).min(run.start().saturating_add(MAX_PROBES - 1));
        let extension = if init_key.is_some() { "m4s" } else { "ts" };
        let cap = self.limits.segment_cap(self.duration_secs);
        let found: Vec<(u64, ObjectKey, u64)> = futures::stream::iter(*run.start()..=probed_end)
            .map(|seq| async move {
                let key = recording::segment_key(&self.prefix, epoch, seq, extension).ok()?;
                let meta = self.store.head(&key).await.ok()?;
                (meta.size > 0 && meta.size <= cap).then_some((seq, key, meta.size))
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|found| async move { found })
            .collect()
            .await;
        let present: BTreeSet<u64> = found.iter().map(|(seq, ..)| *seq).collect();
        let adopted = found
            .into_iter()
            .map(|(seq, key, size)| LedgerRow {
                warning: Some(ADOPTED.into()),
                ..LedgerRow::object(
                    epoch,
                    seq,
                    self.duration_secs,
                    &key,
                    init_key.map(str::to_owned),
                    size,
                    MediaSource::Live,
                )
            })
            .collect();
        (adopted, missing_runs(run, &present))
    }

    /// Turn the recording's gap rows whose objects exist into media rows:
    /// what a cell uploaded after the gap was written. Returns how many
    /// segments were adopted.
    pub async fn adopt_into_gaps(&self, ledger: &Ledger) -> Result<u64, LedgerError> {
        type GapRow = (i32, i64, i32, f64, Option<String>);
        let gaps: Vec<GapRow> = sqlx::query_as(
            "SELECT epoch, media_sequence, gap_count, duration_secs, gap_reason FROM segments
              WHERE recording_id = $1 AND is_gap AND object_key IS NULL
              ORDER BY epoch, media_sequence LIMIT 10000",
        )
        .bind(ledger.recording_id())
        .fetch_all(ledger.pool())
        .await?;
        let mut inits: HashMap<i32, Option<String>> = HashMap::new();
        let (mut budget, mut adopted) = (MAX_PROBES, 0u64);
        for (epoch, first, count, secs, reason) in gaps {
            let count = u64::try_from(count).unwrap_or(0).max(1);
            if count > budget || first < 0 || epoch < 0 {
                continue;
            }
            budget -= count;
            let init = match inits.get(&epoch) {
                Some(init) => init.clone(),
                None => {
                    let init: Option<String> = sqlx::query_scalar(
                        "SELECT init_key FROM segments WHERE recording_id = $1 AND epoch = $2 AND init_key IS NOT NULL LIMIT 1",
                    )
                    .bind(ledger.recording_id())
                    .bind(epoch)
                    .fetch_optional(ledger.pool())
                    .await?;
                    inits.insert(epoch, init.clone());
                    init
                }
            };
            let run = first as u64..=first as u64 + (count - 1);
            let (rows, missing) = self.settle(epoch as u32, run, init.as_deref()).await;
            if rows.is_empty() {
                continue;
            }
            let per_segment = secs / count as f64;
            let mut replacement = rows;
            adopted += replacement.len() as u64;
            for gap in missing {
                let n = gap.end() - gap.start() + 1;
                let mut row = LedgerRow::gap(epoch as u32, *gap.start(), n, n as f64 * per_segment, MediaSource::Live);
                row.gap_reason = reason.clone();
                replacement.push(row);
            }
            replacement.sort_by_key(|r| r.media_sequence);
            ledger.replace_gap(epoch, first, &replacement).await?;
        }
        Ok(adopted)
    }
}

/// The parts of `run` not in `present`, as runs.
fn missing_runs(run: RangeInclusive<u64>, present: &BTreeSet<u64>) -> Vec<RangeInclusive<u64>> {
    let mut out = Vec::new();
    let mut start = *run.start();
    for &seq in present.range(run.clone()) {
        if seq > start {
            out.push(start..=seq - 1);
        }
        start = seq + 1;
    }
    if start <= *run.end() {
        out.push(start..=*run.end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_present_splits_a_run() {
        let present = BTreeSet::from([3, 4, 7]);
        assert_eq!(missing_runs(1..=9, &present), [1..=2, 5..=6, 8..=9]);
        assert_eq!(missing_runs(3..=4, &present), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(missing_runs(10..=12, &present), [10..=12]);
    }
}

//! The counters a tick adds to for `/metrics` (table `metric_counters`, of
//! which this module is the only writer): ticks by outcome, the tick
//! duration histogram, actions by action and outcome, and probe errors by
//! platform. Added in one statement at the end of a tick; a failure to add
//! them is logged, never a failed tick.

use std::collections::BTreeMap;

use sqlx::PgPool;

/// The upper bounds of the tick duration histogram, in seconds.
pub const TICK_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Increments to add, keyed by metric name and label set.
#[derive(Debug, Default)]
pub struct Increments(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Increments {
    pub fn add(&mut self, name: &str, labels: &[(&str, &str)], by: f64) {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        *self.0.entry((name.to_owned(), labels)).or_default() += by;
    }

    /// One tick that took `secs` and ended as `outcome` (ok, partly_failed, failed).
    pub fn tick(&mut self, secs: f64, outcome: &str) {
        self.add("colony_ticks_total", &[("outcome", outcome)], 1.0);
        for le in TICK_BUCKETS {
            if secs <= le {
                self.add("colony_tick_duration_seconds_bucket", &[("le", &le.to_string())], 1.0);
            }
        }
        self.add("colony_tick_duration_seconds_bucket", &[("le", "+Inf")], 1.0);
        self.add("colony_tick_duration_seconds_sum", &[], secs);
        self.add("colony_tick_duration_seconds_count", &[], 1.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Add them all, in one statement.
    pub async fn save(self, pool: &PgPool) -> Result<(), sqlx::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let (mut names, mut labels, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for ((name, set), value) in self.0 {
            names.push(name);
            labels.push(serde_json::to_value(set).unwrap_or_default());
            values.push(value);
        }
        sqlx::query(
            "INSERT INTO metric_counters (name, labels, value)
             SELECT * FROM UNNEST($1::text[], $2::jsonb[], $3::float8[])
             ON CONFLICT (name, labels) DO UPDATE SET value = metric_counters.value + EXCLUDED.value",
        )
        .bind(&names)
        .bind(&labels)
        .bind(&values)
        .execute(pool)
        .await?;
        Ok(())
    }
}

/// One counter row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Counter {
    pub name: String,
    pub labels: sqlx::types::Json<BTreeMap<String, String>>,
    pub value: f64,
}

/// Every counter row.
pub async fn all(pool: &PgPool) -> Result<Vec<Counter>, sqlx::Error> {
    sqlx::query_as("SELECT name, labels, value FROM metric_counters ORDER BY name, labels").fetch_all(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_lands_in_every_bucket_at_or_above_its_duration() {
        let mut inc = Increments::default();
        inc.tick(0.3, "ok");
        let buckets: Vec<&str> = inc
            .0
            .keys()
            .filter(|(n, _)| n == "colony_tick_duration_seconds_bucket")
            .map(|(_, l)| l["le"].as_str())
            .collect();
        assert!(buckets.contains(&"0.5") && buckets.contains(&"60") && buckets.contains(&"+Inf"), "{buckets:?}");
        assert!(!buckets.contains(&"0.25"), "{buckets:?}");
    }
}

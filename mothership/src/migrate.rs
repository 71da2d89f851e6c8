//! `mothership migrate`: the schema's migrations, and the one step a
//! migration cannot take by itself because it needs this host's
//! configuration.
//!
//! Migration 21 makes a channel name a resolver profile instead of carrying
//! a command (`colony::resolver`). Only a host knows its profiles
//! (`COLONY_RESOLVER_<NAME>` and the platform defaults), so before it runs,
//! each stored command is matched, word for word, with the profile of this
//! host that holds the same template, and the row (or queued download) is
//! rewritten to that profile's name. A command no profile holds stops the
//! migration, with the variable to set for each one; nothing is guessed and
//! nothing is dropped.

use std::collections::BTreeMap;

use colony::db::{MigrateReport, Pool};
use colony::exit::Exit;
use colony::resolver::{ProfileName, profiles, redact_template};

/// The migration that turns stored commands into profile names.
const PROFILES_MIGRATION: i64 = 21;

/// What is still a command, by its words.
type Commands = BTreeMap<Vec<String>, Vec<String>>;

pub async fn run(pool: &Pool) -> anyhow::Result<MigrateReport> {
    let status = colony::db::schema_status(pool).await?;
    if status.pending.contains(&PROFILES_MIGRATION) && status.database.is_some() {
        name_profiles(pool).await?;
    }
    Ok(colony::db::migrate(pool).await?)
}

/// A profile name is not a command: it has no space and fits the name rule.
fn is_command(stored: &str) -> bool {
    ProfileName::parse(stored).is_err()
}

/// Rewrite every stored command this host has a profile for; refuse, with
/// what to set, if any is left.
async fn name_profiles(pool: &Pool) -> anyhow::Result<()> {
    let known: Vec<(Vec<String>, ProfileName)> = profiles()
        .into_iter()
        .filter_map(|(name, template, _)| Some((shell_words::split(&template).ok()?, name)))
        .collect();
    // Several profiles may hold the same template (Twitch's and Kick's
    // defaults do): the one named by `preferred` first, in its order.
    let profile_for = |stored: &str, preferred: &[String]| {
        let words = shell_words::split(stored).ok()?;
        let holding: Vec<&ProfileName> = known.iter().filter(|(w, _)| *w == words).map(|(_, name)| name).collect();
        preferred
            .iter()
            .find_map(|p| holding.iter().find(|name| name.as_str() == p))
            .or(holding.first())
            .map(|name| (*name).clone())
    };
    let channels: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, login, resolver, platform FROM channels WHERE resolver IS NOT NULL ORDER BY login")
            .fetch_all(pool)
            .await?;
    // Decide every row first; write only if none is left over, in one transaction.
    let mut left: Commands = BTreeMap::new();
    let mut named_channels: Vec<(i64, String, ProfileName)> = Vec::new();
    let mut named_jobs: Vec<(i64, ProfileName)> = Vec::new();
    for (id, login, stored, platform) in channels.into_iter().filter(|(_, _, r, _)| is_command(r)) {
        match profile_for(&stored, &platform.into_iter().collect::<Vec<_>>()) {
            Some(profile) => named_channels.push((id, login, profile)),
            None => left
                .entry(shell_words::split(&stored).unwrap_or_default())
                .or_default()
                .push(format!("channel {login}")),
        }
    }
    let jobs: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, args ->> 'resolver', args ->> 'url' FROM jobs
          WHERE kind = 'vod_download' AND state IN ('available', 'retryable', 'running')
            AND args ->> 'resolver' IS NOT NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    for (id, stored, url) in jobs.into_iter().filter(|(_, r, _)| is_command(r)) {
        // A download is of a past broadcast: its platform's VOD profile first.
        let host = url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_owned));
        let mut preferred: Vec<String> = colony::platform::Platform::ALL
            .iter()
            .filter(|p| host.as_deref().is_some_and(|h| h.ends_with(p.page_host())))
            .map(|p| colony::resolver::ProfileName::vod(*p).to_string())
            .collect();
        preferred
            .extend(colony::platform::Platform::ALL.iter().map(|p| colony::resolver::ProfileName::vod(*p).to_string()));
        match profile_for(&stored, &preferred) {
            Some(profile) => named_jobs.push((id, profile)),
            None => left.entry(shell_words::split(&stored).unwrap_or_default()).or_default().push(format!("job {id}")),
        }
    }
    if !left.is_empty() {
        return Err(Exit::config(refusal(&left)).into());
    }
    let mut tx = pool.begin().await?;
    for (id, login, profile) in &named_channels {
        sqlx::query("UPDATE channels SET resolver = $2 WHERE id = $1")
            .bind(id)
            .bind(profile.as_str())
            .execute(&mut *tx)
            .await?;
        println!("channel {login}: its resolver is now the profile '{profile}' ({})", profile.variable());
    }
    for (id, profile) in &named_jobs {
        sqlx::query("UPDATE jobs SET args = jsonb_set(args, '{resolver}', to_jsonb($2::text)) WHERE id = $1")
            .bind(id)
            .bind(profile.as_str())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What to set so that the migration can go on: one profile per distinct
/// command, its option values hidden (the operator reads them from the row).
fn refusal(left: &Commands) -> String {
    let mut lines = vec![format!(
        "cannot migrate yet: {} stored resolver command(s) match no resolver profile on this host, and rows may \
         no longer carry commands (docs/SECURITY.md). Define each as a profile here and on every host that runs \
         cells, then run `mothership migrate` again:",
        left.len()
    )];
    for (n, (words, users)) in left.iter().enumerate() {
        let name = format!("custom{}", n + 1);
        let variable = ProfileName::parse(&name).map(|p| p.variable()).unwrap_or_default();
        let shown = redact_template(&shell_words::join(words));
        let mut who = users.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if users.len() > 5 {
            who.push_str(&format!(" and {} more", users.len() - 5));
        }
        lines
            .push(format!("  {variable}='{shown}'   (used by {who}; *** hides option values: read them from the row)"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_a_variable_per_command_and_hides_values() {
        let mut left: Commands = BTreeMap::new();
        let words = |t: &str| shell_words::split(t).unwrap();
        left.entry(words("yt-dlp --add-headers 'Authorization: Bearer s3cret' -g {url}"))
            .or_default()
            .extend(["channel a".to_owned(), "job 7".to_owned()]);
        let text = refusal(&left);
        assert!(text.contains("COLONY_RESOLVER_CUSTOM1='yt-dlp --add-headers *** -g {url}'"), "{text}");
        assert!(text.contains("used by channel a, job 7"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(is_command("yt-dlp -g {url}") && !is_command("twitch_vod"));
    }
}

//! `shardmesh ctl log`: the action log, oldest first, and with `--follow` the entries
//! written after, as they come.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use shardmesh_store::{Action, Store};

/// How often `--follow` reads the log again.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// How many recent entries each `--follow` read looks at: more than a busy cluster
/// writes in [`FOLLOW_EVERY`].
const FOLLOW_WINDOW: usize = 500;

/// Prints the `last` most recent entries, then with `follow` every new one until
/// interrupted.
///
/// # Errors
///
/// A store that cannot be read (while following: ten failed reads in a row).
pub async fn print(
    store: &impl Store,
    last: usize,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut recent = store
        .recent_actions(last)
        .await
        .context("reading the action log")?;
    recent.reverse();
    for action in &recent {
        println!("{}", line(action, json));
    }
    if !follow {
        return Ok(());
    }
    let mut printed: Vec<Action> = recent;
    let mut failures = 0;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let mut fresh = match store.recent_actions(FOLLOW_WINDOW).await {
            Ok(fresh) => {
                failures = 0;
                fresh
            }
            Err(error) => {
                failures += 1;
                eprintln!("warning: action log not read ({error}); retrying");
                if failures >= 10 {
                    return Err(error).context("reading the action log");
                }
                continue;
            }
        };
        fresh.reverse();
        let newest = printed.last().map(|action| action.at);
        // Entries at the same instant as the newest printed may be new too: compare
        // them whole against those already printed.
        let new: Vec<Action> = fresh
            .into_iter()
            .filter(|action| match newest {
                Some(newest) if action.at < newest => false,
                Some(newest) if action.at == newest => !printed.contains(action),
                _ => true,
            })
            .collect();
        for action in &new {
            println!("{}", line(action, json));
        }
        printed.extend(new);
        let keep = printed.len().saturating_sub(FOLLOW_WINDOW);
        printed.drain(..keep);
    }
}

fn line(action: &Action, json: bool) -> String {
    let at_ms = crate::text::unix_ms(action.at);
    if json {
        return serde_json::json!({
            "at_ms": at_ms,
            "actor": action.actor,
            "action": action.action,
            "args": action.args,
            "result": action.result,
        })
        .to_string();
    }
    format!(
        "{}  {}  {} {}: {}",
        utc(action.at),
        action.actor,
        action.action,
        action.args,
        action.result
    )
}

/// `2026-12-07 23:41:07.123Z`, from the civil-from-days algorithm (no date crate for
/// one format).
fn utc(at: SystemTime) -> String {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let secs = ms / 1_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        ms % 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_686_867_123);
        assert_eq!(utc(at), "2026-12-07 23:41:07.123Z");
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc(leap), "2000-02-29 00:00:00.000Z");
    }
}

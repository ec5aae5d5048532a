//! Which runs a listing keeps: `--group G` (repeatable: any of them) and
//! `--where KEY=VALUE` (repeatable: every key must hold, and a key given
//! twice, or as `KEY=V1,V2`, holds for any of its values), where KEY is a
//! dotted config key (`combiner.kind`) or one of `status`, `group`, `name`,
//! `id`, `ranks`, and VALUE [`ABSENT`] holds where a session lacks KEY.

use super::{keys, Run};
use anyhow::{bail, Result};
use std::str::FromStr;

/// Keys of `session.json` (and the shown status) that `--where` accepts
/// besides config keys.
pub const META_KEYS: [&str; 5] = ["status", "group", "name", "id", "ranks"];

/// The statuses a listing shows: `session.json`'s, and `crashed` for a
/// run whose process is gone.
const STATUSES: [&str; 6] = [
    "running", "paused", "finished", "failed", "stopped", "crashed",
];

/// What listings show for a key a session lacks (`-`) or never reads (`–`,
/// a `meltr.*` key of a `sum` run), which `--where KEY=-` (or `–`) selects
/// (walkthrough L3 wanted the `sum` and `primary` runs beside MELTR's under
/// `meltr.init`, and was told no session has `meltr.init=-`).
pub const ABSENT: [&str; 2] = ["-", "–"];

/// One `KEY=VALUE` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Where {
    pub key: String,
    pub value: String,
}

impl Where {
    /// The values it accepts: `meltr,sum` is either (as `sweep --set`
    /// writes a list); a TOML array or table, or a quoted string, is one.
    pub fn values(&self) -> Vec<&str> {
        let literal = self.value.starts_with(['[', '{', '"', '\'']);
        match literal {
            true => vec![self.value.as_str()],
            false => self.value.split(',').map(str::trim).collect(),
        }
    }

    /// Whether it holds for `run`.
    fn holds_for(&self, run: &Run) -> bool {
        let actual = run.value(&self.key);
        let absent = actual.is_none() || keys::unread_by(run, &self.key);
        self.values().iter().any(|v| match ABSENT.contains(v) {
            true => absent,
            false => actual.as_deref().is_some_and(|a| keys::matches(a, v)),
        })
    }
}

impl FromStr for Where {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Where {
                key: key.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(format!(
                "`{s}` is not KEY=VALUE (e.g. combiner.kind=meltr, status=finished)"
            )),
        }
    }
}

/// What to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any of these groups (none: every run).
    pub groups: Vec<String>,
    pub conditions: Vec<Where>,
}

/// `--group none`: the sessions in no group, as `run --group none` puts a
/// session in none (walkthrough I2's `ls --group none` was refused).
pub const NO_GROUP: &str = "none";

/// Whether `run` is in `group` ([`NO_GROUP`]: in none).
fn is_in(run: &Run, group: &str) -> bool {
    match run.meta.group.as_deref() {
        Some(g) => g == group,
        None => group.eq_ignore_ascii_case(NO_GROUP),
    }
}

impl Filter {
    /// Whether `run` is in one of the groups (any, when none is given).
    fn in_groups(&self, run: &Run) -> bool {
        self.groups.is_empty() || self.groups.iter().any(|g| is_in(run, g))
    }

    /// Whether `run` passes: each key's conditions, any of their values
    /// (walkthrough N's `--where combiner.kind=meltr --where
    /// combiner.kind=sum` selected nothing, unexplained).
    pub fn keeps(&self, run: &Run) -> bool {
        self.in_groups(run)
            && self.conditions.iter().all(|w| {
                self.conditions
                    .iter()
                    .filter(|other| other.key == w.key)
                    .any(|other| other.holds_for(run))
            })
    }

    /// The runs of `runs` it keeps. A condition on a key that no run has
    /// (a typo) is an error naming it, rather than an empty listing.
    pub fn apply(&self, runs: Vec<Run>) -> Result<Vec<Run>> {
        self.select(runs, true)
    }

    /// [`Filter::apply`] where a value no run has selects nothing, without
    /// an error: for scripts (`ls --json`) that poll for a session to appear.
    pub fn apply_any_value(&self, runs: Vec<Run>) -> Result<Vec<Run>> {
        self.select(runs, false)
    }

    fn select(&self, runs: Vec<Run>, check_values: bool) -> Result<Vec<Run>> {
        for w in &self.conditions {
            check_key(&runs, &w.key)?;
            for status in w.values().into_iter().filter(|_| w.key == "status") {
                if !STATUSES.contains(&status) {
                    bail!(
                        "status={status} matches no run: a status is one of {}",
                        STATUSES.join(", ")
                    );
                }
            }
        }
        for group in &self.groups {
            check_group(&runs, group)?;
        }
        if check_values {
            self.check_values(&runs)?;
        }
        Ok(runs.into_iter().filter(|r| self.keeps(r)).collect())
    }

    /// Fails when a condition's value is one no run (of the group) has,
    /// naming the values there: `combiner.kind=metlr` listed nothing, with
    /// no hint of the typo (a walkthrough). A status is checked apart.
    fn check_values(&self, runs: &[Run]) -> Result<()> {
        let candidates: Vec<&Run> = runs.iter().filter(|r| self.in_groups(r)).collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let each_value = self
            .conditions
            .iter()
            .filter(|w| w.key != "status")
            .flat_map(|w| w.values().into_iter().map(move |v| (&w.key, v)));
        for (key, value) in each_value {
            let mut values: Vec<String> = candidates.iter().filter_map(|r| r.value(key)).collect();
            if values.iter().any(|v| keys::matches(v, value)) {
                continue;
            }
            if ABSENT.contains(&value) {
                let absent = |r: &&Run| r.value(key).is_none() || keys::unread_by(r, key);
                match candidates.iter().any(absent) {
                    true => continue,
                    false => bail!("every session sets and reads {key}: none lacks it (`{key}=-`)"),
                }
            }
            let scope = if !self.groups.is_empty() {
                " of the group"
            } else {
                ""
            };
            if values.is_empty() {
                bail!("no session{scope} sets {key}");
            }
            values.sort();
            values.dedup();
            const SHOWN: usize = 8;
            let more = values.len().saturating_sub(SHOWN);
            values.truncate(SHOWN);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            bail!(
                "no session{scope} has {key}={value}; its values here: {}{more}",
                values.join(", ")
            );
        }
        Ok(())
    }
}

/// Fails unless some run of `runs` is in `group`, naming the groups there
/// (a typo, or the wrong sessions folder, would otherwise read as "no
/// sessions selected").
fn check_group(runs: &[Run], group: &str) -> Result<()> {
    if runs.is_empty() || runs.iter().any(|r| is_in(r, group)) {
        return Ok(());
    }
    let mut groups: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.meta.group.as_deref())
        .collect();
    groups.sort();
    groups.dedup();
    if group.eq_ignore_ascii_case(NO_GROUP) {
        bail!("every session here is in a group: {}", groups.join(", "));
    }
    match groups[..] {
        [] => bail!(
            "no group `{group}`: these sessions belong to no group (`sweep --name NAME` makes one)"
        ),
        _ => bail!("no group `{group}`; the groups here: {}", groups.join(", ")),
    }
}

/// Fails unless `key` is a [`META_KEYS`] key or a config key of some run.
pub fn check_key(runs: &[Run], key: &str) -> Result<()> {
    if META_KEYS.contains(&key)
        || runs.is_empty()
        || runs.iter().any(|r| r.config.contains_key(key))
    {
        return Ok(());
    }
    // Not a key: a wish for no pooling (walkthrough L1's `--group-by none`).
    if matches!(key, "none" | "session" | "sessions" | "run" | "runs") {
        bail!("no session has the key `{key}`: for a row (or a line) per session, group by `id`");
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    let mut near: Vec<&String> = runs
        .iter()
        .flat_map(|r| r.config.keys())
        .filter(|k| {
            // The same leaf in another section, a section named alone, or a
            // misspelling (walkthrough M's `meltr.gama` had no hint).
            let spelled = crate::config::edit_distance(key, k) <= (k.chars().count() / 6).max(2);
            k.rsplit('.').next() == Some(last) || k.starts_with(key) || spelled
        })
        .collect();
    near.sort();
    near.dedup();
    let hint = if near.is_empty() {
        format!(
            "config keys are dotted, e.g. combiner.kind or aid.iterations; also {}",
            META_KEYS.join(", ")
        )
    } else {
        let near: Vec<&str> = near.iter().map(|s| s.as_str()).collect();
        format!("did you mean {}?", near.join(" or "))
    };
    bail!("no session has the key `{key}`: {hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_that_does_not_exist_is_refused_with_the_list() {
        use crate::session::Status;
        for status in [
            Status::Running,
            Status::Paused,
            Status::Finished,
            Status::Failed,
            Status::Stopped,
        ] {
            assert!(STATUSES.contains(&status.as_str()));
        }
        let filter = Filter {
            groups: Vec::new(),
            conditions: vec!["status=done".parse().unwrap()],
        };
        let err = filter.apply(Vec::new()).unwrap_err().to_string();
        assert!(err.contains("finished, failed, stopped, crashed"), "{err}");
        let fine = Filter {
            groups: Vec::new(),
            conditions: vec!["status=crashed".parse().unwrap()],
        };
        assert!(fine.apply(Vec::new()).unwrap().is_empty());
    }

    /// `--group-by none` (walkthrough L1) points to `id`.
    #[test]
    fn grouping_by_none_points_to_grouping_by_id() {
        let root = tempfile::tempdir().unwrap();
        let config = crate::config::Config::default();
        let dir = crate::session::create(root.path(), "a", &config).unwrap();
        let runs = vec![Run::load(&dir).unwrap()];
        let err = check_key(&runs, "none").unwrap_err().to_string();
        assert!(
            err.ends_with("for a row (or a line) per session, group by `id`"),
            "{err}"
        );
        assert!(check_key(&runs, "id").is_ok());
    }

    /// `--where KEY=-` keeps the sessions that lack the key, as listings
    /// show them (walkthrough L3).
    #[test]
    fn a_dash_selects_the_sessions_that_lack_the_key() {
        let root = tempfile::tempdir().unwrap();
        let config = crate::config::Config::default();
        let mut runs = Vec::new();
        for name in ["with", "without"] {
            let dir = crate::session::create(root.path(), name, &config).unwrap();
            runs.push(Run::load(&dir).unwrap());
        }
        assert!(runs[1].config.remove("meltr.init").is_some());
        let kept = |runs: &[Run], value: &str| -> Result<Vec<String>> {
            let filter = Filter {
                groups: Vec::new(),
                conditions: vec![format!("meltr.init={value}").parse().unwrap()],
            };
            Ok(filter
                .apply(runs.to_vec())?
                .into_iter()
                .map(|r| r.meta.name)
                .collect())
        };
        assert_eq!(kept(&runs, "-").unwrap(), ["without"]);
        let init = runs[0].value("meltr.init").unwrap();
        assert_eq!(
            kept(&runs, &format!("{init},-")).unwrap(),
            ["with", "without"]
        );
        let every = Filter {
            groups: Vec::new(),
            conditions: vec!["combiner.kind=-".parse().unwrap()],
        };
        let err = every.apply(runs.clone()).unwrap_err().to_string();
        assert!(
            err.starts_with("every session sets and reads combiner.kind"),
            "{err}"
        );
        // A `sum` run never reads meltr.* keys: listings show `–` there.
        runs[1].config.insert("combiner.kind".into(), "sum".into());
        runs[1].config.insert("meltr.init".into(), "pytorch".into());
        assert_eq!(kept(&runs, "–").unwrap(), ["without"]);
    }

    /// `--group none` keeps the sessions in no group, beside any named.
    #[test]
    fn group_none_keeps_the_sessions_in_no_group() {
        let root = tempfile::tempdir().unwrap();
        let config = crate::config::Config::default();
        let mut runs = Vec::new();
        for (name, group) in [("a", Some("main")), ("b", None), ("c", Some("other"))] {
            let dir = crate::session::create(root.path(), name, &config).unwrap();
            let mut run = Run::load(&dir).unwrap();
            run.meta.group = group.map(str::to_string);
            runs.push(run);
        }
        let kept = |groups: &[&str]| -> Result<Vec<String>> {
            let filter = Filter {
                groups: groups.iter().map(|g| g.to_string()).collect(),
                conditions: Vec::new(),
            };
            Ok(filter
                .apply(runs.clone())?
                .into_iter()
                .map(|r| r.meta.name)
                .collect())
        };
        assert_eq!(kept(&["none"]).unwrap(), ["b"]);
        assert_eq!(kept(&["main", "None"]).unwrap(), ["a", "b"]);
        let grouped: Vec<Run> = runs
            .iter()
            .filter(|r| r.meta.group.is_some())
            .cloned()
            .collect();
        let filter = Filter {
            groups: vec!["none".into()],
            conditions: Vec::new(),
        };
        let err = filter.apply(grouped).unwrap_err().to_string();
        assert_eq!(err, "every session here is in a group: main, other");
    }

    #[test]
    fn conditions_parse_and_a_bad_one_says_the_form() {
        let w: Where = "combiner.kind = meltr".parse().unwrap();
        assert_eq!(
            (w.key.as_str(), w.value.as_str()),
            ("combiner.kind", "meltr")
        );
        // A list of values, as `sweep --set` writes one; a TOML literal
        // with commas stays one value.
        let any: Where = "combiner.kind=meltr, sum".parse().unwrap();
        assert_eq!(any.values(), ["meltr", "sum"]);
        let list: Where = "workload.auxiliary=[\"a\",\"b\"]".parse().unwrap();
        assert_eq!(list.values(), ["[\"a\",\"b\"]"]);
        let err = "combiner.kind".parse::<Where>().unwrap_err();
        assert!(err.contains("KEY=VALUE"), "{err}");
        assert!("=x".parse::<Where>().is_err());
    }
}

//! The run's input files (the TorchScript model, the training and
//! validation data) as they were when it started — size, modification
//! time and (up to 512 MiB) a checksum of the contents, in `inputs.json` — so a resume can say which changed since: it
//! goes on with the checkpoint's saved module, but reads the data files as
//! they are now, and neither had been said.

use super::atomic_write;
use crate::config::Config;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The session file that holds the fingerprints.
pub const FILE: &str = "inputs.json";

/// One input file as the run found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fingerprint {
    path: String,
    bytes: u64,
    /// Seconds since the Unix epoch.
    modified: Option<f64>,
    /// The contents' CRC-32C, for files up to [`CONTENT_CHECKED_BYTES`]:
    /// a file written again byte for byte is no change (walkthrough J2's
    /// rewritten data was listed as changed); absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32c: Option<u32>,
}

/// The largest input whose contents are checked, not only its size and
/// time (reading it at a run's start costs about a second a gigabyte).
const CONTENT_CHECKED_BYTES: u64 = 512 << 20;

/// The CRC-32C of the file at `path`, read a chunk at a time.
fn contents_crc(path: &str) -> Option<u32> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut crc = 0;
    loop {
        match file.read(&mut chunk).ok()? {
            0 => return Some(crc),
            n => crc = crate::export::record::crc32c_extend(crc, &chunk[..n]),
        }
    }
}

impl Fingerprint {
    /// [`Self::of`] with the contents' checksum: what a run's start records.
    fn recorded(path: &str) -> Option<Fingerprint> {
        let mut fingerprint = Self::of(path)?;
        fingerprint.crc32c = (fingerprint.bytes <= CONTENT_CHECKED_BYTES)
            .then(|| contents_crc(path))
            .flatten();
        Some(fingerprint)
    }

    /// The size and time alone: `ls` reads every session's inputs, and
    /// reads a file's contents only where its time has changed.
    fn of(path: &str) -> Option<Fingerprint> {
        let meta = std::fs::metadata(path).ok()?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        Some(Fingerprint {
            path: path.to_string(),
            bytes: meta.len(),
            modified,
            crc32c: None,
        })
    }

    /// How `now` differs from this, when it does: a new time over the same
    /// contents (where this recorded them) is none.
    fn change_to(&self, now: &Fingerprint) -> Option<String> {
        if now.path != self.path {
            Some(format!("now {} instead of {}", now.path, self.path))
        } else if now.bytes != self.bytes {
            Some(format!("{} → {} bytes", self.bytes, now.bytes))
        } else if same_time(now.modified, self.modified) {
            None
        } else {
            let contents_now = now.crc32c.or_else(|| contents_crc(&now.path));
            match (self.crc32c, contents_now) {
                (Some(then), Some(now)) if then == now => None,
                (Some(_), Some(_)) => Some("contents changed, same size".to_string()),
                _ => Some("modification time changed, same size".to_string()),
            }
        }
    }
}

/// Modification times equal to a microsecond: seconds as f64 come back
/// from JSON up to an ulp off (serde_json parses fast, not exactly), which
/// said "changed" of every file on resume (a walkthrough).
fn same_time(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (a, b) => a.is_none() && b.is_none(),
    }
}

/// The config keys that name input files, with the file each names.
fn inputs(config: &Config) -> BTreeMap<&'static str, String> {
    let w = &config.workload;
    [
        ("workload.model", &w.model),
        ("workload.train", &w.train),
        ("workload.val", &w.val),
    ]
    .into_iter()
    .filter_map(|(key, path)| Some((key, path.clone()?)))
    .collect()
}

/// At a run's start (`from_checkpoint` false: step 0, a fresh run or a
/// restart), or the first resume of a session from before this record,
/// writes the inputs' fingerprints; a resume from a checkpoint says which
/// input changed since, and what the run does about it.
pub fn check_or_record(dir: &Path, config: &Config, from_checkpoint: bool) -> Result<Vec<String>> {
    let file = dir.join(FILE);
    let now: BTreeMap<String, Fingerprint> = inputs(config)
        .into_iter()
        .filter_map(|(key, path)| Some((key.to_string(), Fingerprint::recorded(&path)?)))
        .collect();
    let record = || -> Result<()> {
        let json = serde_json::to_string_pretty(&now).expect("fingerprints serialise");
        atomic_write(&file, json.as_bytes())
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(text) if from_checkpoint => text,
        _ => return record().map(|()| Vec::new()),
    };
    // An advisory record: unreadable, it is written afresh, not a failure.
    let Ok(then) = serde_json::from_str::<BTreeMap<String, Fingerprint>>(&text) else {
        record()?;
        return Ok(vec![format!(
            "{} did not read back; the input files are recorded afresh (a change before now goes unsaid)",
            file.display()
        )]);
    };
    let mut notes = Vec::new();
    for (key, now) in &now {
        let Some(then) = then.get(key) else { continue };
        let Some(what) = then.change_to(now) else {
            continue;
        };
        let consequence = if key == "workload.model" {
            "the resume goes on with the module saved in the checkpoint, as trained; a changed model needs a new run"
        } else {
            "the resumed run reads the file as it is now"
        };
        notes.push(format!(
            "{key} {} changed since the run started ({what}): {consequence}",
            now.path
        ));
    }
    Ok(notes)
}

/// [`Changed::what`] of a file that is no longer there.
pub const GONE: &str = "no longer exists";

/// One input file that is not as the run found it at its start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Changed {
    /// The config key that names it (`workload.train`).
    pub key: String,
    /// The file the run read.
    pub path: String,
    /// How it differs now (`4 → 9 bytes`, `no longer exists`).
    pub what: String,
}

/// The session's recorded inputs that changed since its run started, read
/// against the files as they are now (for `ls`: numbers that came from a
/// model or data since re-exported). Nothing when there is no record or it
/// does not read: the record is advisory.
pub fn changed_since_start(dir: &Path) -> Vec<Changed> {
    let Ok(text) = std::fs::read_to_string(dir.join(FILE)) else {
        return Vec::new();
    };
    let Ok(then) = serde_json::from_str::<BTreeMap<String, Fingerprint>>(&text) else {
        return Vec::new();
    };
    then.into_iter()
        .filter_map(|(key, then)| {
            let what = match Fingerprint::of(&then.path) {
                Some(now) => then.change_to(&now)?,
                None => GONE.to_string(),
            };
            Some(Changed {
                key,
                path: then.path,
                what,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` with a modification time set, not left to the file
    /// system (this test failed once in a loaded run, cause not seen; a
    /// modification time set late is the one input it does not fix).
    fn write_at(path: &Path, bytes: &[u8], secs: u64) {
        std::fs::write(path, bytes).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn a_resume_says_which_input_changed_since_the_start() {
        let tmp = tempfile::tempdir().unwrap();
        let (model, train) = (tmp.path().join("model.pt"), tmp.path().join("train.st"));
        write_at(&model, b"module", 1000);
        write_at(&train, b"rows", 1000);
        let mut config = Config::default();
        config.workload.model = Some(model.display().to_string());
        config.workload.train = Some(train.display().to_string());
        let session = tmp.path().join("session");
        std::fs::create_dir(&session).unwrap();
        assert!(check_or_record(&session, &config, false)
            .unwrap()
            .is_empty());
        // Unchanged: nothing to say.
        assert!(check_or_record(&session, &config, true).unwrap().is_empty());
        // Nor with a time whose seconds as f64 do not come back exactly
        // from JSON (a walkthrough's file: every resume said "changed").
        let file = std::fs::File::options().write(true).open(&model).unwrap();
        let odd = std::time::Duration::new(1_796_369_819, 712_499_864);
        file.set_modified(std::time::UNIX_EPOCH + odd).unwrap();
        assert!(check_or_record(&session, &config, false)
            .unwrap()
            .is_empty());
        assert!(check_or_record(&session, &config, true).unwrap().is_empty());
        write_at(&train, b"more rows", 2000);
        let said = check_or_record(&session, &config, true).unwrap();
        assert_eq!(
            said,
            [format!(
                "workload.train {} changed since the run started (4 → 9 bytes): the resumed run reads the file as it is now",
                train.display()
            )]
        );
        // The same bytes written again: no change (walkthrough J2).
        write_at(&model, b"module", 1500);
        let said = check_or_record(&session, &config, true).unwrap();
        assert!(
            !said.iter().any(|s| s.starts_with("workload.model")),
            "{said:?}"
        );
        let listed = changed_since_start(&session);
        assert!(
            !listed.iter().any(|c| c.key == "workload.model"),
            "{listed:?}"
        );
        write_at(&model, b"modulE", 2000);
        let said = check_or_record(&session, &config, true).unwrap();
        assert!(
            said.iter().any(|s| s.starts_with("workload.model")
                && s.contains("(contents changed, same size): the resume goes on with the module saved in the checkpoint")),
            "{said:?}"
        );
        // A record from before the contents were read says the time.
        let old: BTreeMap<String, Fingerprint> =
            serde_json::from_str(&std::fs::read_to_string(session.join(FILE)).unwrap()).unwrap();
        let mut then = old["workload.model"].clone();
        then.crc32c = None;
        let now = Fingerprint::of(&model.display().to_string()).unwrap();
        assert_eq!(
            Fingerprint {
                modified: Some(1.0),
                ..then
            }
            .change_to(&now)
            .as_deref(),
            Some("modification time changed, same size")
        );
        // `ls` reads the same change from the record alone.
        let changed = changed_since_start(&session);
        let keys: Vec<&str> = changed.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["workload.model", "workload.train"]);
        assert_eq!(changed[1].what, "4 → 9 bytes");
        // A restart from step 0 starts from the files as they are: a new
        // record, nothing to say then or after.
        assert!(check_or_record(&session, &config, false)
            .unwrap()
            .is_empty());
        assert!(check_or_record(&session, &config, true).unwrap().is_empty());
        assert!(changed_since_start(&session).is_empty());
        std::fs::remove_file(&train).unwrap();
        assert_eq!(changed_since_start(&session)[0].what, GONE);
        write_at(&train, b"more rows", 2000);
        // An unreadable record is said and written afresh.
        std::fs::write(session.join(FILE), b"{").unwrap();
        let said = check_or_record(&session, &config, true).unwrap();
        assert!(said[0].contains("did not read back"), "{said:?}");
        assert!(check_or_record(&session, &config, true).unwrap().is_empty());
    }
}

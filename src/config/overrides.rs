//! Command-line overrides (`--set key=value`): parsing the argument, setting
//! the key in a [`Config`] with the same type, choice and range checks as the
//! file (errors name the key and what was expected), and writing the result
//! into a session's `config.toml` without touching the rest of the file.

use super::*;

/// One `--set KEY=VALUE`: a dotted key and the value as typed. The value
/// is a TOML literal (`3`, `0.1`, `true`, `"x"`, `["a", "b"]`); a bare word
/// that is not one is taken as a string (`combiner.kind=meltr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(arg: &str) -> Result<Self, String> {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE (e.g. aid.iterations=3), got `{arg}`"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(format!(
                "expected a dotted key before `=` (e.g. aid.iterations=3), got `{arg}`"
            ));
        }
        Ok(Override {
            key: key.to_string(),
            value: value.trim().to_string(),
        })
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// `text` as a TOML value: a TOML literal, else (a bare word) a string.
pub fn literal(text: &str) -> toml::Value {
    let text = text.trim();
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Why an inline table or array (`{...}`, `[...]`) is not valid TOML,
/// if it is not: [`literal`] would take it as a string, and the error
/// then read "expected a map, got the string" with a hint about quotes
/// (walkthrough I2's inline table had a duplicate key).
fn broken_structure(text: &str) -> Option<String> {
    let text = text.trim();
    if !(text.starts_with('{') || text.starts_with('[')) {
        return None;
    }
    let error = toml::from_str::<toml::Table>(&format!("v = {text}")).err()?;
    // toml's message quotes the line it parsed (ours, `v = ...`); its last
    // line says what is wrong.
    let message = error
        .message()
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let hint =
        match text.starts_with('[') && !text.contains('"') && text.contains(char::is_alphabetic) {
            true => " (names in a list are quoted: [\"a\", \"b\"])",
            false => "",
        };
    Some(format!(
        "`{text}` is not a valid TOML value: {message}{hint}"
    ))
}

impl Config {
    /// A copy with `key` set from the text of a `--set`, checked as the file
    /// is checked: an unknown key, a value of the wrong type, a name that is
    /// not one of a choice key's options or a value out of range is an
    /// error naming the key and what was expected.
    pub fn with_override(&self, key: &str, text: &str) -> Result<Config, ConfigError> {
        self.with_overrides(&[Override {
            key: key.to_string(),
            value: text.to_string(),
        }])
    }

    /// A copy with every override set, then checked as one file is: each
    /// value's type and choice as it is set, ranges and the rules between
    /// keys on the result, so the order of the `--set`s does not matter
    /// (`combiner.kind=weights` before `combiner.weights={...}` is fine).
    pub fn with_overrides(&self, overrides: &[Override]) -> Result<Config, ConfigError> {
        let mut root = toml::Value::try_from(self).expect("a Config always serialises");
        for o in overrides {
            set_override(&mut root, &o.key, &o.value)?;
        }
        let text = toml::to_string(&root).expect("a toml::Value always serialises");
        // An error the schema cannot place is the override's, if only one.
        let only_key = match overrides {
            [o] => Some(o.key.clone()),
            _ => None,
        };
        Config::parse(&text).map_err(|e| {
            let key = e.key.or(only_key);
            ConfigError {
                message: super::text::readable_type_error(&e.message, key.as_deref()),
                file: None,
                line: None,
                key,
            }
        })
    }
}

/// Sets `key` in a config's TOML tree from the text of a `--set`: a choice
/// key's name is checked against its options, a value the config has is
/// parsed as that value's type; a key it leaves unset (workload.model, a
/// fixed weight) or no key at all is set as typed, for the schema to judge.
fn set_override(root: &mut toml::Value, key: &str, text: &str) -> Result<(), ConfigError> {
    let anchored = anchor_path(key, text);
    let text = anchored.as_str();
    // A string key takes `[...]` as typed (a path may start so).
    let string_key = lookup_mut(root, key).is_some_and(|slot| slot.is_str());
    if let Some(why) = broken_structure(text).filter(|_| !string_key) {
        return Err(ConfigError::at_key(key, why));
    }
    if let Some(names) = choices_of(key) {
        let given = match literal(text) {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        if !names.contains(&given.as_str()) {
            return Err(ConfigError::at_key(
                key,
                super::text::expected_one_of(&names, &given),
            ));
        }
    }
    if let Some(slot) = lookup_mut(root, key).filter(|slot| !slot.is_table()) {
        *slot = parse_value_like(slot, text).map_err(|m| ConfigError::at_key(key, m))?;
        return Ok(());
    }
    let parts: Vec<&str> = key.split('.').collect();
    let (leaf, parents) = parts.split_last().expect("split yields at least one part");
    let mut table = root.as_table_mut().expect("a Config is a table");
    for (depth, part) in parents.iter().enumerate() {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| {
            ConfigError::at_key(
                key,
                format!("`{}` is a value, not a table", parents[..=depth].join(".")),
            )
        })?;
    }
    table.insert(leaf.to_string(), literal(text));
    Ok(())
}

/// Keys whose values are paths. A config file's relative paths are taken
/// from the file's folder; a `--set`'s from the folder it was typed in.
const PATH_KEYS: [&str; 4] = [
    "workload.model",
    "workload.train",
    "workload.val",
    "workload.init_from",
];

/// The `--set` text for `key` with a relative path made absolute from the
/// current directory (as a TOML string), so that a session's `config.toml`,
/// a sweep's plan and a fork never depend on where they are run from; any
/// other text as it is.
pub fn anchor_path(key: &str, text: &str) -> String {
    if !PATH_KEYS.contains(&key) {
        return text.to_string();
    }
    let toml::Value::String(path) = literal(text) else {
        return text.to_string();
    };
    // `init_from = "foundation"` names the built-in checkpoint, not a file.
    if path.is_empty() || Path::new(&path).is_absolute() || path == "foundation" {
        return text.to_string();
    }
    // The shell leaves `~` alone inside `--set key=~/...`.
    let (base, rest) = match path.strip_prefix("~/") {
        Some(rest) => (std::env::var_os("HOME").map(PathBuf::from), rest),
        None => (std::env::current_dir().ok(), path.as_str()),
    };
    let Some(base) = base else {
        return text.to_string();
    };
    let joined = base.join(rest);
    let absolute = std::fs::canonicalize(&joined).unwrap_or(joined);
    toml::Value::String(absolute.display().to_string()).to_string()
}

/// Refuses overrides of keys that only take effect when a run starts (for
/// `resume` and `fork`, which continue from a checkpoint), saying why.
pub fn refuse_restart_only(overrides: &[Override], what: &str) -> Result<(), ConfigError> {
    for o in overrides {
        if let Some(reason) = restart_only_reason(&o.key) {
            return Err(ConfigError::at_key(
                &o.key,
                format!(
                    "cannot change on {what}: {reason}; start a new session with \
                     `meltr-tui run -c CONFIG --set {o}` instead"
                ),
            ));
        }
    }
    Ok(())
}

/// `text` (a config file) with each override's key set to its value in
/// `config` (where the overrides were applied and checked): only those
/// values change; comments and the rest stay byte for byte.
pub fn write_overrides(
    text: &str,
    config: &Config,
    overrides: &[Override],
) -> Result<String, ConfigError> {
    let values = config.flatten();
    overrides.iter().try_fold(text.to_string(), |text, o| {
        let value = values
            .get(&o.key)
            .cloned()
            .unwrap_or_else(|| literal(&o.value));
        edit::set_value(&text, &o.key, &value)
    })
}

/// Parses user text as a TOML value of the same type as `like`.
pub(super) fn parse_value_like(like: &toml::Value, text: &str) -> Result<toml::Value, String> {
    let text = text.trim();
    let parsed: Option<toml::Value> = toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        // The toml crate reads some numbers past f64's range as ±inf.
        .filter(|v| !v.as_float().is_some_and(f64::is_infinite) || spells_infinity(text));
    let type_name = like.type_str();
    match (like, parsed) {
        (toml::Value::String(_), Some(v @ toml::Value::String(_))) => Ok(v),
        (toml::Value::String(_), _) => Ok(toml::Value::String(text.to_string())),
        (toml::Value::Float(_), Some(toml::Value::Integer(i))) => Ok(toml::Value::Float(i as f64)),
        (toml::Value::Float(_), Some(v @ toml::Value::Float(_))) => Ok(v),
        (toml::Value::Integer(_), Some(v @ toml::Value::Integer(_))) => Ok(v),
        (toml::Value::Boolean(_), Some(v @ toml::Value::Boolean(_))) => Ok(v),
        (toml::Value::Array(_), Some(v @ toml::Value::Array(_))) => Ok(v),
        (toml::Value::Float(_), None) => number_toml_refused(text, type_name, false),
        (toml::Value::Integer(_), None) => number_toml_refused(text, type_name, true),
        (_, _) => Err(format!("expected {}, got `{text}`", article(type_name))),
    }
}

/// `inf` as typed (TOML's `inf`, `+inf`, `-inf`), not a number too large.
fn spells_infinity(text: &str) -> bool {
    text.to_ascii_lowercase().contains("inf")
}

/// Text TOML refuses for a number key: a number past 64 bits says its
/// range ("expected a number" would puzzle whoever typed `1e400`); a float
/// key takes any finite number Rust reads (`99999999999999999999`, an
/// integer past 2⁶³ to TOML, is 1e20); an integer with leading zeros says
/// so; anything else expects the type.
fn number_toml_refused(text: &str, type_name: &str, integer: bool) -> Result<toml::Value, String> {
    let plain = text.replace('_', "");
    let whole = plain.parse::<i128>().ok();
    let beyond = format!("`{text}` is beyond the range of a 64-bit {type_name} (TOML's numbers)");
    if integer {
        return Err(match whole {
            Some(n) if i64::try_from(n).is_err() => beyond,
            Some(_) => format!("expected an integer without leading zeros, got `{text}`"),
            None => format!("expected {}, got `{text}`", article(type_name)),
        });
    }
    match plain.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(toml::Value::Float(v)),
        Ok(v) if v.is_infinite() && !spells_infinity(&plain) => Err(beyond),
        _ => Err(format!("expected {}, got `{text}`", article(type_name))),
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" => "an integer".into(),
        "float" => "a number".into(),
        "array" => "an array like [\"a\", \"b\"]".into(),
        other => format!("a {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(config: &Config, arg: &str) -> Result<Config, ConfigError> {
        let o: Override = arg.parse().unwrap();
        config.with_override(&o.key, &o.value)
    }

    #[test]
    fn values_parse_as_toml_literals_or_bare_words() {
        let c = Config::default();
        assert_eq!(set(&c, "aid.iterations=3").unwrap().aid.iterations, 3);
        assert_eq!(set(&c, "train.lr=0.01").unwrap().train.lr, 0.01);
        assert_eq!(set(&c, "train.lr=1").unwrap().train.lr, 1.0);
        assert!(set(&c, "train.trace=false").is_ok());
        let kind = set(&c, "combiner.kind=sum").unwrap().combiner.kind;
        assert_eq!(kind, CombinerKind::Sum);
        let kind = set(&c, "combiner.kind=\"primary\"").unwrap().combiner.kind;
        assert_eq!(kind, CombinerKind::Primary);
        let aux = set(&c, "workload.auxiliary=[\"helpful\"]").unwrap();
        assert_eq!(aux.workload.auxiliary, vec!["helpful".to_string()]);
        let weights = set(&c, "combiner.weights.helpful=0.5").unwrap();
        assert_eq!(weights.combiner.weights.get("helpful"), Some(&0.5));
        let init = set(&c, "workload.init_from=foundation").unwrap_err();
        assert_eq!(init.key.as_deref(), Some("workload.init_from"), "{init}");
    }

    #[test]
    fn bad_overrides_name_the_key_and_what_was_expected() {
        let c = Config::default();
        let err = set(&c, "aid.iterations=many").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("aid.iterations"));
        assert!(err.message.contains("expected an integer"), "{err}");
        let err = set(&c, "combiner.kind=meltrr").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("combiner.kind"));
        assert!(
            err.message.contains("\"meltr\"") && err.message.contains("\"sum\""),
            "{err}"
        );
        let err = set(&c, "aid.alpha=3").unwrap_err();
        assert!(
            err.to_string()
                .contains("key `aid.alpha`: expected 0 < alpha"),
            "{err}"
        );
        let err = set(&c, "aid.bogus=1").unwrap_err();
        assert!(err.to_string().contains("no such key"), "{err}");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = set(&c, "nosection.x=1").unwrap_err();
        assert!(err.to_string().contains("nosection"), "{err}");
        let err = set(&c, "train.lr.x=1").unwrap_err();
        assert!(err.to_string().contains("`train.lr` is a value"), "{err}");
        // An inline table that is not TOML says why, not "got the string"
        // (walkthrough I2's had a duplicate key).
        let err = set(
            &c,
            "combiner.weights={primary = 1.0, helpful = 0.0, helpful = 1.0}",
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("combiner.weights"), "{err}");
        assert!(
            err.message
                .contains("is not a valid TOML value: duplicate key")
                && !err.message.contains("without quotes"),
            "{err}"
        );
        let err = set(&c, "workload.auxiliary=[helpful, harmful]").unwrap_err();
        assert!(err.message.contains("names in a list are quoted"), "{err}");
        assert!("aid.iterations".parse::<Override>().is_err());
        assert!("=3".parse::<Override>().is_err());
        assert!("aid..x=3".parse::<Override>().is_err());
    }

    #[test]
    fn relative_paths_are_taken_from_the_current_directory() {
        let cwd = std::env::current_dir().unwrap();
        let c = set(&Config::default(), "workload.model=models/m.pt").unwrap();
        let model = cwd.join("models/m.pt").display().to_string();
        assert_eq!(c.workload.model.as_deref(), Some(model.as_str()));
        // An existing one is canonical (no `./`), a quoted one is the same.
        let c = set(&Config::default(), "workload.train=\"./Cargo.toml\"").unwrap();
        let manifest = cwd.join("Cargo.toml").canonicalize().unwrap();
        assert_eq!(c.workload.train, Some(manifest.display().to_string()));
        let c = set(&Config::default(), "workload.val=/data/v.safetensors").unwrap();
        assert_eq!(c.workload.val.as_deref(), Some("/data/v.safetensors"));
        let home = std::env::var("HOME").unwrap();
        let c = set(&Config::default(), "workload.model=~/no-such/m.pt").unwrap();
        let expected = Path::new(&home).join("no-such/m.pt").display().to_string();
        assert_eq!(c.workload.model, Some(expected));
        // Other string keys are left as typed, and the built-in foundation.
        let mut video = Config::default();
        video.workload.kind = WorkloadKind::VideoText;
        let c = set(&video, "workload.init_from=foundation").unwrap();
        assert_eq!(c.workload.init_from.as_deref(), Some("foundation"));
        let c = set(&Config::default(), "workload.primary=a/b").unwrap();
        assert_eq!(c.workload.primary, "a/b");
    }

    #[test]
    fn overrides_are_checked_together_in_any_order() {
        let c = Config::default();
        let parsed =
            |args: &[&str]| -> Vec<Override> { args.iter().map(|a| a.parse().unwrap()).collect() };
        // `kind = "weights"` alone is refused (it needs its weights); with
        // them, in either order, it is the same config.
        let weights = "combiner.weights={primary = 1.0, helpful = 0.5, harmful = 0.0}";
        let kind_first = parsed(&["combiner.kind=weights", weights]);
        let weights_first: Vec<Override> = kind_first.iter().rev().cloned().collect();
        let a = c.with_overrides(&kind_first).unwrap();
        let b = c.with_overrides(&weights_first).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.combiner.kind, CombinerKind::Weights);
        assert_eq!(a.combiner.weights.get("primary"), Some(&1.0));
        let err = c
            .with_overrides(&parsed(&["combiner.kind=weights"]))
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("combiner.weights"), "{err}");
        assert!(
            err.to_string()
                .ends_with("e.g. { primary = 1.0, helpful = 1.0, harmful = 1.0 }"),
            "{err}"
        );
        // A loss without a weight is refused, not weighted 0 unsaid
        // (walkthrough M), with a table that would do.
        let err = c
            .with_overrides(&parsed(&[
                "combiner.kind=weights",
                "combiner.weights={primary = 1.0}",
            ]))
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("combiner.weights"), "{err}");
        assert!(
            err.to_string().contains("`helpful`, `harmful` have none")
                && err
                    .to_string()
                    .contains("{ primary = 1.0, helpful = 0.0, harmful = 0.0 }"),
            "{err}"
        );
        // Each value is still checked where it is set, naming its key.
        let err = c
            .with_overrides(&parsed(&["combiner.kind=weights", "aid.iterations=many"]))
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("aid.iterations"), "{err}");
        // A later override of the same key wins.
        let twice = c
            .with_overrides(&parsed(&["train.lr=0.5", "train.lr=0.25"]))
            .unwrap();
        assert_eq!(twice.train.lr, 0.25);
    }

    #[test]
    fn restart_only_keys_are_refused_with_the_reason() {
        let live: Override = "meltr.meta_lr=0.01".parse().unwrap();
        let fixed: Override = "combiner.kind=sum".parse().unwrap();
        refuse_restart_only(std::slice::from_ref(&live), "resume").unwrap();
        let err = refuse_restart_only(&[live, fixed], "resume").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("combiner.kind"));
        assert!(
            err.message.contains("parameters are created at start"),
            "{err}"
        );
    }

    #[test]
    fn writing_overrides_keeps_the_rest_of_the_file() {
        let text = "# mine\n[aid]\niterations = 0 # J\n\n[train]\nlr = 0.003\n";
        let base = Config::parse(text).unwrap();
        let overrides: Vec<Override> = vec![
            "aid.iterations=2".parse().unwrap(),
            "meltr.gamma=0".parse().unwrap(),
        ];
        let config = base.with_overrides(&overrides).unwrap();
        let out = write_overrides(text, &config, &overrides).unwrap();
        assert!(
            out.starts_with("# mine\n[aid]\niterations = 2 # J\n\n[train]\nlr = 0.003\n"),
            "{out}"
        );
        // gamma is a float: `0` is written as one.
        assert!(out.ends_with("[meltr]\ngamma = 0.0\n"), "{out}");
        assert_eq!(Config::parse(&out).unwrap(), config);
    }
}

//! Edits of a config file that keep what the user wrote: one key's value is
//! replaced inside the TOML document (`toml_edit`), and everything else —
//! comments, a comment after the value on the same line, key order, blank
//! lines, quoting, the other keys — stays byte for byte.

use super::{line_of_offset, ConfigError};
use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// `text` with the dotted `key` (`aid.iterations`, `combiner.weights.x`)
/// set to `value`. A key the text does not set is added to its section (the
/// section is added at the end when missing). Text that is not TOML is an
/// error with its line; nothing is guessed.
pub fn set_value(text: &str, key: &str, value: &toml::Value) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| ConfigError {
            file: None,
            line: e.span().map(|s| line_of_offset(text, s.start)),
            key: None,
            message: e.message().trim().to_string(),
        })?;
    let at_key = |message: String| ConfigError {
        file: None,
        line: super::locate_key(text, key),
        key: Some(key.to_string()),
        message,
    };
    let mut new = edit_value(value).map_err(at_key)?;
    let parts: Vec<&str> = key.split('.').collect();
    let (leaf, parents) = parts.split_last().expect("split yields at least one part");
    let mut table: &mut dyn TableLike = doc.as_table_mut();
    // Whether `table` is an inline table (`aid = { iterations = 1 }`):
    // what is added inside one must be inline too.
    let mut inline = false;
    for (depth, part) in parents.iter().enumerate() {
        if !table.contains_key(part) {
            let item = if inline {
                Item::Value(Value::InlineTable(InlineTable::new()))
            } else {
                let mut section = Table::new();
                // `[combiner.weights]` alone, without an empty `[combiner]`.
                section.set_implicit(depth + 1 < parents.len());
                Item::Table(section)
            };
            table.insert(part, item);
        }
        let item = table.get_mut(part).expect("present or just inserted");
        inline = matches!(item, Item::Value(_));
        table = item.as_table_like_mut().ok_or_else(|| {
            at_key(format!(
                "`{}` is not a table in this file",
                parents[..=depth].join(".")
            ))
        })?;
    }
    match table.get_mut(leaf) {
        Some(Item::Value(old)) => {
            // The old value's surroundings: the space before it and a
            // `# comment` after it on the same line.
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        Some(Item::None) | None => {
            table.insert(leaf, Item::Value(new));
        }
        Some(_) => {
            return Err(at_key(
                "is a table in this file; set its keys one at a time".into(),
            ))
        }
    }
    Ok(doc.to_string())
}

/// `full`, a complete config as a session keeps it, written over `source`,
/// the file the user wrote it from: `source` stays as it was (comments, key
/// order, formatting, a value written as `1e-3`) wherever `full` has the
/// same value; a value `full` changed (an override, a path made absolute)
/// is replaced in place, comment kept; the keys and sections only `full`
/// has follow, each section's after the user's keys, new sections at the
/// end. The result parses to `full`. What does not parse comes back as
/// `full`.
pub fn keep_comments(full: &str, source: &str) -> String {
    let (Ok(complete), Ok(mut doc)) = (full.parse::<DocumentMut>(), source.parse::<DocumentMut>())
    else {
        return full.to_string();
    };
    // Sections only `full` has go after all of the user's.
    let mut next_position = last_position(doc.as_table()) + 1;
    write_over(
        doc.as_table_mut(),
        complete.as_table(),
        None,
        &mut next_position,
    );
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    // Whatever the file's shape, the result must read as `full` does.
    let values = |text: &str| toml::from_str::<toml::Table>(text).ok();
    let ours = values(&text);
    match ours.is_some() && ours == values(full) {
        true => text,
        false => full.to_string(),
    }
}

/// Makes `to` (the section at position `at`; `None`: the top level) hold
/// `full`'s keys and values, keeping `to`'s text where a value is the same
/// (see [`keep_comments`]).
fn write_over(to: &mut Table, full: &Table, at: Option<usize>, next_position: &mut usize) {
    let gone: Vec<String> = to
        .iter()
        .filter(|(name, _)| !full.contains_key(name))
        .map(|(name, _)| name.to_string())
        .collect();
    for name in gone {
        to.remove(&name);
    }
    for (name, item) in full.iter() {
        match (to.get_mut(name), item) {
            (Some(Item::Value(old)), Item::Value(new)) => {
                if !same_value(old, new) {
                    let mut new = new.clone();
                    *new.decor_mut() = old.decor().clone();
                    *old = new;
                }
            }
            (Some(Item::Table(old)), Item::Table(new)) => {
                let position = old.position();
                write_over(old, new, position, next_position)
            }
            (Some(_), new) => {
                // A value where `full` has a section (an inline table): the
                // comment above the user's line moves above the section's
                // header, which is written from the same key.
                let mut new = appended(new, at, next_position);
                let mut key = to.key_mut(name).expect("present");
                let above = key.leaf_decor().prefix().cloned();
                key.leaf_decor_mut().clear();
                if let (Item::Table(table), Some(above)) = (&mut new, above) {
                    table.decor_mut().set_prefix(above);
                }
                to.insert(name, new);
            }
            (None, new) => {
                to.insert(name, appended(new, at, next_position));
            }
        }
    }
}

/// `item` to add to a section at `parent` (`None`: the file's top level),
/// each of its sections with a blank line above: right after that section
/// (an equal position keeps the order sections are visited in), or at the
/// end of the file, numbered from `next_position` on.
fn appended(item: &Item, parent: Option<usize>, next_position: &mut usize) -> Item {
    fn place(table: &mut Table, parent: Option<usize>, next_position: &mut usize) {
        let position = parent.unwrap_or_else(|| {
            *next_position += 1;
            *next_position - 1
        });
        table.set_position(position);
        table.decor_mut().set_prefix("\n");
        for (_, item) in table.iter_mut() {
            if let Item::Table(table) = item {
                place(table, Some(position), next_position);
            }
        }
    }
    let mut item = item.clone();
    if let Item::Table(table) = &mut item {
        place(table, parent, next_position);
    }
    item
}

/// The largest section position in `table`, nested sections included.
fn last_position(table: &Table) -> usize {
    table
        .iter()
        .filter_map(|(_, item)| item.as_table())
        .map(|t| t.position().unwrap_or(0).max(last_position(t)))
        .max()
        .unwrap_or(0)
}

/// Whether two TOML values are equal as values (`1e-3` and `0.001` are).
fn same_value(a: &Value, b: &Value) -> bool {
    let parse = |v: &Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        format!("v = {v}").parse::<toml::Table>().ok()
    };
    parse(a).is_some_and(|a| Some(a) == parse(b))
}

/// A `toml::Value` as a `toml_edit` value, written as TOML writes it.
fn edit_value(value: &toml::Value) -> Result<Value, String> {
    let text = value.to_string();
    text.parse::<Value>().map_err(|e| {
        format!(
            "cannot write {text} as a TOML value: {}",
            e.message().trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, key: &str, value: impl Into<toml::Value>) -> String {
        set_value(text, key, &value.into()).unwrap()
    }

    #[test]
    fn only_the_value_changes_comments_order_and_format_stay() {
        let text = "# my run, tuned by hand\n\
                    [train]\n\
                    steps   = 20000   # long\n\
                    lr = 0.003  # by hand\n\
                    \n\
                    # AID: keep J small\n\
                    [aid]\n\
                    alpha = 0.1\n\
                    iterations = 2 # J\n";
        let out = set(text, "train.lr", 0.001);
        assert_eq!(
            out,
            text.replace("lr = 0.003  # by hand", "lr = 0.001  # by hand")
        );
        let out = set(&out, "aid.iterations", 3);
        assert!(out.ends_with("iterations = 3 # J\n"), "{out}");
        assert!(out.contains("steps   = 20000   # long\n"), "{out}");
        assert!(
            out.starts_with("# my run, tuned by hand\n[train]\n"),
            "{out}"
        );
        assert!(
            out.contains("\n# AID: keep J small\n[aid]\nalpha = 0.1\n"),
            "{out}"
        );
    }

    #[test]
    fn a_key_the_file_lacks_is_added_to_its_section_or_a_new_one() {
        let text = "# partial\n[train]\nlr = 0.003 # mine\n";
        let out = set(text, "train.steps", 50);
        assert_eq!(out, "# partial\n[train]\nlr = 0.003 # mine\nsteps = 50\n");
        let out = set(text, "aid.iterations", 1);
        assert!(out.starts_with(text), "{out}");
        assert!(out.ends_with("[aid]\niterations = 1\n"), "{out}");
        let out = set(text, "combiner.weights.helpful", 0.5);
        assert!(
            out.ends_with("[combiner.weights]\nhelpful = 0.5\n"),
            "{out}"
        );
        assert!(!out.contains("[combiner]\n"), "{out}");
        // Inline tables and dotted keys are edited where they are.
        let out = set("aid = { iterations = 1 }\n", "aid.iterations", 4);
        assert_eq!(out, "aid = { iterations = 4 }\n");
        let out = set("aid.iterations = 1 # dotted\n", "aid.iterations", 4);
        assert_eq!(out, "aid.iterations = 4 # dotted\n");
        let out = set("", "meltr.gamma", 0.2);
        assert_eq!(out, "[meltr]\ngamma = 0.2\n");
    }

    #[test]
    fn a_complete_config_is_written_over_the_file_it_came_from() {
        let source = "# my run, tuned by hand\n\
                      [train]\n\
                      lr = 1e-3  # by hand\n\
                      \n\
                      # AID: keep J small\n\
                      [aid]\n\
                      # J, the Neumann terms\n\
                      iterations = 2 # J\n\
                      # the end\n";
        // As the engine writes a session's config: every key, its own order,
        // the values after overrides (iterations is 3 here).
        let full = "[workload]\nkind = \"synthetic\"\n\n[train]\nsteps = 100\nlr = 0.001\n\n\
                    [aid]\nalpha = 0.1\niterations = 3\n";
        let out = keep_comments(full, source);
        assert_eq!(
            out,
            "# my run, tuned by hand\n[train]\nlr = 1e-3  # by hand\nsteps = 100\n\n\
             # AID: keep J small\n[aid]\n# J, the Neumann terms\niterations = 3 # J\nalpha = 0.1\n\
             \n[workload]\nkind = \"synthetic\"\n# the end\n"
        );
        // The same values as `full`, key for key.
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed, toml::from_str::<toml::Table>(full).unwrap());
        // A key `full` lacks goes; an inline section becomes full's.
        let out = keep_comments(full, "gone = 1\n\n# mine\naid = { iterations = 1 }\n");
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed, toml::from_str::<toml::Table>(full).unwrap());
        assert!(out.contains("\n# mine\n[aid]\n"), "{out}");
        let source = "[combiner]\nkind = \"sum\"\n\n# by hand\nweights = { helpful = 0.5 }\n";
        let with_weights = "[combiner]\nkind = \"sum\"\n\n[combiner.weights]\nhelpful = 0.5\n";
        let out = keep_comments(with_weights, source);
        assert_eq!(
            toml::from_str::<toml::Table>(&out).unwrap(),
            toml::from_str::<toml::Table>(with_weights).unwrap(),
            "{out}"
        );
        assert!(out.contains("# by hand\n[combiner.weights]\n"), "{out}");
        // A section only `full` has inside one the file has follows it.
        let full =
            "[combiner]\nkind = \"sum\"\n\n[combiner.weights]\nx = 1\n\n[aid]\nalpha = 0.1\n";
        let out = keep_comments(
            full,
            "[combiner] # mine\nkind = \"sum\"\n[aid]\nalpha = 0.1\n",
        );
        assert_eq!(
            out,
            "[combiner] # mine\nkind = \"sum\"\n\n[combiner.weights]\nx = 1\n[aid]\nalpha = 0.1\n"
        );
        // A source that is not TOML adds nothing.
        assert_eq!(keep_comments(full, "[train\n"), full);
    }

    #[test]
    fn the_shipped_configs_keep_every_comment_line() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<_> = std::fs::read_dir(root.join("configs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.push(root.join("examples/torchscript/two_stream.toml"));
        assert!(files.len() > 3, "{files:?}");
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            let full = crate::config::Config::parse(&source)
                .unwrap()
                .to_toml_string();
            let out = keep_comments(&full, &source);
            for line in source.lines().filter(|l| l.trim_start().starts_with('#')) {
                assert!(out.contains(line), "{}: lost {line:?}", file.display());
            }
        }
    }

    #[test]
    fn text_that_is_not_toml_is_refused_with_its_line() {
        let err = set_value(
            "[train]\nlr = 0.003\nsteps = = 5\n",
            "train.lr",
            &0.1.into(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        let err = set_value("train = 5\n", "train.lr", &0.1.into()).unwrap_err();
        assert!(err.message.contains("`train` is not a table"), "{err}");
    }
}

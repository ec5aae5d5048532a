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

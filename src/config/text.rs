//! A config file as text: reading it (UTF-8, located errors), whether it
//! sets anything, and where a key is written (for error lines).

use super::*;

/// Reads a config file as text. A byte that is not UTF-8 is reported with
/// its line and column (TOML files are UTF-8; an editor may have saved
/// Latin-1).
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    decode_text(bytes).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })
}

/// A config file's bytes as text, or where the first non-UTF-8 byte is.
pub fn decode_text(bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let error = e.utf8_error();
        let at = error.valid_up_to();
        let before = &bytes[..at];
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Everything before `at` is valid UTF-8: count characters.
        let column = std::str::from_utf8(&bytes[line_start..at]).map_or(at - line_start, |s| s.chars().count()) + 1;
        let len = error.error_len().unwrap_or(bytes.len() - at);
        let bad: Vec<String> = bytes[at..at + len]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        ConfigError {
            file: None,
            line: Some(before.iter().filter(|&&b| b == b'\n').count() + 1),
            key: None,
            message: format!(
                "column {column} (byte {at} of the file): {} is not UTF-8; a config file must be UTF-8 text \
                 (save it as UTF-8, or write the character as a \\u escape inside a string)",
                bad.join(" ")
            ),
        }
    })
}

/// Whether TOML text sets no value at all (empty, comments, empty tables).
/// Text that does not parse sets something wrong: the parser says what.
pub fn sets_no_keys(text: &str) -> bool {
    fn leaves(table: &toml::Table) -> usize {
        table
            .values()
            .map(|v| match v {
                toml::Value::Table(t) => leaves(t),
                _ => 1,
            })
            .sum()
    }
    toml::from_str::<toml::Table>(text).is_ok_and(|t| leaves(&t) == 0)
}

pub(super) fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Where a syntax error is, for its message: `; column 17 of `iterations =
/// 2 3`` (TOML's own message names neither the text nor the column).
pub(super) fn syntax_context(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[start..end].trim_end_matches('\r');
    if line.trim().is_empty() {
        return String::new();
    }
    let column = text[start..offset].chars().count() + 1;
    format!("; column {column} of `{}`", line.trim())
}

/// Where a key TOML calls a duplicate was first set: TOML names only the
/// second line (`duplicate key `steps` in table `train``), and a user
/// looking there sees a line that is fine on its own. The 1-based line of
/// the first `key =` in that table, or `[table.key]` header, before `offset`.
pub(super) fn first_definition(text: &str, message: &str, offset: usize) -> Option<usize> {
    let (_, rest) = message.split_once("duplicate key `")?;
    let (key, rest) = rest.split_once('`')?;
    let table = rest
        .strip_prefix(" in table `")
        .and_then(|t| t.split_once('`'))
        .map_or("", |(table, _)| table);
    let dotted = if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    };
    let key_of = |line: &str| {
        line.split_once('=')
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_string())
    };
    // TOML names a dotted key's innermost table only, and an array of
    // tables' element not at all: no guess there.
    let offset = offset.min(text.len());
    let error_line = text[text[..offset].rfind('\n').map_or(0, |i| i + 1)..]
        .lines()
        .next()
        .unwrap_or("");
    let arrays_of_tables = text.lines().any(|l| l.trim_start().starts_with("[["));
    if arrays_of_tables || key_of(error_line).is_some_and(|k| k.contains('.')) {
        return None;
    }
    let mut section = String::new();
    for (i, line) in text[..offset].lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            section = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if section == dotted {
                return Some(i + 1);
            }
            continue;
        }
        let defines = key_of(line).is_some_and(|k| k == key);
        if section == table && defines {
            return Some(i + 1);
        }
    }
    None
}

/// The last array value opened before `offset` and not closed by then:
/// its 1-based line and dotted key. TOML reports an unclosed `[` on the
/// line after it (a walkthrough's `grad_clip = [1.0` on line 15 read as
/// line 16, `eval_every = 50`, with no key).
pub(super) fn unclosed_array(text: &str, offset: usize) -> Option<(usize, String)> {
    let before = &text[..offset.min(text.len())];
    // Only where the error's line is the next statement (a key, a table
    // header): an error inside the array (`[1 2]`, a missing comma) is
    // the array's own, on its own line.
    let error_line = text[before.rfind('\n').map_or(0, |i| i + 1)..]
        .lines()
        .next()
        .unwrap_or("")
        .trim();
    // An error at the end of the text: the array ran to it.
    let at_end = offset >= text.trim_end().len();
    let statement = at_end
        || error_line.starts_with('[')
        || error_line
            .split_once('=')
            .is_some_and(|(key, _)| !key.trim().is_empty() && !key.contains(['"', ',', '[']));
    if !statement {
        return None;
    }
    let (mut section, mut open) = (String::new(), None);
    let mut depth = 0i64;
    for (i, raw) in before.lines().enumerate() {
        // Comments and strings rarely hold brackets in a config; a `#`
        // ends the line's value.
        let line = raw.split('#').next().unwrap_or("").trim();
        if depth == 0 && line.starts_with('[') && !line.contains('=') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            continue;
        }
        if depth == 0 {
            if let Some((key, value)) = line.split_once('=') {
                if value.trim_start().starts_with('[') {
                    open = Some((i + 1, format!("{section}.{}", key.trim())));
                }
            }
        }
        depth += line.matches('[').count() as i64 - line.matches(']').count() as i64;
        depth = depth.max(0);
        if depth == 0 {
            open = None;
        }
    }
    // The error on the array's own line is inside it.
    open.filter(|(line, _)| *line != line_of_offset(text, offset))
}

/// The 1-based line where a dotted key is set, found by tracking `[section]`
/// headers, or where a section is (a misspelt `[combinr]`: walkthrough I's
/// second problem of a file had no line); `None` when the key is not
/// written in the file (a default).
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let (section, leaf) = match key.split_once('.') {
        Some((s, rest)) => (s, rest.split('.').next().unwrap_or(rest)),
        None => return locate_section(text, key),
    };
    let mut current = String::new();
    let mut section_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            current = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if current == section {
                section_line = Some(i + 1);
            }
            continue;
        }
        if current == section {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim().trim_matches('"') == leaf {
                    return Some(i + 1);
                }
            }
        }
    }
    section_line
}

/// The 1-based line of section `name`'s header (`[name]`, `[name.sub]`),
/// or of a top-level `name = …` / `name.key = …` before any header.
fn locate_section(text: &str, name: &str) -> Option<usize> {
    let mut top_level = true;
    text.lines()
        .position(|raw| {
            let line = raw.trim();
            if let Some(header) = line.strip_prefix('[') {
                top_level = false;
                let header = header.trim_start_matches('[').trim_end_matches(']').trim();
                return header.split('.').next().map(str::trim) == Some(name);
            }
            let key = line
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"'));
            top_level && key.is_some_and(|k| k.split('.').next().map(str::trim) == Some(name))
        })
        .map(|i| i + 1)
}

/// Of `names`, the one `typed` most likely means: the one it spells in
/// another case, [`nearest_spelling`]'s,
/// else the only one it abbreviates (`acc` for `accuracy`, walkthrough R)
/// or that abbreviates it, three characters at least (a held-out model's
/// loss `shuf`, typed `shuffle`).
pub fn name_meant<'a>(typed: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let names: Vec<&str> = names.into_iter().collect();
    // The same name in other case first (walkthrough Z2's `R2` for `r2`).
    let same_but_case = names.iter().find(|n| n.eq_ignore_ascii_case(typed));
    same_but_case
        .copied()
        .or_else(|| nearest_spelling(typed, names.iter().copied()))
        .or_else(|| {
            // (Not where what follows is a word or a number of its own:
            // `accuracy_top5` is no misspelt `accuracy`.)
            let abbreviates = |n: &str| {
                n.chars().count() >= 3
                    && typed.strip_prefix(n).is_some_and(|rest| {
                        !rest.starts_with(|c: char| {
                            matches!(c, '_' | '/' | '-' | '.') || c.is_ascii_digit()
                        })
                    })
            };
            let mut longer = names
                .iter()
                .filter(|n| (typed.chars().count() >= 2 && n.starts_with(typed)) || abbreviates(n));
            match (longer.next(), longer.next()) {
                (Some(only), None) => Some(*only),
                _ => None,
            }
        })
        .or_else(|| {
            // Its first letter and the number it ends with: torch's dtype
            // names (walkthrough N1's `float64` for `f64`).
            let typed = typed.strip_prefix("torch.").unwrap_or(typed);
            let first = typed.chars().next()?;
            let number = typed.trim_start_matches(|c: char| !c.is_ascii_digit());
            let short = format!("{first}{number}");
            (!number.is_empty())
                .then(|| names.iter().find(|n| n.eq_ignore_ascii_case(&short)))?
                .copied()
        })
}

/// "expected one of "a", "b", got "x"", with the choice `given` most
/// likely means (walkthrough G3's `combiner.kind = "metlr"` had the list
/// alone).
pub fn expected_one_of(names: &[&str], given: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let meant = name_meant(given, names.iter().copied())
        .map_or(String::new(), |n| format!(" (did you mean \"{n}\"?)"));
    format!(
        "expected one of {}, got \"{given}\"{meant}",
        quoted.join(", ")
    )
}

/// Of `names`, the one `typed` most likely misspells: the nearest by edit
/// distance, within a third of its length (two edits at least).
pub fn nearest_spelling<'a>(
    typed: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    names
        .into_iter()
        .map(|k| (edit_distance(typed, k), k))
        .min()
        .filter(|(d, k)| *d <= (k.chars().count() / 3).max(2))
        .map(|(_, k)| k)
}

/// serde's "unknown field `lrr`, expected one of `device`, …" with the
/// nearest key first ("did you mean `lr`?"): the list alone is long, and
/// a pane that shows a few lines of the error cut it off before the key.
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (typed, rest) = rest.split_once('`')?;
    let keys: Vec<&str> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    let spelled = || nearest_spelling(typed, keys.iter().copied());
    // `lr_rate`, `train_steps`: one of ours with a word added.
    let with_a_word = || {
        keys.iter()
            .filter(|k| typed.starts_with(&format!("{k}_")) || typed.ends_with(&format!("_{k}")))
            .max_by_key(|k| k.len())
            .copied()
    };
    // A key of another section (walkthrough G3's `meltr.iterations`, J
    // being `aid.iterations`), named in full.
    let elsewhere = || {
        let full: Vec<String> = Config::default()
            .flatten()
            .into_keys()
            .filter(|k| k.rsplit('.').next() == Some(typed))
            .collect();
        (full.len() == 1).then(|| full[0].clone())
    };
    // (The same key elsewhere before one of ours with a word added: a
    // review's `train.meta_lr` was pointed at `lr`.)
    let nearest = other_frameworks_name(typed)
        .filter(|k| keys.contains(k))
        .or_else(spelled)
        .map(str::to_string)
        .or_else(elsewhere)
        .or_else(|| with_a_word().map(str::to_string))
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    Some(format!(
        "no such key `{typed}`{nearest}; the keys here: {}",
        keys.join(", ")
    ))
}

/// serde's "unknown variant `metlr`, expected one of `primary`, …" in
/// [`expected_one_of`]'s words, with the choice it most likely means.
fn unknown_choice_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown variant `")?;
    let (given, rest) = rest.split_once('`')?;
    let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    (!names.is_empty()).then(|| expected_one_of(&names, given))
}

/// Our key for a name other training tools use (`learning_rate` is no
/// misspelling of `lr`).
fn other_frameworks_name(typed: &str) -> Option<&'static str> {
    Some(match typed {
        "learning_rate" | "learningrate" | "base_lr" => "lr",
        "max_steps" | "num_steps" | "total_steps" | "iterations" => "steps",
        "clip_grad_norm" | "max_grad_norm" | "clip" | "gradient_clip" => "grad_clip",
        "batch" | "bs" | "batchsize" | "train_batch_size" => "batch_size",
        "scheduler" | "lr_scheduler" | "schedule" => "lr_schedule",
        "meta_learning_rate" | "meta_lr_rate" => "meta_lr",
        "neumann_iterations" | "neumann_steps" | "j" => "iterations",
        "meta_interval" | "meta_steps_every" => "meta_every",
        _ => return None,
    })
}

/// Levenshtein distance by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// serde's "invalid type: string \"300\", expected u64" (or "invalid
/// value: integer `-3`, expected u64") in a user's words:
/// "expected a whole number ≥ 0, got the string \"300\" (numbers and true/
/// false are written without quotes)". Other messages pass unchanged.
/// `key`, where known, words a count's range (`train.steps`: "≥ 1").
pub fn readable_type_error(message: &str, key: Option<&str>) -> String {
    if let Some(hinted) = unknown_key_hint(message).or_else(|| unknown_choice_hint(message)) {
        return hinted;
    }
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let Some((got, expected)) = rest.split_once(", expected ") else {
        return message.to_string();
    };
    let (expected, after) = match expected.split_once(';') {
        Some((e, after)) => (e, format!(";{after}")),
        None => (expected, String::new()),
    };
    let expected = expected.trim();
    let unsigned_max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    // Only the leading type word is serde's; the rest is the user's value.
    let (what, value) = got.split_once(' ').unwrap_or((got, ""));
    let value = value.trim_matches('`');
    let too_large = unsigned_max.is_some() && what == "integer" && !value.starts_with('-');
    let wanted = match expected {
        _ if too_large => format!(
            "a whole number at most {}",
            unsigned_max.unwrap_or(u64::MAX)
        ),
        "u8" | "u16" | "u32" | "u64" | "usize" => super::validate::whole_number_range(key),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        other => other.to_string(),
    };
    let hint = if what == "string" && wanted != "a string" {
        " (numbers and true/false are written without quotes)"
    } else {
        ""
    };
    let got = match what {
        "string" => format!("the string {value}"),
        "integer" => value.to_string(),
        "floating" => format!(
            "the number {}",
            value.trim_start_matches("point ").trim_matches('`')
        ),
        "boolean" => value.to_string(),
        _ => got.to_string(),
    };
    format!("expected {wanted}, got {got}{hint}{after}")
}

//! Tests of parsing, validation, diffs and live edits.

use super::*;

mod hints;

#[test]
fn defaults_validate_and_roundtrip() {
    let c = Config::default();
    c.validate().unwrap();
    let back = Config::parse(&c.to_toml_string()).unwrap();
    assert_eq!(back, c);
}

/// Every problem of a file, up to four, not the first alone (walkthrough
/// T: a live edit's typo hid a negative learning rate until it was fixed),
/// the further ones in the file's order (walkthrough B's read 3, 8, 6, 5).
#[test]
fn further_problems_are_said_after_the_first_with_their_lines() {
    let text = "[aid]\niteratoins = 1\n[train]\nlr = -1.0\nsteps = 0\n";
    let err = Config::parse(text).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(2), Some("aid.iteratoins"))
    );
    let said = err.to_string();
    assert!(
        said.contains("(did you mean `iterations`?); the keys here: iterations, alpha, mode, jvp, max_growth; also line 4: key `train.lr`: expected a finite number > 0, got -1; also line 5: key `train.steps`: "),
        "{said}"
    );
    // A live edit's file, read over the config in force, alike.
    let over = Config::parse_over(&Config::default(), text)
        .unwrap_err()
        .to_string();
    assert_eq!(over, said);
    // A misspelt section, after another problem, has its line too
    // (walkthrough I: `also key combinr: …` with no line).
    let section = Config::parse("[train]\nlr = \"fast\"\n\n[combinr]\nkind = \"sum\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        section.contains("; also line 4: key `combinr`: no such key"),
        "{section}"
    );
    assert_eq!(super::text::locate_key("x = 1\n[a]\nb = 2\n", "x"), Some(1));
    assert_eq!(super::text::locate_key("[a]\nx = 1\n[x.y]\n", "x"), Some(3));
    assert_eq!(super::text::locate_key("[a]\nx = 1\n", "x"), None);
    // One problem is said alone; a syntax error stops the search.
    let one = Config::parse("[train]\nlr = -1.0\n")
        .unwrap_err()
        .to_string();
    assert!(!one.contains("also"), "{one}");
    let syntax = Config::parse("[train\nlr = -1.0\n")
        .unwrap_err()
        .to_string();
    assert!(!syntax.contains("also"), "{syntax}");
    // Four at most.
    let many =
        "[train]\nlr = -1.0\nsteps = 0\neval_every = 0\nlog_every = 0\ncheckpoint_every = 0\n";
    let said = Config::parse(many).unwrap_err().to_string();
    assert_eq!(said.matches("; also ").count(), 3, "{said}");
}

#[test]
fn unknown_key_names_line_and_key() {
    let err = Config::parse("[aid]\niterations = 2\nbogus = 1\n").unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.to_string().contains("bogus"), "{err}");
    // A typo gets the nearest key first, before the section's list.
    let typo = Config::parse("[train]\nlrr = 0.1\n")
        .unwrap_err()
        .to_string();
    assert!(
        typo.ends_with("key `train.lrr`: no such key `lrr` (did you mean `lr`?); the keys here: device, dtype, threads, steps, lr, lr_schedule, weight_decay, grad_clip, eval_every, checkpoint_every, keep_checkpoints, checkpoint_best, log_every, shares_every, trace, collective_timeout_s, bucket_mb"),
        "{typo}"
    );
    // Another tool's name for a key is no typo, but gets ours.
    for (section, typed, ours) in [
        ("train", "learning_rate", "lr"),
        ("train", "max_steps", "steps"),
        ("workload", "batch", "batch_size"),
        // Two edits from `jvp`, but meant as J.
        ("aid", "j", "iterations"),
        // One of ours with a word added.
        ("train", "lr_rate", "lr"),
        ("train", "total_eval_every", "eval_every"),
    ] {
        let other = Config::parse(&format!("[{section}]\n{typed} = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(
            other.contains(&format!("no such key `{typed}` (did you mean `{ours}`?)")),
            "{other}"
        );
    }
    // Nothing near: no guess.
    let far = Config::parse("[aid]\nbogus = 1\n").unwrap_err().to_string();
    assert!(
        far.contains("no such key `bogus`; the keys here: "),
        "{far}"
    );
    let by_set = Config::default()
        .with_override("meltr.gama", "0.3")
        .unwrap_err()
        .to_string();
    assert!(
        by_set.contains("no such key `gama` (did you mean `gamma`?)"),
        "{by_set}"
    );
}

/// A `--set` number TOML refuses for its size says so (a walkthrough's
/// `train.lr=1e400` read "expected a number").
#[test]
fn a_set_number_past_64_bits_says_its_range() {
    let said = |key: &str, text: &str| {
        Config::default()
            .with_override(key, text)
            .unwrap_err()
            .to_string()
    };
    for (key, text, kind) in [
        ("train.lr", "1e400", "float"),
        ("train.lr", "-2.5E+999", "float"),
        ("train.steps", "18446744073709551616", "integer"),
    ] {
        let message = said(key, text);
        assert!(
            message.contains(&format!("`{text}` is beyond the range of a 64-bit {kind}")),
            "{key}={text}: {message}"
        );
    }
    // A float key takes an integer TOML refuses past 2⁶³ as the float it
    // is; an integer with leading zeros is said to be one.
    let big = Config::default()
        .with_override("train.lr", "99999999999999999999")
        .unwrap();
    assert_eq!(big.train.lr, 1e20);
    assert!(said("train.steps", "007").contains("expected an integer without leading zeros"));
    // Not a number at all, or a float for an integer key: the type.
    assert!(said("train.lr", "fast").contains("expected a number, got `fast`"));
    assert!(said("train.steps", "1e400").contains("expected an integer, got `1e400`"));
}

#[test]
fn out_of_range_names_key_and_line() {
    let err = Config::parse("[train]\nsteps = 10\n\n[aid]\nalpha = 3.0\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("aid.alpha"));
    assert_eq!(err.line, Some(5));
    assert!(err.message.contains("0 < alpha <= 1"), "{err}");
}

#[test]
fn meltr_sizes_have_a_ceiling() {
    let err = Config::parse("[meltr]\nd_model = 4000000\nheads = 1\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("key `meltr.d_model`: expected at most 8192 (MELTR is a small transformer"),
        "{err}"
    );
    assert!(Config::parse("[meltr]\nd_ff = 32768\n").is_ok());
    assert!(Config::parse("[meltr]\nd_ff = 32769\n").is_err());
}

#[test]
fn heads_must_divide_d_model() {
    let err = Config::parse("[meltr]\nd_model = 10\nheads = 3\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("meltr.heads"));
}

#[test]
fn cosine_schedule_runs_from_lr_to_zero_and_constant_stays() {
    let mut t = TrainConfig {
        lr: 0.01,
        steps: 100,
        ..Default::default()
    };
    assert_eq!(t.lr_at(1), 0.01);
    assert_eq!(t.lr_at(100), 0.01);
    t.lr_schedule = LrSchedule::Cosine;
    assert_eq!(t.lr_at(1), 0.01);
    assert!((t.lr_at(51) - 0.005).abs() < 1e-12, "{}", t.lr_at(51));
    assert!(t.lr_at(100) > 0.0 && t.lr_at(100) < 1e-5);
    assert!(t.lr_at(30) > t.lr_at(31));
    // Past the horizon (steps lowered live) it stays at zero.
    assert!(t.lr_at(500).abs() < 1e-12);
    let err = Config::parse("[train]\nlr_schedule = \"linear\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("train.lr_schedule"), "{err}");
    let err = Config::parse("[meltr]\ninit = \"zeros\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("meltr.init"), "{err}");
    assert!(restart_only_reason("meltr.init").is_some());
}

#[test]
fn shares_come_with_the_logged_step_that_reaches_each_multiple() {
    let at = |log_every: u64, shares_every: u64| -> Vec<u64> {
        let mut t = TrainConfig::default();
        (t.log_every, t.shares_every) = (log_every, shares_every);
        (1..=30)
            .filter(|s| s % log_every == 0 && t.shares_at(*s))
            .collect()
    };
    assert_eq!(at(1, 10), [10, 20, 30]);
    assert_eq!(at(10, 10), [10, 20, 30]);
    // Logged steps 6, 12, 15, 21, 27, 30 reach the multiples 5 … 30.
    assert_eq!(at(3, 5), [6, 12, 15, 21, 27, 30]);
    // Sharing at least as often as logging: every logged step.
    assert_eq!(at(4, 1), [4, 8, 12, 16, 20, 24, 28]);
    assert_eq!(at(4, 3), [4, 8, 12, 16, 20, 24, 28]);
}

#[test]
fn diff_marks_restart_only_keys() {
    let old = Config::default();
    let mut new = old.clone();
    new.aid.iterations = 3;
    new.meltr.d_model = 64;
    let changes = old.diff(&new);
    assert_eq!(changes.len(), 2);
    let live = changes.iter().find(|c| c.key == "aid.iterations").unwrap();
    assert!(live.restart_only.is_none());
    let restart = changes.iter().find(|c| c.key == "meltr.d_model").unwrap();
    assert!(restart.restart_only.is_some());
    assert!(restart_only_reason("workload.seed").is_some());
    assert!(restart_only_reason("workloadx").is_none());
}

#[test]
fn keeping_restart_only_matches_the_restart_only_list() {
    let running = Config::default();
    let mut edited = Config::default();
    edited.workload.seed = 9;
    edited.workload.batch_size = 3;
    edited.train.device = "cpu".into();
    edited.train.dtype = crate::config::Dtype::F64;
    edited.combiner.kind = crate::config::CombinerKind::Sum;
    edited.meltr.d_model = 16;
    edited.meltr.d_hidden = 16;
    edited.meltr.d_ff = 16;
    edited.meltr.heads = 2;
    edited.aid.iterations = 4;
    let requested = running.diff(&edited);
    assert!(
        requested
            .iter()
            .filter(|c| c.restart_only.is_some())
            .count()
            >= 9
    );
    let kept = running.diff(&edited.keeping_restart_only_of(&running));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].key, "aid.iterations");
}

/// A different valid value for `key` (for tests that must change a key).
fn another(key: &str, value: &toml::Value) -> toml::Value {
    match value {
        toml::Value::String(s) => match choices_of(key) {
            Some(names) => toml::Value::String(
                names
                    .into_iter()
                    .find(|n| n != s)
                    .expect("two options")
                    .into(),
            ),
            None => toml::Value::String(format!("{s}-other")),
        },
        toml::Value::Integer(i) => toml::Value::Integer(i + 1),
        toml::Value::Float(f) => toml::Value::Float(f * 2.0 + 1.0),
        toml::Value::Boolean(b) => toml::Value::Boolean(!b),
        toml::Value::Array(a) => {
            let mut a = a.clone();
            a.push(toml::Value::String("other".into()));
            toml::Value::Array(a)
        }
        other => panic!("no other value for {other:?}"),
    }
}

/// `choices_of` knows every choice key, and every name it lists reads
/// back as that key's value.
#[test]
fn choices_of_covers_every_choice_key() {
    let running = Config::default();
    for (key, value) in running.flatten() {
        let toml::Value::String(_) = value else {
            continue;
        };
        let with = |text: &str| {
            let mut root = toml::Value::try_from(&running).unwrap();
            *lookup_mut(&mut root, &key).unwrap() = toml::Value::String(text.into());
            root.try_into::<Config>()
        };
        match choices_of(&key) {
            Some(names) => {
                assert!(with("no-such-option").is_err(), "{key} took any text");
                for name in names {
                    let config = with(name).unwrap();
                    assert_eq!(config.flatten()[&key].as_str(), Some(name), "{key}");
                }
            }
            None => assert!(
                with("free text").is_ok(),
                "{key} is a choice: list it in choices_of"
            ),
        }
    }
}

/// Issue 19, item 4: `meltr.init` is restart-only but a live edit of it
/// was logged as changed. Every key under every [`RESTART_ONLY`] entry,
/// edited, is kept at its running value; and nothing else is.
#[test]
fn every_restart_only_key_is_kept_and_every_live_key_applies() {
    let running = Config::default();
    let flat = running.flatten();
    for (prefix, _) in RESTART_ONLY {
        let keys: Vec<&String> = flat
            .keys()
            .filter(|k| restart_only_reason(k).is_some() && k.starts_with(prefix))
            .collect();
        assert!(!keys.is_empty(), "{prefix} names no key of the config");
        for key in keys {
            let mut root = toml::Value::try_from(&running).unwrap();
            let slot = lookup_mut(&mut root, key).unwrap();
            *slot = another(key, slot);
            let edited: Config = root.try_into().unwrap();
            let requested = running.diff(&edited);
            assert_eq!(requested.len(), 1, "{key}: {requested:?}");
            assert!(requested[0].restart_only.is_some(), "{key}");
            let kept = running.diff(&edited.keeping_restart_only_of(&running));
            assert!(kept.is_empty(), "{key} was applied live: {kept:?}");
        }
    }
    // Every other key is live: an edit of it goes through.
    for key in flat.keys().filter(|k| restart_only_reason(k).is_none()) {
        let mut root = toml::Value::try_from(&running).unwrap();
        let slot = lookup_mut(&mut root, key).unwrap();
        *slot = another(key, slot);
        let edited: Config = root.try_into().unwrap();
        let kept = running.diff(&edited.keeping_restart_only_of(&running));
        assert_eq!(kept.len(), 1, "{key}: {kept:?}");
    }
}

#[test]
fn threads_have_an_upper_bound() {
    let err = Config::parse("[train]\nthreads = 5000\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("train.threads"), "{err}");
    assert_eq!(err.line, Some(2));
    assert!(Config::parse("[train]\nthreads = 0\n").is_err());
    Config::parse(&format!("[train]\nthreads = {}\n", max_threads())).unwrap();
}

#[test]
fn the_collective_timeout_is_a_restart_only_key_from_one_second_to_a_day() {
    assert_eq!(Config::default().train.collective_timeout_s, 300);
    let c = Config::parse("[train]\ncollective_timeout_s = 30\n").unwrap();
    assert_eq!(
        c.train.collective_timeout(),
        std::time::Duration::from_secs(30)
    );
    for bad in [0, MAX_COLLECTIVE_TIMEOUT_S + 1] {
        let err = Config::parse(&format!("[train]\ncollective_timeout_s = {bad}\n")).unwrap_err();
        assert_eq!(
            err.key.as_deref(),
            Some("train.collective_timeout_s"),
            "{err}"
        );
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("a day at most"), "{err}");
    }
    assert!(restart_only_reason("train.collective_timeout_s").is_some());
}

#[test]
fn the_bucket_size_is_a_restart_only_key_from_zero_to_4096_mb() {
    assert_eq!(Config::default().train.bucket_mb, 25.0);
    for (text, mb) in [("0", 0.0), ("1", 1.0), ("0.5", 0.5)] {
        let c = Config::parse(&format!("[train]\nbucket_mb = {text}\n")).unwrap();
        assert_eq!(c.train.bucket_mb, mb);
    }
    for bad in ["-1", "4097", "nan"] {
        let err = Config::parse(&format!("[train]\nbucket_mb = {bad}\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("train.bucket_mb"), "{err}");
        assert!(
            err.message.contains("one all-reduce after the backward"),
            "{err}"
        );
    }
    assert!(restart_only_reason("train.bucket_mb").is_some());
}

#[test]
fn with_value_type_and_range_checks() {
    let c = Config::default();
    assert_eq!(c.with_value("train.lr", "0.01").unwrap().train.lr, 0.01);
    assert_eq!(c.with_value("train.lr", "1").unwrap().train.lr, 1.0);
    assert!(c
        .with_value("train.lr", "-1")
        .unwrap_err()
        .message
        .contains("> 0"));
    assert!(c
        .with_value("aid.iterations", "1.5")
        .unwrap_err()
        .message
        .contains("integer"));
    assert_eq!(
        c.with_value("aid.mode", "exact").unwrap().aid.mode,
        AidMode::Exact
    );
    assert!(c.with_value("aid.mode", "fast").is_err());
    assert!(c.with_value("aid.nope", "1").is_err());
}

/// Issue 19, item 14: a non-UTF-8 byte said only "stream did not
/// contain valid UTF-8", with no line.
#[test]
fn a_non_utf8_byte_is_located_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    // "café" in Latin-1 on line 3: é is the single byte 0xe9.
    std::fs::write(&path, b"[workload]\nseed = 1\n# caf\xe9\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.file.as_deref(), Some(path.as_path()));
    assert_eq!(err.line, Some(3), "{err}");
    let text = err.to_string();
    assert!(text.contains("latin1.toml:3:"), "{text}");
    assert!(text.contains("column 6"), "{text}");
    assert!(text.contains("0xe9") && text.contains("UTF-8"), "{text}");
    // The column counts characters, not bytes, before the bad byte.
    assert!(decode_text("a = \"é\"\n".as_bytes().to_vec()).is_ok());
    let mut bytes = "k = \"éé".as_bytes().to_vec();
    bytes.push(0xff);
    let err = decode_text(bytes).unwrap_err();
    assert_eq!(err.line, Some(1));
    assert!(err.message.contains("column 8"), "{err}");
}

/// Issue 19, item 14: an empty or comment-only config silently ran
/// 600 steps of built-in defaults.
#[test]
fn a_config_that_sets_no_keys_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in [
        "",
        "\n\n",
        "# nothing here yet\n  # still nothing\n",
        "[train]\n# lr = 1\n",
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("empty{i}.toml"));
        std::fs::write(&path, body).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("empty{i}.toml: sets no keys")),
            "{err}"
        );
        assert!(err.contains("configs/default.toml"), "{err}");
    }
    // One key is enough; bad syntax is still reported as such.
    let path = dir.path().join("one.toml");
    std::fs::write(&path, "# mine\n[train]\nsteps = 5\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().train.steps, 5);
    std::fs::write(&path, "[train\n").unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("one.toml:1:") && !err.contains("sets no keys"),
        "{err}"
    );
}

/// A TOML syntax error's message has a line break; the TUI and the events
/// glued its halves ("invalid table headerexpected"): one line, joined.
#[test]
fn a_syntax_error_reads_as_one_line() {
    let err = Config::parse("[train\nlr = 1\n").unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains("; "), "{err}");
}

/// TOML names only the second line of a duplicate key (walkthrough M).
#[test]
fn a_duplicate_key_names_the_line_that_first_set_it() {
    // The same key in another table is no duplicate; a table opened twice is.
    let text = "[aid]\nsteps = 3\n[train]\nsteps = 400\n\n[train]\n";
    let err = Config::parse(text).unwrap_err().to_string();
    assert!(err.starts_with("line 6: invalid table header"), "{err}");
    assert!(err.ends_with("; it first appears on line 3"), "{err}");
    let text = "[train]\nsteps = 400\nlr = 0.001\nsteps = 50\n";
    let err = Config::parse(text).unwrap_err().to_string();
    assert!(err.starts_with("line 4: duplicate key `steps`"), "{err}");
    assert!(err.ends_with("; it first appears on line 2"), "{err}");
    // TOML names a dotted key's innermost table, and no array-of-tables
    // element: no line is guessed there.
    for text in [
        "[combiner]\nkind = \"weights\"\nweights.a = 1\nweights.a = 2\n",
        "[[x]]\na = 1\n[[x]]\na = 2\na = 3\n",
    ] {
        let err = Config::parse(text).unwrap_err().to_string();
        assert!(
            err.contains("duplicate key") && !err.contains("first appears"),
            "{err}"
        );
    }
}

/// TOML's syntax messages name neither the text nor the column ("expected
/// newline, `#`"): the error quotes the line and points at the column.
#[test]
fn a_syntax_error_quotes_its_line_and_column() {
    let err = Config::parse("[aid]\niterations = 2 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("line 2: "), "{err}");
    assert!(err.ends_with("; column 16 of `iterations = 2 3`"), "{err}");
    // An array left open is reported on the next line by TOML: the error
    // names the line and key that opened it (walkthrough F).
    let text = "[train]\nlr = 0.001\ngrad_clip = [1.0\neval_every = 50\n";
    let err = Config::parse(text).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert_eq!(err.key.as_deref(), Some("train.grad_clip"), "{err}");
    assert!(
        err.to_string()
            .ends_with("; the array of `train.grad_clip` opened on line 3 has no closing `]`"),
        "{err}"
    );
    // Left open on the file's last line.
    let err = Config::parse("[train]\nlr = 0.001\ngrad_clip = [1.0\n").unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(3), Some("train.grad_clip")),
        "{err}"
    );
    // A missing comma is the array's own error, on its own line.
    for (text, line) in [
        (
            "[train]\nsteps = 5\n[workload]\nauxiliary = [\"a\" \"b\"]\n",
            4,
        ),
        (
            "[workload]\nauxiliary = [\n  \"a\"\n  \"b\",\n]\n[aid]\niterations = 2\n",
            4,
        ),
    ] {
        let err = Config::parse(text).unwrap_err();
        assert!(!err.to_string().contains("no closing"), "{err}");
        assert_eq!(err.line, Some(line), "{err}");
    }
    // A closed array before the error is not blamed.
    let err = Config::parse("[workload]\nauxiliary = [\"a\", \"b\"]\n[aid]\niterations = 2 3\n")
        .unwrap_err();
    assert!(!err.to_string().contains("no closing"), "{err}");
    assert_eq!(err.line, Some(4), "{err}");
    // A key above every section is no syntax error: the keys listed are
    // the sections, with no quoted line among them.
    let err = Config::parse("steps = 100\n").unwrap_err().to_string();
    assert!(
        err.contains("no such key `steps`") && err.ends_with("meltr, aid"),
        "{err}"
    );
}

/// A name meant: a misspelling's nearest, else the only name it
/// abbreviates (walkthrough R's `table --metric acc`), never a guess
/// between two.
#[test]
fn a_name_meant_is_a_spelling_or_the_only_abbreviated_one() {
    let names = ["accuracy", "eval_loss/cls", "weight/cls", "weight/aux"];
    assert_eq!(super::name_meant("acc", names), Some("accuracy"));
    assert_eq!(super::name_meant("R2", ["rmse", "r2", "mae"]), Some("r2"));
    assert_eq!(super::name_meant("MAE", ["rmse", "r2", "mae"]), Some("mae"));
    assert_eq!(super::name_meant("acuracy", names), Some("accuracy"));
    assert_eq!(super::name_meant("weight", names), None);
    assert_eq!(super::name_meant("a", names), None);
    // A name that abbreviates what was typed.
    let losses = ["cls", "latent", "shuf", "raw"];
    assert_eq!(super::name_meant("shuffle", losses), Some("shuf"));
    assert_eq!(super::name_meant("clsx_extra", losses), Some("cls"));
    assert_eq!(super::name_meant("accuracy_top5", ["accuracy"]), None);
    assert_eq!(super::name_meant("shuffle", ["shu", "shuf"]), None);
    let kinds = ["f32", "f64"];
    assert_eq!(super::name_meant("float64", kinds), Some("f64"));
    assert_eq!(super::name_meant("torch.float32", kinds), Some("f32"));
    assert_eq!(super::name_meant("float16", kinds), None);
}

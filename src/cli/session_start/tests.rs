//! Tests of opening a session's TUI and what it says when it ends.

use super::*;

#[test]
fn a_stop_from_the_tui_says_where_as_the_stop_command_does() {
    use crate::session::metrics::{Level, MetricLine, Record};
    let root = tempfile::tempdir().unwrap();
    let dir = session::create(root.path(), "s", &Config::default()).unwrap();
    let fallback = stopped_words(&dir, "s-id", Status::Stopped);
    assert!(
        fallback.starts_with("session s-id: stopped\ncontinue it with: "),
        "{fallback}"
    );
    let mark = format!(
        "{}140 of 400; `resume` continues from step 100",
        session::log::STOPPED_AT
    );
    let mut log = session::log::MetricsWriter::open(&SessionDir::new(&dir).metrics()).unwrap();
    log.append(&MetricLine {
        step: 140,
        time: 1.0,
        wall: None,
        record: Record::Event {
            level: Level::Info,
            message: mark.clone(),
        },
    })
    .unwrap();
    assert_eq!(
        stopped_words(&dir, "s-id", Status::Stopped),
        format!("session s-id: {mark}")
    );
    // A run that finished before the stop took is not said to have stopped.
    assert!(stopped_words(&dir, "s-id", Status::Finished).starts_with("session s-id: finished\n"));
}

#[test]
fn the_tui_opens_on_restart_only_keys_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let layout = SessionDir::new(dir.path());
    let in_force = Config::default();
    let write = |path: PathBuf, config: &Config| {
        std::fs::write(path, toml::to_string(config).unwrap()).unwrap();
    };
    write(layout.config_in_force(), &in_force);
    // A refused restart-only edit and an accepted live one in the file.
    let mut edited = in_force.clone();
    edited.meltr.d_model = in_force.meltr.d_model / 2;
    edited.train.lr = in_force.train.lr / 2.0;
    write(layout.config(), &edited);
    let (opened, refused) = attach_config(dir.path()).unwrap();
    assert_eq!(opened.meltr.d_model, in_force.meltr.d_model);
    assert_eq!(opened.train.lr, edited.train.lr);
    assert_eq!(refused, None);
    // A file that does not read (walkthrough H: attach refused to open):
    // the config in force, and why.
    let text = std::fs::read_to_string(layout.config()).unwrap();
    let bad = text.replace("iterations = ", "iterations = \"two\" # ");
    assert_ne!(bad, text);
    std::fs::write(layout.config(), &bad).unwrap();
    let (opened, refused) = attach_config(dir.path()).unwrap();
    assert_eq!(opened.train.lr, in_force.train.lr);
    let refused = refused.expect("the file's error");
    assert!(refused.contains("aid.iterations"), "{refused}");
    let mut history = Vec::new();
    refused_in_history(&mut history, refused.clone());
    refused_in_history(&mut history, refused);
    assert_eq!(history.len(), 1, "said once");
    // Without a config in force (a run that never started): the file,
    // and its error when it does not read.
    std::fs::remove_file(layout.config_in_force()).unwrap();
    assert!(attach_config(dir.path()).is_err());
    write(layout.config(), &edited);
    assert_eq!(
        attach_config(dir.path()).unwrap().0.meltr.d_model,
        edited.meltr.d_model
    );
}

//! Session folders: finding, listing, liveness.

use super::*;

#[test]
fn names_become_folder_names_in_any_script() {
    assert_eq!(slug("régla 日本語 🚀"), "régla-日本語");
    assert_eq!(slug("."), "session");
    assert_eq!(slug("my run/2"), "my-run-2");
    assert_eq!(slug("a--b__c"), "a-b__c");
    assert_eq!(slug(&"x".repeat(300)).len(), 60);
    assert!(slug(&"日".repeat(300)).len() <= 120);
}

/// `attach` without a session opens the newest live one, not a newer
/// finished one (walkthrough M), and the newest when none is live.
#[test]
fn the_session_to_attach_is_the_newest_live_one() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let mut made = Vec::new();
    // Ids are the second, then the name: in order even within a second.
    for name in ["a-old", "b-live", "c-done"] {
        made.push(create(root.path(), name, &config).unwrap());
    }
    // `create` marks each running under this (live) process.
    update_status(&made[0], Status::Finished, None).unwrap();
    update_status(&made[2], Status::Finished, None).unwrap();
    assert_eq!(latest(root.path()).unwrap(), made[1]);
    update_status(&made[1], Status::Finished, None).unwrap();
    assert_eq!(latest(root.path()).unwrap(), made[2]);
}

/// A cut-short session.json made its session vanish: `ls` left it out
/// unsaid, and its exact id was "no session" (a walkthrough).
#[test]
fn a_session_json_that_does_not_read_is_named_not_lost() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let good = create(root.path(), "good", &config).unwrap();
    let bad = create(root.path(), "bad", &config).unwrap();
    std::fs::write(SessionDir::new(&bad).session_json(), "{\"id\": \"x").unwrap();
    // A folder with no session.json at all (a sweep's) is not a session.
    std::fs::create_dir(root.path().join("other")).unwrap();
    let broken = unreadable(root.path());
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].0, bad);
    assert!(
        broken[0].1.contains("is not a valid session.json"),
        "{broken:?}"
    );
    let id = bad.file_name().unwrap().to_string_lossy().to_string();
    let error = find(root.path(), &id).unwrap_err().to_string();
    assert!(
        error.contains(&format!("session `{id}` does not read")),
        "{error}"
    );
    assert_eq!(list(root.path()).len(), 1);
    assert_eq!(find(root.path(), "good").unwrap(), good);
}

#[test]
fn an_exact_name_wins_over_ids_that_contain_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let probe = create(tmp.path(), "probe", &config).unwrap();
    let evalprobe = create(tmp.path(), "evalprobe", &config).unwrap();
    assert_eq!(find(tmp.path(), "probe").unwrap(), probe);
    assert_eq!(find(tmp.path(), "evalprobe").unwrap(), evalprobe);
    assert_eq!(find(tmp.path(), "alpro").unwrap(), evalprobe);
    // Two sessions of one name: which one is for the id to say.
    create(tmp.path(), "probe", &config).unwrap();
    let said = find(tmp.path(), "probe").unwrap_err().to_string();
    assert!(said.contains("matches several sessions"), "{said}");
    assert!(!said.contains("--group"), "{said}");
    // A group's name, given as a session's, says how to name the group
    // (walkthrough J: `table gsw` for the sweep `gsw`).
    for name in ["gsw-000", "gsw-001"] {
        let dir = create(tmp.path(), name, &config).unwrap();
        let mut meta = SessionMeta::read(&dir).unwrap();
        meta.group = Some("gsw".into());
        meta.write(&dir).unwrap();
    }
    let said = find(tmp.path(), "gsw").unwrap_err().to_string();
    let hint = "; `gsw` is a group: ls, table and compare take --group gsw (and `sweep ls gsw`)";
    assert!(said.ends_with(hint), "{said}");
    // Sessions of other names in it too.
    let dir = create(tmp.path(), "other", &config).unwrap();
    let mut meta = SessionMeta::read(&dir).unwrap();
    meta.group = Some("ablation".into());
    meta.write(&dir).unwrap();
    let said = find(tmp.path(), "ablation").unwrap_err().to_string();
    assert!(
        said.starts_with("no session `ablation`") && said.contains("--group ablation"),
        "{said}"
    );
}

#[test]
fn a_path_that_is_no_session_is_said_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nonexistent/dir");
    let said = find(tmp.path(), &missing.to_string_lossy())
        .unwrap_err()
        .to_string();
    assert_eq!(
        said,
        format!("no session at {}: no such folder", missing.display())
    );
    let said = find(tmp.path(), &tmp.path().to_string_lossy())
        .unwrap_err()
        .to_string();
    assert!(
        said.contains("is not a session folder (it has no session.json)"),
        "{said}"
    );
}

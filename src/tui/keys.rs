//! The key bindings, one table: the help overlay draws it, and the
//! state's key handling is tested against it.

/// (where, keys, what) for every binding.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("global", "Tab / S-Tab", "focus next / previous pane"),
    (
        "global",
        "1 2 3 4",
        "curves, contributions, hyperparameters, events",
    ),
    ("global", "p", "pause / resume the run"),
    ("global", "c", "write a checkpoint now"),
    ("global", "e", "export figures"),
    ("global", "r", "sessions of this folder (Esc or r: back)"),
    ("global", "f", "fork at this step, with the edits"),
    ("global", "] [", "AID iterations J +1 / -1"),
    ("global", "} {", "AID step alpha x2 / /2"),
    (
        "global",
        "?",
        "this help (Up/Down scroll, any other key closes)",
    ),
    (
        "global",
        "q",
        "quit or detach (if live, asks; s stops the run)",
    ),
    (
        "global",
        "Ctrl-C",
        "quit at once; the run goes on (attach again)",
    ),
    ("curves", "l", "log scale on / off"),
    ("curves", "s / S", "more / less EMA smoothing"),
    ("curves", "w", "full history / recent windows"),
    ("curves", "Up Down", "select a series"),
    ("curves", "Space", "show / hide the selected series"),
    ("contrib", "t / T", "transform of the next / previous loss"),
    ("hyper", "Up Down PgUp PgDn", "select a key"),
    (
        "hyper",
        "Enter",
        "edit the selected value (checked before writing)",
    ),
    ("editor", "Enter / Esc", "write the value / cancel"),
    (
        "editor",
        "Ctrl-F",
        "fork with the value instead (this run unchanged)",
    ),
    (
        "editor",
        "Left Right Home End",
        "move; Backspace Del Ctrl-U delete",
    ),
    ("runs", "Up Down Home End", "select a session"),
    ("runs", "Left Right", "scroll the config key columns"),
    (
        "runs",
        "Space",
        "mark / unmark, then down (2 or more to overlay)",
    ),
    ("runs", "o", "overlay the marked sessions' loss curves"),
    ("runs", "Enter", "attach to the selected session"),
    ("runs", "Esc", "close the overlay, then the view"),
    ("events", "Up Down PgUp PgDn", "scroll"),
    ("events", "Home / End", "oldest / follow newest"),
    ("events", "Enter", "the bottom entry whole (↑↓ scroll it)"),
];

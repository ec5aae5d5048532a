//! Keys -> actions: the global bindings, each pane's, the overlays' and
//! the value editor's (the table the help shows is `tui::keys`).

use super::*;

/// What `p` and `c` say to a run that takes no command (a headless one).
pub const NOT_LINKED: &str =
    "a headless run: no pause or checkpoint reaches it from here (q, then s stops it)";

impl App {
    /// What a key does; key releases are ignored.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit(Exit::Interrupted);
        }
        match self.overlay {
            Overlay::Help { scroll } => {
                self.overlay = match key.code {
                    KeyCode::Up | KeyCode::Char('k') => Overlay::Help {
                        scroll: scroll.saturating_sub(1),
                    },
                    KeyCode::Down | KeyCode::Char('j') => Overlay::Help {
                        scroll: (scroll + 1).min(self.help_scroll_max.get()),
                    },
                    _ => Overlay::None,
                };
                return Action::None;
            }
            Overlay::ConfirmQuit => return self.confirm_quit_key(key),
            Overlay::Entry { index, scroll } => {
                self.overlay = match key.code {
                    KeyCode::Up | KeyCode::Char('k') => Overlay::Entry {
                        index,
                        scroll: scroll.saturating_sub(1),
                    },
                    KeyCode::Down | KeyCode::Char('j') => Overlay::Entry {
                        index,
                        scroll: (scroll + 1).min(self.entry_scroll_max.get()),
                    },
                    _ => Overlay::None,
                };
                return Action::None;
            }
            Overlay::None => {}
        }
        if self.editor.is_some() {
            return self.editor_key(key);
        }
        if self.sessions.is_some() {
            // The view's keys first; the global ones still work; no pane's.
            return self
                .sessions_key(key)
                .or_else(|| self.global_key(key))
                .unwrap_or(Action::None);
        }
        if let Some(action) = self.global_key(key) {
            return action;
        }
        match self.focus {
            Pane::Curves => self.curves_key(key),
            Pane::Contributions => self.contributions_key(key),
            Pane::Hyper => self.hyper_key(key),
            Pane::Events => self.events_key(key),
        }
        .unwrap_or(Action::None)
    }

    fn confirm_quit_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Char('y') | KeyCode::Char('q') => Action::Quit(Exit::Left),
            KeyCode::Char('s') if !self.status.is_terminal() => Action::Quit(Exit::Stopped),
            KeyCode::Char('r') if self.status == Status::Paused && self.detachable => {
                Action::Quit(Exit::Unpaused)
            }
            _ => {
                self.overlay = Overlay::None;
                Action::None
            }
        }
    }

    /// Keys that mean the same in every pane; `None` when the key is not one.
    fn global_key(&mut self, key: KeyEvent) -> Option<Action> {
        let action = match key.code {
            KeyCode::Tab => {
                self.focus = self.focus.offset(1);
                Action::None
            }
            KeyCode::BackTab => {
                self.focus = self.focus.offset(-1);
                Action::None
            }
            KeyCode::Char(c @ '1'..='4') => {
                self.focus = Pane::ALL[(c as u8 - b'1') as usize];
                Action::None
            }
            KeyCode::Char('?') => {
                self.overlay = Overlay::Help { scroll: 0 };
                Action::None
            }
            // Nothing to stop or leave running: no question.
            KeyCode::Char('q') if self.status.is_terminal() => Action::Quit(Exit::Left),
            KeyCode::Char('q') => {
                self.overlay = Overlay::ConfirmQuit;
                Action::None
            }
            KeyCode::Char('p' | 'c') if !self.takes_commands && !self.status.is_terminal() => {
                self.notify(Level::Warn, NOT_LINKED);
                Action::None
            }
            KeyCode::Char('p') => match self.status {
                Status::Running => {
                    self.notify_until(Level::Info, "pause requested", Some(Until::StatusChanges));
                    Action::Send(Command::Pause)
                }
                Status::Paused => {
                    self.notify_until(Level::Info, "resume requested", Some(Until::StatusChanges));
                    Action::Send(Command::Resume)
                }
                _ => {
                    self.notify(
                        Level::Warn,
                        format!("nothing to pause: the run has {}", self.status_word()),
                    );
                    Action::None
                }
            },
            KeyCode::Char('c') => {
                if self.status.is_terminal() {
                    self.notify(
                        Level::Warn,
                        format!("the run is {}: no checkpoint to take", self.status.as_str()),
                    );
                    Action::None
                } else {
                    self.notify(Level::Info, "checkpoint requested");
                    Action::Send(Command::Checkpoint)
                }
            }
            KeyCode::Char('e') => {
                if self.can_export {
                    self.notify(Level::Info, "exporting figures…");
                    Action::Export
                } else {
                    self.notify(Level::Warn, "export is not available here");
                    Action::None
                }
            }
            KeyCode::Char('r') => Action::ListSessions,
            KeyCode::Char('f') => self.fork_key(),
            KeyCode::Char(']') => {
                let j = self.config.aid.iterations.saturating_add(1);
                self.propose_or_notify("aid.iterations", &j.to_string())
            }
            KeyCode::Char('[') => match self.config.aid.iterations.checked_sub(1) {
                Some(j) => self.propose_or_notify("aid.iterations", &j.to_string()),
                None => {
                    self.notify(
                        Level::Warn,
                        "aid.iterations is already 0 (the identity approximation)",
                    );
                    Action::None
                }
            },
            KeyCode::Char('}') => {
                self.propose_or_notify("aid.alpha", &(self.config.aid.alpha * 2.0).to_string())
            }
            KeyCode::Char('{') => {
                self.propose_or_notify("aid.alpha", &(self.config.aid.alpha / 2.0).to_string())
            }
            _ => return None,
        };
        Some(action)
    }

    /// `f`: fork the attached session with the config as edited here.
    fn fork_key(&mut self) -> Action {
        if !self.can_fork {
            self.notify(Level::Warn, "fork is not available here");
            return Action::None;
        }
        self.fork_at_this_step(None, "")
    }

    /// A live run checkpoints its current step first and the fork waits
    /// for it (walkthrough P: paused at step 248, `f` forked at step 200,
    /// the newest checkpoint); an ended run forks from its newest.
    fn fork_at_this_step(&mut self, edited: Option<Box<Config>>, what: &str) -> Action {
        // A run viewed without its runner's socket (a headless one) takes
        // no command: no checkpoint would come.
        if self.status.is_terminal() || !self.takes_commands {
            self.notify(
                Level::Info,
                format!("forking{what} from the newest checkpoint…"),
            );
            return Action::Fork(edited);
        }
        self.notify(
            Level::Info,
            format!("forking{what}: checkpointing step {} first…", self.step()),
        );
        self.fork_waiting = Some(edited);
        Action::Send(Command::CheckpointForFork)
    }

    fn curves_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ids = self.curve_ids();
        match key.code {
            KeyCode::Char('l') => {
                self.curves.log = !self.log_scale();
                self.curves.log_chosen = true;
            }
            KeyCode::Char('s') => {
                self.set_smoothing((self.curves.smoothing + 1).min(SMOOTHING.len() - 1))
            }
            KeyCode::Char('S') => self.set_smoothing(self.curves.smoothing.saturating_sub(1)),
            KeyCode::Char('w') => self.curves.window = self.next_window(),
            KeyCode::Up | KeyCode::Char('k') => {
                self.curves.cursor = self.curves.cursor.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.curves.cursor = (self.curves.cursor + 1).min(ids.len() - 1);
            }
            KeyCode::Char(' ') | KeyCode::Enter => {
                let id = ids[self.curves.cursor.min(ids.len() - 1)];
                if !self.curves.hidden.remove(&id) {
                    self.curves.hidden.insert(id);
                }
            }
            _ => return None,
        }
        Some(Action::None)
    }

    fn set_smoothing(&mut self, index: usize) {
        self.curves.smoothing = index;
        let weight = SMOOTHING[index];
        self.store.loss_track.set_smoothing(weight);
        self.store.total_track.set_smoothing(weight);
    }

    /// Full, then each recent window shorter than the run so far, then full.
    fn next_window(&self) -> Window {
        let shorter = |n: u64| n < self.store.last_step;
        let next = match self.curves.window {
            Window::Full => WINDOWS.iter().copied().find(|&n| shorter(n)),
            Window::Last(cur) => WINDOWS.iter().copied().find(|&n| n < cur && shorter(n)),
        };
        next.map_or(Window::Full, Window::Last)
    }

    fn contributions_key(&mut self, key: KeyEvent) -> Option<Action> {
        let n = self.store.losses.len().max(1);
        match key.code {
            KeyCode::Char('t') | KeyCode::Down | KeyCode::Char('j') => {
                self.transform_loss = (self.transform_loss + 1) % n
            }
            KeyCode::Char('T') | KeyCode::Up | KeyCode::Char('k') => {
                self.transform_loss = (self.transform_loss + n - 1) % n;
            }
            _ => return None,
        }
        Some(Action::None)
    }

    fn hyper_key(&mut self, key: KeyEvent) -> Option<Action> {
        let rows = self.hyper_rows();
        let last = rows.len().saturating_sub(1);
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.hyper_cursor = self.hyper_cursor.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.hyper_cursor = (self.hyper_cursor + 1).min(last)
            }
            KeyCode::PageUp => self.hyper_cursor = self.hyper_cursor.saturating_sub(10),
            KeyCode::PageDown => self.hyper_cursor = (self.hyper_cursor + 10).min(last),
            KeyCode::Home => self.hyper_cursor = 0,
            KeyCode::End => self.hyper_cursor = last,
            KeyCode::Enter => {
                let (key, value) = rows.get(self.hyper_cursor.min(last))?.clone();
                self.open_editor(&key, &value);
            }
            _ => return None,
        }
        Some(Action::None)
    }

    /// Opens the editor on `key`, or says why it cannot change live.
    pub fn open_editor(&mut self, key: &str, value: &toml::Value) {
        if let Some(reason) = restart_only_reason(key) {
            self.notify(Level::Warn, restart_only_message(key, reason));
            return;
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // A message about an earlier key would sit under this one's editor
        // (walkthrough B: a restart-only refusal beside another key's error);
        // one that waits for an edit to apply stays.
        if self.flash.as_ref().is_some_and(|f| f.until.is_none()) {
            self.flash = None;
        }
        self.editor = Some(Editor {
            key: key.to_string(),
            input: Input::new(&text),
            error: None,
        });
    }

    fn editor_key(&mut self, key: KeyEvent) -> Action {
        let Some(editor) = &mut self.editor else {
            return Action::None;
        };
        match key.code {
            KeyCode::Esc => self.editor = None,
            KeyCode::Enter => {
                let (key, text) = editor.key_and_value();
                return match self.propose(&key, &text) {
                    Ok(action) => {
                        self.editor = None;
                        action
                    }
                    Err(message) => {
                        if let Some(editor) = &mut self.editor {
                            editor.error = Some(message);
                        }
                        Action::None
                    }
                };
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                editor.input.clear()
            }
            KeyCode::Char('f') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return self.fork_with_editor_value();
            }
            KeyCode::Char(c) => editor.input.insert(c),
            KeyCode::Backspace => editor.input.backspace(),
            KeyCode::Delete => editor.input.delete(),
            KeyCode::Left => editor.input.left(),
            KeyCode::Right => editor.input.right(),
            KeyCode::Home => editor.input.home(),
            KeyCode::End => editor.input.end(),
            _ => {}
        }
        Action::None
    }

    /// Ctrl-F in the editor: a fork with the value, which is not written to
    /// this session's `config.toml` (the attached run goes on as it was).
    fn fork_with_editor_value(&mut self) -> Action {
        let Some(editor) = &self.editor else {
            return Action::None;
        };
        let (key, text) = editor.key_and_value();
        if !self.can_fork {
            // The editor stays open with its value: Enter still writes it.
            self.notify(Level::Warn, "fork is not available here");
            return Action::None;
        }
        match self.propose(&key, &text) {
            Ok(Action::WriteConfig {
                config, summary, ..
            }) => {
                self.editor = None;
                let what = format!(" with {summary} (not applied to this run)");
                self.fork_at_this_step(Some(config), &what)
            }
            // Unchanged: the fork of `f`.
            Ok(_) => {
                self.editor = None;
                self.fork_key()
            }
            Err(message) => {
                if let Some(editor) = &mut self.editor {
                    editor.error = Some(message);
                }
                Action::None
            }
        }
    }

    /// Validates setting `key` to `text`: restart-only keys are refused with
    /// their reason; type and range errors with the config's own message.
    pub fn propose(&mut self, key: &str, text: &str) -> Result<Action, String> {
        if let Some(reason) = restart_only_reason(key) {
            return Err(restart_only_message(key, reason));
        }
        let new = self
            .config
            .with_value(key, text)
            .map_err(|e| e.to_string())?;
        if new == self.config {
            self.notify(Level::Info, format!("{key} unchanged"));
            return Ok(Action::None);
        }
        let value = new
            .flatten()
            .remove(key)
            .ok_or_else(|| format!("`{key}` is not a key of the config"))?;
        Ok(Action::WriteConfig {
            key: key.to_string(),
            summary: format!("{key} = {value}"),
            value,
            config: Box::new(new),
        })
    }

    fn propose_or_notify(&mut self, key: &str, text: &str) -> Action {
        self.propose(key, text).unwrap_or_else(|message| {
            self.notify(Level::Warn, format!("refused: {message}"));
            Action::None
        })
    }

    fn events_key(&mut self, key: KeyEvent) -> Option<Action> {
        let newest = self.store.log.len().saturating_sub(1);
        // Entries that arrived since the drawing moved the top up as far.
        let len = self.store.log.len();
        let max = self
            .events_scroll_max
            .get()
            .map_or(newest, |(max, then)| max + len.saturating_sub(then))
            .min(newest);
        let s = &mut self.events_scroll;
        // Scrolled past the top by a resize or entries that grew: from the top.
        *s = (*s).min(max);
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => *s = (*s + 1).min(max),
            KeyCode::Down | KeyCode::Char('j') => *s = s.saturating_sub(1),
            KeyCode::PageUp => *s = (*s + 10).min(max),
            KeyCode::PageDown => *s = s.saturating_sub(10),
            KeyCode::Home => *s = max,
            KeyCode::End => *s = 0,
            // The entry at the bottom of the pane, whole.
            KeyCode::Enter if !self.store.log.is_empty() => {
                self.overlay = Overlay::Entry {
                    index: newest - *s,
                    scroll: 0,
                }
            }
            _ => return None,
        }
        Some(Action::None)
    }
}

impl Editor {
    /// The key and the value typed: a whole `key = value` line typed or
    /// pasted over the value reads as its value (walkthrough G1 typed
    /// `aid.iterations = 3` after the label and was told "expected an
    /// integer").
    fn key_and_value(&self) -> (String, String) {
        let text = self.input.text();
        let value = text
            .trim_start()
            .strip_prefix(self.key.as_str())
            .and_then(|rest| rest.trim_start().strip_prefix('='))
            .map_or(text, str::trim);
        (self.key.clone(), value.to_string())
    }
}

//! From runs to a paper: `table` (grouped metrics), `compare` (grouped
//! curves with bands) and `export --format csv,tensorboard` (the log for
//! other tools).

use super::*;
use crate::runs::filter::Filter;
use crate::runs::groups::{self, GroupBy};
use crate::runs::table::TableFormat;
use crate::runs::{self, Run};

mod at_step;
mod labels;
use at_step::runs_at_step;
use labels::{legend_labels, rename_values};

/// The runs named (or, with none named, every session of `root`) that
/// `filter` keeps; at least one. Unnamed, where the figure or table reads
/// evals (`needs_eval`), a run with no eval line (one that failed early,
/// or is still before its first) is left out, said on stderr: one such run
/// in the folder made `table` and `compare` refuse every other
/// (walkthrough A).
fn select(root: &Path, sessions: &[String], filter: &Filter, needs_eval: bool) -> Result<Vec<Run>> {
    let mut runs = match sessions.is_empty() {
        true => filter.apply(runs::all(root))?,
        false => filter.apply(
            sessions
                .iter()
                .map(|s| Run::load(&session::find(root, s)?))
                .collect::<Result<Vec<_>>>()?,
        )?,
    };
    // A `--where status=…` picks by status itself.
    let by_status = filter.conditions.iter().any(|w| w.key == "status");
    if sessions.is_empty() && !by_status && needs_eval {
        let unevaluated;
        (runs, unevaluated) = never_evaluated(runs);
        if !unevaluated.is_empty() {
            let what = match unevaluated.len() {
                1 => "a session with no eval line",
                _ => "sessions with no eval line",
            };
            say_err!(
                "left out {what}: {} (named, such a session is refused)",
                unevaluated.join(", ")
            );
        }
    }
    if runs.is_empty() {
        bail!(
            "no sessions selected: name sessions, or give a --group / --where that sessions in {} match",
            root.display()
        );
    }
    Ok(runs)
}

/// `runs` without those with no eval line (a log that does not read is
/// said where it is read), and those runs' ids with their status.
fn never_evaluated(runs: Vec<Run>) -> (Vec<Run>, Vec<String>) {
    let (unevaluated, kept): (Vec<Run>, Vec<Run>) = runs
        .into_iter()
        .partition(|r| r.log_error.is_none() && r.final_eval.is_none());
    let ids = unevaluated
        .iter()
        .map(|r| format!("{} ({} at step {})", r.meta.id, r.status, r.step))
        .collect();
    (kept, ids)
}

fn group_by(keys: &[String]) -> GroupBy {
    if keys.is_empty() {
        GroupBy::Seeds
    } else {
        GroupBy::Keys(keys.to_vec())
    }
}

pub(super) fn table(
    root: &Path,
    sessions: &[String],
    filter: &Filter,
    (keys, renames): (&[String], &[String]),
    opts: &crate::runs::table::TableOptions,
    output: Option<&Path>,
) -> Result<()> {
    let mut runs = select(root, sessions, filter, true)?;
    let mut at_step_note = None;
    if let Some(step) = opts.at_step {
        (runs, at_step_note) = runs_at_step(&runs, step)?;
    }
    let mut groups = groups::gather(&runs, &group_by(keys))?;
    let filtered: Vec<String> = filter.conditions.iter().map(|w| w.key.clone()).collect();
    let renamed = rename_values(&mut groups, renames, &filtered)?;
    // CSV is data for other programs: whole paths there.
    if opts.format != TableFormat::Csv {
        groups::shorten_shared_folders(&mut groups);
    }
    let label_notes = renamed.notes;
    let opts = &crate::runs::table::TableOptions {
        headers: renamed.headers,
        label_texts: renamed.texts,
        ..opts.clone()
    };
    let mut text = crate::runs::table::render(&groups, opts)?;
    // The caveats go with the table (into the file too), as comments where
    // the format has them; CSV stays data only.
    let mut notes = groups::caveats(&groups);
    if let Some(selected) = selected_not_shown(filter, &groups) {
        notes.insert(0, selected);
    }
    notes.extend(label_notes);
    if opts.at_step.is_some() {
        notes.retain(|n| !n.contains(groups::UNFINISHED));
    }
    // With --best (best's eval is read) only the forks left out are said.
    let said = |n: &&str| !opts.best || n.contains(": left out ");
    let at_step_notes = at_step_note.iter().flat_map(|n| n.lines()).filter(said);
    notes.extend(at_step_notes.map(str::to_string));
    match opts.format {
        TableFormat::Md if !notes.is_empty() => {
            let list: Vec<String> = notes.iter().map(|n| format!("- {n}")).collect();
            text.push_str(&format!("\n{}\n", list.join("\n")))
        }
        TableFormat::Latex => notes
            .iter()
            .for_each(|n| text.push_str(&format!("% {n}\n"))),
        _ => notes.iter().for_each(|n| say_err!("{n}")),
    }
    if let Some(path) = output {
        // Its folder made, as `compare -o` and `export --out` make theirs.
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot make {}", folder.display()))?;
        }
        crate::session::atomic_write(path, text.as_bytes())
            .with_context(|| format!("cannot write the table to {}", path.display()))?;
        // The file alone, as `compare -o` (a walkthrough's `-o table.tex`
        // printed the whole table too).
        say_err!("wrote {}", path.display());
        return Ok(());
    }
    say_raw!("{text}");
    Ok(())
}

/// The `--where` conditions on keys no column shows, as a note: a table
/// of the MELTR runs alone read `reg | 3 | …`, the method nowhere.
fn selected_not_shown(filter: &Filter, groups: &[groups::Group]) -> Option<String> {
    let shown = |key: &str| {
        groups
            .iter()
            .any(|g| g.values.iter().any(|(k, _)| runs::keys::names_key(k, key)))
    };
    // A key given twice holds for either value: said as one list.
    let mut unshown: Vec<(&str, Vec<&str>)> = Vec::new();
    for w in filter.conditions.iter().filter(|w| !shown(&w.key)) {
        match unshown.iter_mut().find(|(key, _)| *key == w.key) {
            Some((_, values)) if !values.contains(&w.value.as_str()) => values.push(&w.value),
            Some(_) => {}
            None => unshown.push((&w.key, vec![&w.value])),
        }
    }
    let said: Vec<String> = unshown
        .iter()
        .map(|(key, values)| format!("{key}={}", values.join(",")))
        .collect();
    (!said.is_empty()).then(|| format!("note: only sessions where {}", said.join(" and ")))
}

/// What `compare` draws, besides which sessions.
pub(super) struct CompareArgs<'a> {
    pub metric: Option<&'a str>,
    pub style: crate::plot::Style,
    pub group_by: &'a [String],
    pub band: crate::plot::Band,
    pub log_scale: bool,
    /// `--label LABEL=TEXT`: legend texts for groups.
    pub renames: &'a [String],
}

pub(super) fn compare(
    root: &Path,
    sessions: &[String],
    filter: &Filter,
    output: &Path,
    args: &CompareArgs,
) -> Result<()> {
    // A training series (`loss/x`, `weight/x`, `share/x`, `total`, `lr`,
    // `meta/…`) is drawn of a run that never evaluated too: often the one
    // that diverged.
    use crate::session::metrics::{LOSS_PREFIX, SHARE_PREFIX, WEIGHT_PREFIX};
    let training_series = args.metric.is_some_and(|m| {
        [LOSS_PREFIX, WEIGHT_PREFIX, SHARE_PREFIX]
            .iter()
            .any(|p| m.starts_with(p))
            || crate::plot::data::RUN_SERIES.contains(&m)
    });
    let runs = select(root, sessions, filter, !training_series)?;
    let mut groups = groups::gather(&runs, &group_by(args.group_by))?;
    groups::shorten_shared_folders(&mut groups);
    // One group left by --where on config keys: named by what selected it
    // (walkthrough N's uncertainty-only figure read "kinds (n=3)", its
    // sweep's name).
    let selected_by: Vec<(String, String)> = filter
        .conditions
        .iter()
        .filter(|w| w.key.contains('.'))
        .map(|w| (w.key.clone(), w.value.clone()))
        .collect();
    if let [only] = &mut groups[..] {
        if only.values.is_empty() && !selected_by.is_empty() {
            only.label = groups::label_of(&selected_by);
        }
    }
    // Single sessions keep their names in the legend; groups are labelled
    // by what tells them apart.
    let labelled = !args.group_by.is_empty() || groups.iter().any(|g| g.runs.len() > 1);
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    let fulls: Vec<Vec<String>> = groups.iter().map(labels::whole_key_names).collect();
    let legend = match labelled {
        true => legend_labels(&labels, &fulls, args.renames, "group is labelled")?,
        false => vec![String::new(); groups.len()],
    };
    // Drawn one by one, a session is named by its name: `--label NAME=TEXT`
    // puts TEXT after it in place of its settings (walkthrough J: the one
    // setting a fork changed was cut from a long list, and --label was
    // refused).
    let names: Vec<String> = groups.iter().map(|g| g.runs[0].meta.name.clone()).collect();
    let session_texts = match labelled {
        false if !args.renames.is_empty() => Some(legend_labels(
            &names,
            &[],
            args.renames,
            "session is named",
        )?),
        _ => None,
    };
    // Each combiner keeps one look across figures (MELTR the same blue
    // whether or not a figure shows `uncertainty` too).
    let kinds: Vec<Option<String>> = groups
        .iter()
        .map(|g| {
            let mut kinds = g.runs.iter().map(|r| r.setting("combiner.kind"));
            let first = kinds.next().flatten();
            kinds.all(|k| k == first).then_some(first).flatten()
        })
        .collect();
    let kinds: Vec<Option<&str>> = kinds.iter().map(Option::as_deref).collect();
    let slots = crate::plot::slots_by_combiner(&kinds);
    let curves: Vec<crate::plot::CurveGroup> = groups
        .iter()
        .enumerate()
        .zip(&legend)
        .zip(slots)
        .map(|(((i, g), text), slot)| crate::plot::CurveGroup {
            label: labelled.then(|| text.clone()),
            // Drawn under its name: the settings that tell it apart follow
            // (a fork's line already says whose fork it is), or its --label.
            setting: match session_texts.as_ref().map(|t| &t[i]) {
                Some(given) if *given != names[i] => Some(given.clone()),
                _ => (!labelled && !g.values.is_empty()).then(|| {
                    let fork = g.fork_of.as_ref().map(|f| format!(" (fork of {f})"));
                    let label = fork.as_ref().and_then(|f| g.label.strip_suffix(f.as_str()));
                    label.unwrap_or(&g.label).to_string()
                }),
            },
            dirs: g.runs.iter().map(|r| r.dir.clone()).collect(),
            slot,
        })
        .collect();
    let (path, figure_notes) = crate::plot::compare_groups(
        &curves,
        output,
        args.metric,
        args.style,
        args.band,
        args.log_scale,
    )?;
    // As the legend reads (a walkthrough's --label renames were printed
    // under the old labels).
    let sizes: Vec<String> = groups
        .iter()
        .zip(&curves)
        .zip(&legend)
        .map(|((g, curve), text)| match &curve.setting {
            Some(setting) => format!("{} ({setting})", g.runs[0].meta.name),
            None => format!("{text} (n={})", g.runs.len()),
        })
        .collect();
    say!("wrote {}: {}", path.display(), sizes.join("; "));
    // The notes name groups as the legend does (walkthrough Q: `--label`
    // renamed the legend, and the notes still read `kind=meltr`).
    if labelled {
        for (g, text) in groups.iter_mut().zip(&legend) {
            g.label = text.clone();
        }
    }
    for note in groups::caveats(&groups).iter().chain(&figure_notes) {
        say!("{note}");
    }
    Ok(())
}

/// `export`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The sessions (each its id, a unique part of it, or its folder;
    /// several: each exported in turn, figures with --out into OUT/<id>/).
    #[arg(required = true, num_args = 1..)]
    pub sessions: Vec<String>,
    /// Comma-separated: svg, png, pdf, csv, tensorboard, model (the trained
    /// TorchScript module from the newest checkpoint, <out>/<id>-step-N.pt).
    #[arg(long, value_delimiter = ',', default_value = "svg,png,pdf")]
    pub format: Vec<crate::export::Format>,
    /// The model from the checkpoint written at this step instead.
    #[arg(
        long,
        value_name = "STEP",
        conflicts_with = "best",
        allow_negative_numbers = true
    )]
    pub at: Option<u64>,
    /// The model from the kept checkpoint whose evaluation (at its step)
    /// has the best primary metric.
    #[arg(long)]
    pub best: bool,
    /// Output folder (default: <session>/plots for figures, <session>/export
    /// for data; with several sessions, figures go to <out>/<id>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// paper (single column), paper-wide (double column) or slides.
    #[arg(long, default_value = "paper")]
    pub style: crate::plot::Style,
    /// The loss figure's y axis: auto is logarithmic when the losses'
    /// typical sizes are more than 10x apart, or a loss's peak more than
    /// 20x another's typical size (and none is negative).
    #[arg(long, value_enum, default_value = "auto")]
    pub y_scale: crate::plot::LossAxis,
    /// Same as --y-scale log.
    #[arg(long, conflicts_with = "y_scale")]
    pub log_scale: bool,
    /// EMA weight in [0, 1) for training curves (0: none), or `auto`: 0.9,
    /// less under 200 logged points so the curve does not lag its end.
    #[arg(long, default_value = "auto")]
    pub ema: crate::plot::Smoothing,
}

/// `export`: the session's figures and/or its log for other tools.
pub(super) fn export_command(root: &Path, args: ExportArgs) -> Result<()> {
    // Every session found before anything is written.
    let dirs = args
        .sessions
        .iter()
        .map(|s| session::find(root, s))
        .collect::<Result<Vec<_>>>()?;
    for dir in &dirs {
        // Figures have fixed names: several sessions' would replace one
        // another in one folder.
        let figures_out = match &args.out {
            Some(out) if dirs.len() > 1 => Some(out.join(SessionDir::new(dir).id())),
            out => out.clone(),
        };
        export_one(dir, &args, figures_out)?;
    }
    Ok(())
}

/// [`export_command`] for one session, its figures into `figures_out`.
fn export_one(dir: &Path, args: &ExportArgs, figures_out: Option<PathBuf>) -> Result<()> {
    let figures: Vec<crate::plot::Format> = args
        .format
        .iter()
        .filter_map(|f| match f {
            crate::export::Format::Figure(f) => Some(*f),
            _ => None,
        })
        .collect();
    let pick = match (args.at, args.best) {
        (Some(step), _) => crate::export::model::Pick::At(step),
        (None, true) => crate::export::model::Pick::Best,
        (None, false) => crate::export::model::Pick::Newest,
    };
    if pick != crate::export::model::Pick::Newest
        && !args.format.contains(&crate::export::Format::Model)
    {
        bail!("--at and --best pick the checkpoint of the model export: add --format model");
    }
    export_data(dir, &args.format, args.out.as_deref(), pick)?;
    if !figures.is_empty() {
        let opts = crate::plot::ExportOptions {
            formats: figures,
            out_dir: figures_out,
            style: args.style,
            loss_axis: if args.log_scale {
                crate::plot::LossAxis::Log
            } else {
                args.y_scale
            },
            ema: args.ema,
        };
        say!("{}", export(dir, &opts)?);
    }
    Ok(())
}

/// Writes a session's figures and says what was written (and replaced,
/// and left out).
pub(super) fn export(dir: &Path, opts: &crate::plot::ExportOptions) -> Result<String> {
    let done = crate::plot::export_session(dir, opts)?;
    let folder = done
        .files
        .first()
        .and_then(|f| f.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut summary = format!("wrote {} figure files to {folder}", done.files.len());
    if !done.replaced.is_empty() {
        let names: Vec<String> = done
            .replaced
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .collect();
        summary.push_str(&format!(
            ", replacing {} already there ({}); if those were another session's, give each session its own --out folder",
            names.len(),
            names.join(", ")
        ));
    }
    for note in &done.skipped {
        summary.push_str(&format!("; {note}"));
    }
    Ok(summary)
}

/// Writes the data formats among `formats` (csv, tensorboard) for the
/// session in `dir`, into `out` or `<session>/export`.
pub(super) fn export_data(
    dir: &Path,
    formats: &[crate::export::Format],
    out: Option<&Path>,
    pick: crate::export::model::Pick,
) -> Result<()> {
    let out = out.map_or_else(|| dir.join("export"), Path::to_path_buf);
    for format in formats {
        let written = match format {
            crate::export::Format::Csv => crate::export::write_csv(dir, &out)?,
            crate::export::Format::Tensorboard => crate::export::write_tensorboard(dir, &out)?,
            crate::export::Format::Model => {
                let written = crate::export::model::write_model(dir, &out, pick)?;
                let why = written
                    .note
                    .map(|note| format!("; {note}"))
                    .unwrap_or_default();
                say!(
                    "wrote {} (the TorchScript module as trained to step {}{why}; \
                     torch.jit.load(path, map_location=\"cpu\") reads it anywhere, in training mode as saved: \
                     call .eval() before inference)",
                    written.path.display(),
                    written.step
                );
                continue;
            }
            crate::export::Format::Figure(_) => continue,
        };
        say!("wrote {}", written.display());
    }
    Ok(())
}

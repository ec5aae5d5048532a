//! `meltr-tui table`: the final (or best) eval metrics of groups of runs as
//! mean ± std with n, the way a paper's table is written — Markdown, CSV
//! (full precision, mean/std/min/max columns, for scripts) or LaTeX
//! (booktabs). Each column's best mean is set in bold (with those within noise
//! of it), its direction by an arrow.
//! Long: the three formats share one pass of ties, digits and captions,
//! computed here once.

use super::groups::Group;
use super::render::csv_field;
use super::stats::{significant_decimals, Summary};
use super::{Eval, Run};
use crate::numfmt::padded;
use crate::session::metrics::{
    Named, EVAL_LOSS_PREFIX, FINAL_WEIGHT_LINES, FINAL_WEIGHT_SPAN, FINAL_WEIGHT_STEPS,
    LOSS_PREFIX, SHARE_PREFIX, WEIGHT_PREFIX,
};
use anyhow::{bail, Result};

/// The table's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TableFormat {
    #[default]
    Md,
    Csv,
    Latex,
}

/// What the table shows (default: Markdown, every metric, final evals).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableOptions {
    pub format: TableFormat,
    /// Each run's eval with its best primary metric instead of its last.
    pub best: bool,
    /// The step the runs were read up to (`--at-step`; the table's
    /// sources say it), when not their ends.
    pub at_step: Option<u64>,
    /// Eval metrics to show (empty: all, the primary first).
    pub metrics: Vec<String>,
    /// Decimals (default: per cell, two significant digits of its std).
    pub digits: Option<usize>,
    /// Column headers renamed (`--label KEY=TEXT`): a key's column, by its
    /// whole key or last part, or a metric's, by its name.
    pub headers: Vec<(String, String)>,
    /// The texts `--label` wrote (headers and cells): LaTeX keeps their
    /// `$…$` as math; any other text (a config's value, a path) is escaped
    /// whole.
    pub label_texts: Vec<String>,
}

/// A group's summaries, one per metric.
struct Row<'g> {
    group: &'g Group<'g>,
    cells: Vec<Summary>,
}

fn chosen(run: &Run, best: bool) -> Result<&Eval> {
    let eval = if best {
        // A run whose primary metric was never finite has no best: its last
        // eval stands for it, NaN as without --best (a walkthrough's group
        // with a diverged seed was refused whole).
        run.best_eval.as_ref().or(run.final_eval.as_ref())
    } else {
        run.final_eval.as_ref()
    };
    match eval {
        Some(e) => Ok(e),
        None if run.log_error.is_some() => bail!(
            "session {}'s log does not read ({}): mend or remove that line, or leave the session out",
            run.meta.id,
            run.log_error.as_deref().unwrap_or_default()
        ),
        None => bail!(
            "session {} has no eval line{}{} (it is at step {}): leave it out or let it run",
            run.meta.id,
            if best {
                format!(" with a finite {}", run.meta.primary_metric)
            } else {
                String::new()
            },
            // Its log's earlier evals are its parent's.
            run.meta
                .fork_step
                .map_or(String::new(), |at| format!(" after its fork step {at}")),
            run.step
        ),
    }
}

/// The metric columns: `wanted`, or every metric of the chosen evals with
/// the primary first (validation losses, `eval_loss/<loss>`, only when
/// asked for).
fn metric_names(groups: &[Group], opts: &TableOptions) -> Result<Vec<String>> {
    if !opts.metrics.is_empty() {
        // `eval/recall@1`, as the CSV export and `compare` name it, is the
        // eval metric `recall@1` (walkthrough N's was refused).
        let named = |m: &String| crate::session::metrics::eval_metric_name(m).to_string();
        // Once each (`primary_mse` and `eval/primary_mse` made two equal
        // columns, walkthrough D).
        let mut names: Vec<String> = Vec::new();
        for name in opts.metrics.iter().map(named) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        return Ok(names);
    }
    // Runs of different workloads report different metrics: said as such
    // (it read "session … has no metric `primary_mse`").
    super::shared_primary_metric(
        groups
            .iter()
            .flat_map(|g| &g.runs)
            .map(|r| (r.meta.primary_metric.as_str(), r.meta.id.as_str())),
        "tabulate one kind at a time (--where, --group or session ids)",
    )?;
    let mut names: Vec<String> = Vec::new();
    if let Some(primary) = groups
        .first()
        .and_then(|g| g.runs.first())
        .map(|r| r.meta.primary_metric.clone())
    {
        names.push(primary);
    }
    for g in groups {
        for r in &g.runs {
            for name in chosen(r, opts.best)?.1.keys() {
                if !names.contains(name) && !name.starts_with(EVAL_LOSS_PREFIX) {
                    names.push(name.clone());
                }
            }
        }
    }
    // After the primary, `r1 r5 r10` (they read `r1 r10 r5`, walkthrough P).
    if let Some(rest) = names.get_mut(1..) {
        rest.sort_by(|a, b| crate::numfmt::natural_order(a, b));
    }
    Ok(names)
}

fn rows<'g>(groups: &'g [Group<'g>], names: &[String], best: bool) -> Result<Vec<Row<'g>>> {
    groups
        .iter()
        .map(|group| {
            let mut cells = Vec::new();
            for name in names {
                let mut values = Vec::new();
                for r in &group.runs {
                    values.push(value_of(r, name, best)?);
                }
                cells.push(Summary::of(&values).unwrap_or(Summary {
                    n: 0,
                    mean: f64::NAN,
                    std: f64::NAN,
                    min: f64::NAN,
                    max: f64::NAN,
                    single_precision: true,
                }));
            }
            Ok(Row { group, cells })
        })
        .collect()
}

/// The per-loss columns: prefix, what the log calls them, what a column
/// holds.
const PER_LOSS: [(&str, &str, &str); 3] = [
    (
        WEIGHT_PREFIX,
        "effective weights",
        "the effective weight ∂M/∂l (where its loss was not exactly 0), median",
    ),
    (
        SHARE_PREFIX,
        "gradient shares",
        "the loss's share of the combined gradient, mean",
    ),
    (LOSS_PREFIX, "training losses", "the training loss, mean"),
];

/// A run's final means of the per-loss series with this prefix.
fn final_means_of<'a>(run: &'a Run, prefix: &str) -> &'a Named {
    match prefix {
        SHARE_PREFIX => &run.final_shares,
        LOSS_PREFIX => &run.final_losses,
        _ => &run.final_weights,
    }
}

/// Whether a column is a per-loss series (a weight or a share: no row is
/// better for a larger one).
fn is_per_loss(name: &str) -> bool {
    PER_LOSS.iter().any(|(prefix, ..)| name.starts_with(prefix))
}

/// A run's value for a column: `weight/<loss>` (`share/<loss>`) its final
/// effective weight (gradient share) of that loss, else the metric at the
/// chosen eval.
fn value_of(run: &Run, name: &str, best: bool) -> Result<f64> {
    let names_of = |prefix: &str| -> Vec<String> {
        final_means_of(run, prefix)
            .keys()
            .map(|loss| format!("{prefix}{loss}"))
            .collect()
    };
    for (prefix, what, _) in PER_LOSS {
        let Some(loss) = name.strip_prefix(prefix) else {
            continue;
        };
        let means = final_means_of(run, prefix);
        return match means.get(loss) {
            Some(v) => Ok(*v),
            None if means.is_empty() => bail!(
                "session {} logged no {what} (`{name}`){}",
                run.meta.id,
                if prefix == SHARE_PREFIX {
                    "; train.shares_every sets how often they are logged"
                } else {
                    ""
                }
            ),
            None => bail!(
                "session {} has no loss `{loss}` with logged {what}; it has: {}",
                run.meta.id,
                names_of(prefix).join(", ")
            ),
        };
    }
    let (step, metrics) = chosen(run, best)?;
    match metrics.get(name) {
        Some(v) => Ok(*v),
        None => {
            let mut have: Vec<String> = metrics.keys().cloned().collect();
            have.extend(PER_LOSS.iter().flat_map(|(prefix, ..)| names_of(prefix)));
            let meant = crate::config::name_meant(name, have.iter().map(String::as_str))
                .map_or(String::new(), |n| format!(" (did you mean `{n}`?)"));
            bail!(
                "session {} has no metric `{name}`{meant} at its eval of step {step}; it has: {}",
                run.meta.id,
                have.join(", ")
            )
        }
    }
}

/// The table of `groups` (at least one run each) in `opts.format`.
pub fn render(groups: &[Group], opts: &TableOptions) -> Result<String> {
    if groups.iter().all(|g| g.runs.is_empty()) {
        bail!("no sessions to tabulate");
    }
    let names = metric_names(groups, opts)?;
    let rows = rows(groups, &names, opts.best)?;
    let key_names: Vec<String> = groups[0].values.iter().map(|(k, _)| k.clone()).collect();
    let first = groups[0].runs[0];
    let primary = &first.meta.primary_metric;
    let (higher, disagreeing) = directions::of_columns(groups, &names);
    // Per column, the best mean, when there is a choice: every row with it
    // is bold (ties alike).
    let best_means: Vec<Option<f64>> = (0..names.len())
        .map(|col| {
            let pick = if higher[col]? { f64::max } else { f64::min };
            let best = rows
                .iter()
                .map(|r| r.cells[col].mean)
                .filter(|m| m.is_finite())
                .reduce(pick)?;
            (rows.len() > 1).then_some(best)
        })
        .collect();
    let arrow = |name: &String| {
        let col = names.iter().position(|n| n == name)?;
        Some(if higher[col]? { "↑" } else { "↓" })
    };
    // Each mean ± std to two significant digits of its own std (a column
    // at its tightest std's read `0.66075 ± 0.52452` beside 0.00011). A
    // single run takes the column's coarsest (a column of them: four
    // significant digits); ties are judged at the column's coarsest.
    let digits: Vec<usize> = (0..names.len())
        .map(|j| {
            let widest = rows.iter().filter_map(|r| r.cells[j].decimals()).min();
            let largest = rows
                .iter()
                .map(|r| r.cells[j].mean)
                .filter(|m| m.is_finite())
                .fold(0.0f64, |a, m| a.max(m.abs()));
            opts.digits
                .or(widest)
                .unwrap_or_else(|| significant_decimals(largest))
        })
        .collect();
    // A single run's spread, unknown, is the median of its column's groups'
    // (walkthroughs M, N: a lone run was the only bold row over the three
    // seeds it came from; I2: with the widest, a blown-up seed's std of 31
    // tied a lone 0.608 with 0.5895 ± 0.0084).
    let single_run_std: Vec<f64> = (0..names.len())
        .map(|col| {
            let cells = rows.iter().map(|r| &r.cells[col]);
            let stds: Vec<f64> = cells
                .filter(|c| c.n > 1 && c.std.is_finite())
                .map(|c| c.std)
                .collect();
            if stds.is_empty() {
                0.0
            } else {
                crate::session::metrics::median(&stds)
            }
        })
        .collect();
    // Ties as printed: means that differ past the shown digits tie too, and
    // so do means within one standard error of the difference of the best
    // (a walkthrough's 30.10 ± 9.48 was bold over 29.90 ± 1.41, n=2 each);
    // a column where every row ties has no best.
    let ties = |row: usize, col: usize| {
        let d = digits[col];
        let cell = &rows[row].cells[col];
        best_means[col].is_some_and(|best| {
            padded_or_exponent(best, d) == padded_or_exponent(cell.mean, d)
                || rows
                    .iter()
                    .map(|r| &r.cells[col])
                    .filter(|c| c.mean == best)
                    .any(|b| b.within_noise_of(cell, single_run_std[col]))
        })
    };
    let is_bold = |row: usize, col: usize| ties(row, col) && !(0..rows.len()).all(|r| ties(r, col));
    let cell = |s: &Summary, j: usize| -> (String, Option<String>) {
        let d = opts.digits.or(s.decimals()).unwrap_or(digits[j]);
        let mean = padded_or_exponent(s.mean, d);
        (mean, (s.n > 1).then(|| padded_or_exponent(s.std, d)))
    };
    // With one run a row there is no std to explain (walkthrough G).
    let one_run_a_row = rows.iter().all(|r| r.group.runs.len() == 1);
    // A fork's row would read like another group with the same settings.
    let with_forks = !key_names.is_empty() && groups.iter().any(|g| g.fork_of.is_some());
    let label_cells = |row: &Row| -> Vec<String> {
        if key_names.is_empty() {
            // Under `session`, its name, not its group's (walkthroughs Q, R).
            let fork =
                (row.group.fork_of.as_ref()).map_or(String::new(), |f| format!(" (fork of {f})"));
            return vec![match row.group.runs.first().filter(|_| one_run_a_row) {
                Some(run) => format!("{}{fork}", run.meta.name),
                None => row.group.label.clone(),
            }];
        }
        let mut cells: Vec<String> = row.group.values.iter().map(|(_, v)| v.clone()).collect();
        if with_forks {
            cells.push(row.group.fork_of.clone().unwrap_or_else(|| "-".into()));
        }
        cells
    };
    // No key tells the rows apart: they are named by their runs (not a
    // `group`, which read as `--group`'s: walkthroughs L and N).
    let mut label_header: Vec<String> = if key_names.is_empty() {
        vec![match one_run_a_row {
            true => "session".into(),
            false => "runs".into(),
        }]
    } else {
        key_names.clone()
    };
    if with_forks {
        label_header.push("forked from".into());
    }
    let (label_header, shown_names) = renamed_headers(&key_names, label_header, &names, opts)?;
    // Each kind of column says where its numbers come from; training-line
    // columns alone do not start with "final eval" (walkthrough M).
    let per_loss = |n: &String| PER_LOSS.iter().any(|(prefix, _, _)| n.starts_with(prefix));
    let mut sources = Vec::new();
    if !names.iter().all(per_loss) {
        let up_to = opts
            .at_step
            .map_or(String::new(), |step| format!(" up to step {step}"));
        // Runs whose best is their last eval, for want of a finite one.
        let never_finite: Vec<&str> = groups
            .iter()
            .flat_map(|g| &g.runs)
            .filter(|r| r.best_eval.is_none())
            .map(|r| r.meta.id.as_str())
            .collect();
        let never_finite = match never_finite.as_slice() {
            [] => String::new(),
            ids => format!(
                " ({} had no finite {primary} at any eval read here: {} last eval)",
                ids.join(", "),
                if ids.len() == 1 { "its" } else { "their" }
            ),
        };
        sources.push(match (opts.best, opts.at_step) {
            // Every eval column is read at that eval (walkthrough N took its
            // recall@5 for each run's best recall@5).
            (true, _) => format!(
                "each run's eval with the best {primary}{up_to}, every eval column read at it{never_finite}"
            ),
            (false, Some(step)) => format!("each run's last eval up to step {step}"),
            (false, None) => "final eval".to_string(),
        });
    }
    let steps = opts.at_step.map_or("steps".to_string(), |step| {
        format!("steps up to step {step}")
    });
    for (prefix, _, meaning) in PER_LOSS {
        if names.iter().any(|n| n.starts_with(prefix)) {
            sources.push(format!(
                "{prefix}<loss>: {meaning} of each run's values logged in its last {:.0}% of {steps} (the last {FINAL_WEIGHT_LINES}, or those of the last {FINAL_WEIGHT_STEPS} steps when more){}",
                FINAL_WEIGHT_SPAN * 100.0,
                if prefix == SHARE_PREFIX { caption::few_share_lines(groups) } else { String::new() }
            ));
        }
    }
    let decimals = names
        .iter()
        .position(|n| n == primary)
        .map(|col| digits[col]);
    sources.extend(forks::beside_parents(
        groups,
        primary,
        decimals,
        opts.best,
        opts.at_step,
    ));
    sources.extend(disagreeing.iter().map(|n| {
        format!(
            "`{n}`: no arrow and no bold, its runs disagree on which way is better \
             (workload.metric_goal, or the guess from its name)"
        )
    }));
    let what = sources.join("; ");
    // Weights and shares have no better direction: nothing bold to explain.
    // One row ranks nothing: no words on bold (walkthrough L2 read "none
    // here: each ranked column's values tie" under a lone run).
    let ranked = rows.len() > 1 && names.iter().any(|n| arrow(n).is_some());
    let any_bold = (0..rows.len()).any(|r| (0..names.len()).any(|c| is_bold(r, c)));
    Ok(match opts.format {
        TableFormat::Md => {
            let mut header = label_header.clone();
            header.push("n".into());
            header.extend(
                names
                    .iter()
                    .zip(&shown_names)
                    .map(|(n, shown)| match arrow(n) {
                        Some(a) => format!("{shown} {a}"),
                        None => shown.clone(),
                    }),
            );
            let header: Vec<String> = header.iter().map(|c| c.replace('|', "\\|")).collect();
            let mut out = format!("| {} |\n", header.join(" | "));
            let aligns: Vec<&str> = (0..header.len())
                .map(|i| {
                    if i < label_header.len() {
                        "---"
                    } else {
                        "---:"
                    }
                })
                .collect();
            out.push_str(&format!("|{}|\n", aligns.join("|")));
            for (i, row) in rows.iter().enumerate() {
                let mut cells = label_cells(row);
                cells.push(row.group.runs.len().to_string());
                for (j, s) in row.cells.iter().enumerate() {
                    let (mean, std) = cell(s, j);
                    let text = std.map_or(mean.clone(), |std| format!("{mean} ± {std}"));
                    cells.push(if is_bold(i, j) {
                        format!("**{text}**")
                    } else {
                        text
                    });
                }
                // A `|` in a label (`--label …=a|b`) split the row.
                let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            let spread = caption::spread_words(one_run_a_row, ranked, any_bold, "±");
            out.push_str(&format!("\n{what}{spread}.\n"));
            out
        }
        TableFormat::Csv => {
            let mut header = label_header.clone();
            header.push("n".into());
            for n in &shown_names {
                for stat in ["mean", "std", "min", "max"] {
                    header.push(format!("{n}_{stat}"));
                }
            }
            let mut out = header
                .iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(",")
                + "\n";
            for row in &rows {
                // No value (`-`) and a key the combiner does not read (`–`)
                // are empty fields: a dash in a numeric column (a
                // walkthrough's `meltr.meta_lr` read `–`) breaks a reader's
                // parse.
                let mut cells: Vec<String> = label_cells(row)
                    .into_iter()
                    .map(|c| {
                        if c == "-" || c == "–" {
                            String::new()
                        } else {
                            c
                        }
                    })
                    .collect();
                cells.push(row.group.runs.len().to_string());
                // An f64 run's whole-number metrics are f32s too: its rows
                // keep f64's digits (the review).
                let f32_runs = row
                    .group
                    .runs
                    .iter()
                    .all(|r| r.value("train.dtype").as_deref() != Some("f64"));
                for s in &row.cells {
                    let single = s.single_precision && f32_runs;
                    let full = |v: f64| crate::numfmt::full_precision(v, single);
                    let std = if s.n > 1 { full(s.std) } else { String::new() };
                    cells.extend([full(s.mean), std, full(s.min), full(s.max)]);
                }
                let cells: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
                out.push_str(&(cells.join(",") + "\n"));
            }
            out
        }
        TableFormat::Latex => {
            let columns = format!(
                "{}r{}",
                "l".repeat(label_header.len()),
                "c".repeat(names.len())
            );
            let latex = |text: &str| match opts.label_texts.iter().any(|t| t == text) {
                true => latex_text(text),
                false => latex_escape(text),
            };
            let mut header: Vec<String> = label_header.iter().map(|h| latex(h)).collect();
            header.push("$n$".into());
            header.extend(names.iter().zip(&shown_names).map(|(n, shown)| {
                let arrow = match arrow(n) {
                    Some("↑") => r" $\uparrow$",
                    Some(_) => r" $\downarrow$",
                    None => "",
                };
                format!("{}{arrow}", latex(shown))
            }));
            let spread = caption::spread_words(one_run_a_row, ranked, any_bold, "$\\pm$");
            let mut out = format!(
                "% meltr-tui table: {what}{spread}. Needs \\usepackage{{booktabs}}.\n\\begin{{tabular}}{{{columns}}}\n\\toprule\n{} \\\\\n\\midrule\n",
                header.join(" & ")
            );
            for (i, row) in rows.iter().enumerate() {
                let mut cells: Vec<String> = label_cells(row).iter().map(|c| latex(c)).collect();
                cells.push(row.group.runs.len().to_string());
                for (j, s) in row.cells.iter().enumerate() {
                    let (mean, std) = cell(s, j);
                    let (mean, std) = (latex_exponent(&mean), std.as_deref().map(latex_exponent));
                    let body = std.map_or(mean.clone(), |std| format!("{mean} \\pm {std}"));
                    cells.push(if is_bold(i, j) {
                        format!("$\\mathbf{{{body}}}$")
                    } else {
                        format!("${body}$")
                    });
                }
                out.push_str(&format!("{} \\\\\n", cells.join(" & ")));
            }
            out.push_str("\\bottomrule\n\\end{tabular}\n");
            out
        }
    })
}

mod caption;
mod directions;
mod latex;
use latex::latex_text;
pub use latex::{latex_escape, plain_math};
mod forks;
mod headers;
use headers::renamed_headers;
#[cfg(test)]
mod caption_tests;
#[cfg(test)]
mod header_tests;
#[cfg(test)]
mod tests;

/// `v` to `d` decimals, or, at the most decimals a cell gets (six), with
/// an exponent where those read as zero (walkthrough K's `share/recon`
/// read `0.000000 ± 0.000000` for a loss with a share near 1e-7). Fewer
/// decimals follow the cell's std: `0.00 ± 0.30` says what it should.
fn padded_or_exponent(v: f64, d: usize) -> String {
    let shown = padded(v, d);
    let zero = shown.chars().all(|c| matches!(c, '0' | '.' | '-'));
    match zero && d >= 6 && v.is_finite() && v != 0.0 {
        true => format!("{v:.1e}"),
        false => shown,
    }
}

/// A cell's number as LaTeX math sets it: `2.0e-7` as `2.0\times10^{-7}`
/// (`e-7` in math mode reads as a product with a spaced minus).
fn latex_exponent(number: &str) -> String {
    match number.split_once('e') {
        Some((mantissa, exponent)) if exponent.parse::<i32>().is_ok() => {
            format!("{mantissa}\\times10^{{{exponent}}}")
        }
        _ => number.to_string(),
    }
}

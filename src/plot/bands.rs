//! The grouped comparison figure: each group of sessions (the seeds of one
//! setting) drawn as its mean curve with a translucent band (± one sample
//! std, or min–max) over the steps every member logged; a group of one is
//! its plain curve. The std band stays within the members' values (an
//! accuracy band never passes the best seed, a loss band never reaches
//! below the lowest loss, so a log axis always has it). Training losses
//! are EMA-smoothed per session first.

use super::chart::{Body, Chart};
use super::data::{SeriesSource, SessionData};
use super::figures::Prep;
use super::labels::{eval_axis_label, train_axis_label};
use super::scale::Kind;
use super::series::{decimate, ema, ema_of_logs, Emphasis, Line, Points};
use super::style::look;
use std::collections::BTreeMap;

/// What surrounds a group's mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Band {
    /// ± one sample standard deviation (n − 1), within the members' range.
    Std,
    /// From the lowest to the highest member.
    Minmax,
    /// The mean alone.
    None,
}

/// The mean and band edges of a group's curves at the steps all of them
/// have: `(step, mean, lower, upper)`.
pub fn aggregate(curves: &[Points], band: Band) -> Vec<(f64, f64, f64, f64)> {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for curve in curves {
        for &(x, y) in curve {
            at.entry(x.to_bits()).or_default().push(y);
        }
    }
    let mut out: Vec<(f64, f64, f64, f64)> = at
        .into_iter()
        .filter(|(_, ys)| ys.len() == curves.len())
        .map(|(bits, ys)| {
            let n = ys.len() as f64;
            let mean = ys.iter().sum::<f64>() / n;
            let (lo, hi) = match band {
                Band::Std if ys.len() > 1 => {
                    let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1.0);
                    let (min, max) = range(&ys);
                    ((mean - var.sqrt()).max(min), (mean + var.sqrt()).min(max))
                }
                Band::Minmax => range(&ys),
                _ => (mean, mean),
            };
            (f64::from_bits(bits), mean, lo, hi)
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The lowest and highest of `ys`.
fn range(ys: &[f64]) -> (f64, f64) {
    let min = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// A group to draw: its legend label and its sessions.
pub struct Grouped<'a> {
    pub label: String,
    pub sessions: Vec<&'a SessionData>,
    /// Its look ([`look`]'s `i`).
    pub slot: usize,
}

/// One metric (eval metric or training loss, checked to exist in every
/// session) as one mean curve and band per group; training curves are
/// smoothed in log space for a log axis (`log_scale`). Also returns a note
/// for each group whose mean stops before its longest run does.
pub fn compare(
    groups: &[Grouped],
    metric: &str,
    prep: Prep,
    (band, log_scale): (Band, bool),
) -> anyhow::Result<(Chart, Vec<String>)> {
    let mut notes = Vec::new();
    let mut bands = Vec::new();
    let mut means = Vec::new();
    let mut source = SeriesSource::Eval;
    let mut largest = 0;
    // Whether some banded group has exactly two runs.
    let mut some_pair = false;
    // Each group's sessions' series, looked up once; the longest sets the
    // smoothing of all.
    let series: Vec<Vec<(SeriesSource, &Points)>> = groups
        .iter()
        .map(|g| g.sessions.iter().map(|s| s.series(metric)).collect())
        .collect::<anyhow::Result<_>>()?;
    let ema_weight = match super::data::is_schedule(metric) {
        true => 0.0,
        false => prep
            .smoothing
            .weight_for(series.iter().flatten().map(|(_, p)| *p)),
    };
    for (i, group) in groups.iter().enumerate() {
        let mut curves = Vec::new();
        for &(src, points) in &series[i] {
            source = src;
            curves.push(match src {
                SeriesSource::Train if log_scale => ema_of_logs(points, ema_weight),
                SeriesSource::Train => ema(points, ema_weight),
                SeriesSource::Eval => points.clone(),
            });
        }
        let agg = aggregate(&curves, band);
        let Some((lo, hi)) = agg.first().zip(agg.last()).map(|(a, b)| (a.0, b.0)) else {
            anyhow::bail!(
                "the sessions of `{}` share no step with `{metric}`",
                group.label
            );
        };
        if let Some(note) = cut_short(group, &series[i], hi) {
            notes.push(note);
        }
        if log_scale {
            let banded = group.sessions.len() > 1 && band != Band::None;
            notes.extend(not_on_log_axis(&group.label, &agg, banded));
        }
        let n = group.sessions.len();
        largest = largest.max(n);
        some_pair |= n == 2;
        let thin = |p: Points| decimate(&p, lo, hi, prep.columns);
        if n > 1 && band != Band::None {
            let mut outline = thin(agg.iter().map(|a| (a.0, a.3)).collect());
            let lower = thin(agg.iter().map(|a| (a.0, a.2)).collect());
            outline.extend(lower.into_iter().rev());
            bands.push(Line {
                label: None,
                points: outline,
                look: look(group.slot),
                emphasis: Emphasis::Band,
            });
        }
        means.push(Line {
            // Beside groups of several runs a single run says so too (a
            // walkthrough's fork, one seed, read like another group's mean).
            label: Some(if n > 1 || groups.iter().any(|g| g.sessions.len() > 1) {
                format!("{} (n={n})", group.label)
            } else {
                group.label.clone()
            }),
            points: thin(agg.iter().map(|a| (a.0, a.1)).collect()),
            look: look(group.slot),
            emphasis: match source {
                SeriesSource::Eval => Emphasis::WithMarkers,
                SeriesSource::Train => Emphasis::Main,
            },
        });
    }
    let first = groups
        .first()
        .and_then(|g| g.sessions.first())
        .map(|s| &s.meta);
    let y_label = match (source, first) {
        (SeriesSource::Eval, Some(meta)) => eval_axis_label(meta, metric),
        (SeriesSource::Eval, None) => format!("validation {metric}"),
        (SeriesSource::Train, _) => train_axis_label(metric, ema_weight),
    };
    // Two runs' ± std always passes both (it is their gap / √2): where no
    // group has more, every band is its min–max, and the label says so
    // (walkthrough L's "mean ± std" band matched `--band minmax` pixel for
    // pixel).
    let spread = match band {
        _ if largest < 2 => "",
        Band::Std if largest == 2 => " — mean, min–max of 2 runs",
        // Beside larger groups, a pair's band is its min–max all the same
        // (walkthrough D's axis said "± std" of one).
        Band::Std if some_pair => " — mean ± std over runs (min–max of 2)",
        Band::Std => " — mean ± std over runs",
        Band::Minmax => " — mean, min–max over runs",
        Band::None => " — mean over runs",
    };
    if band == Band::Std && some_pair {
        // Said where the figure is made too: `--band std` drew the same
        // figure as the default, with only the axis saying why (walkthrough J).
        notes.push(
            "a group of 2 runs is drawn with its min–max band: ± std of two runs always spans both \
             (the x axis says so; with 3 or more runs a band is ± std)"
                .to_string(),
        );
    }
    bands.extend(means);
    let chart = Chart {
        x_label: format!("training step{spread}"),
        y_label,
        y_kind: Kind::Linear,
        tight_x: source == SeriesSource::Train,
        zero_line: false,
        marks: Vec::new(),
        body: Body::Lines(bands),
    };
    Ok((chart, notes))
}

/// A note when a log axis cannot draw some of a group's mean or band
/// (≤ 0, or not finite): those points are left out. (A member's value of
/// 0 is averaged into the mean, not left out.)
fn not_on_log_axis(label: &str, agg: &[(f64, f64, f64, f64)], banded: bool) -> Option<String> {
    let off = |v: f64| !super::scale::on_log_axis(v);
    let means = agg.iter().filter(|a| off(a.1)).count();
    let lows = if banded {
        agg.iter().filter(|a| off(a.2)).count()
    } else {
        0
    };
    let mut parts = Vec::new();
    if means > 0 {
        parts.push(format!(
            "{label}'s mean at {means} of its {} steps",
            agg.len()
        ));
    }
    if lows > 0 {
        parts.push(format!(
            "{label}'s band's lower edge at {lows} of its {} steps",
            agg.len()
        ));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "note: the log axis leaves out {} (≤ 0 or not finite: no logarithm)",
            parts.join(" and ")
        )
    })
}

/// Where a group's mean stops at `last`, the last step all its runs
/// logged, before some run's own end: says so and names the run that ends
/// first (a walkthrough's group mean stopped at a crashed seed's last
/// step, unsaid).
fn cut_short(group: &Grouped, series: &[(SeriesSource, &Points)], last: f64) -> Option<String> {
    let ends: Vec<f64> = series
        .iter()
        .map(|(_, p)| p.last().map_or(f64::NEG_INFINITY, |q| q.0))
        .collect();
    let longest = ends.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if longest <= last {
        return None;
    }
    let shortest = (0..ends.len()).min_by(|&a, &b| ends[a].total_cmp(&ends[b]))?;
    Some(format!(
        "note: {}'s mean stops at step {last}, the last step all its {} runs logged; {} ends first (step {}), its longest run at step {longest}",
        group.label,
        series.len(),
        group.sessions[shortest].meta.name,
        ends[shortest],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_bands_over_common_steps() {
        let a = vec![(0.0, 1.0), (10.0, 2.0), (20.0, 3.0)];
        let b = vec![(0.0, 3.0), (10.0, 4.0)];
        let std = aggregate(&[a.clone(), b.clone()], Band::Std);
        assert_eq!(std.len(), 2, "step 20 is not in both");
        // ± √2 around 2 would pass both members (1 and 3): the band is
        // theirs.
        assert_eq!(std[0], (0.0, 2.0, 1.0, 3.0));
        let minmax = aggregate(&[a, b], Band::Minmax);
        assert_eq!(minmax[1], (10.0, 3.0, 2.0, 4.0));
        // Where ± one std lies inside the members' range, it is the band.
        let three = [vec![(0.0, 0.0)], vec![(0.0, 1.0)], vec![(0.0, 5.0)]];
        let (_, mean, lo, hi) = aggregate(&three, Band::Std)[0];
        let sd = ((4.0 + 1.0 + 9.0) / 2.0f64).sqrt();
        assert_eq!((mean, lo, hi), (2.0, 0.0, 2.0 + sd));
        assert!(2.0 - sd < 0.0 && 2.0 + sd < 5.0);
    }
}

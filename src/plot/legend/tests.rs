//! Tests of the legend and of fitting text in a width.

use super::*;
use crate::plot::series::Emphasis;

/// At every width, a cut edit ends on a whole number of the edit, on
/// one cut among the digits after its point, or on no number: never
/// on one of another magnitude.
#[test]
fn a_cut_never_falls_inside_a_number() {
    let m = Metrics::get();
    let text = "train.steps 15000→5000, meta_lr 0.001→2e-3";
    let whole: Vec<&str> = text.split([' ', '→', ',']).collect();
    let full = m.width(text, 10.0);
    let mut widths = 0;
    for tenth in 0..=10 * full.ceil() as usize {
        let cut = fitted(text, tenth as f64 / 10.0, 10.0, m);
        let kept = cut.trim_end_matches('…');
        let last = kept.rsplit([' ', '→', ',']).next().unwrap_or("");
        let fraction_of = |w: &&str| {
            w.starts_with(last)
                && last.contains('.')
                && w[last.len()..].chars().all(|c| c.is_ascii_digit())
        };
        assert!(
            last.parse::<f64>().is_err() || whole.contains(&last) || whole.iter().any(fraction_of),
            "{cut:?} at {tenth}/10 pt"
        );
        widths += usize::from(cut.ends_with('…') && !kept.is_empty());
    }
    assert!(widths > 0, "no width cut it");
    // Where only part of the number fits, the cut goes before it.
    let room = m.width("train.steps 150…", 10.0);
    assert_eq!(fitted(text, room, 10.0, m), "train.steps…");
    // Among the digits after the point, it may be cut.
    let room = m.width("train.steps 15000→5000, meta_lr 0.00…", 10.0);
    assert_eq!(
        fitted(text, room, 10.0, m),
        "train.steps 15000→5000, meta_lr 0.00…"
    );
    // Words are still cut inside.
    let room = m.width("train.st…", 10.0);
    assert_eq!(fitted(text, room, 10.0, m), "train.st…");
}

fn lines(labels: &[&str]) -> Vec<Line> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| Line {
            label: Some(l.to_string()),
            points: vec![(0.0, 0.0)],
            look: crate::plot::style::look(i),
            emphasis: Emphasis::Main,
        })
        .collect()
}

/// A mark's label is never under the legend, however many points the
/// spot would spare (walkthrough T's legend covered a label: a few
/// points among thousands, within the tolerance for data points).
#[test]
fn a_spot_over_a_marks_label_is_not_taken() {
    let theme = crate::plot::Style::Paper.theme();
    let entries = lines(&["a", "b"]);
    let legend = Legend::new(&entries, &theme, Metrics::get()).unwrap();
    let area = Rect {
        x: 0.0,
        y: 0.0,
        w: 300.0,
        h: 200.0,
    };
    let Some(Placement::Inside {
        x: free_x,
        y: free_y,
    }) = legend.inside(area, &[], &[])
    else {
        panic!("an empty plot has room")
    };
    let (w, h) = legend.boxed();
    let middle = |x: f64, y: f64| (x + w / 2.0, y + h / 2.0);
    // Two points in every other spot and a thousand away from all: the
    // label's spot, one point, would be the cheapest and within the
    // tolerance were the label a data point.
    let (cx, cy) = (area.x + (area.w - w) / 2.0, area.y + (area.h - h) / 2.0);
    let mut drawn = vec![middle(cx, cy); 1000];
    for (x, y) in legend.spots(area) {
        if (x, y) != (free_x, free_y) {
            drawn.extend([middle(x, y); 2]);
        }
    }
    let label = [middle(free_x, free_y)];
    match legend.inside(area, &drawn, &label) {
        Some(Placement::Inside { x, y }) => assert!((x, y) != (free_x, free_y)),
        other => panic!("{other:?}"),
    }
    // As a data point it would have been taken.
    let mut with_label = drawn.clone();
    with_label.extend(label);
    assert_eq!(
        legend.inside(area, &with_label, &[]),
        Some(Placement::Inside {
            x: free_x,
            y: free_y
        })
    );
}

/// Greedy packing left a row of one between rows of two, columns out of
/// line; a grid lines them up and fills every row but the last.
#[test]
fn entries_above_the_axes_form_aligned_columns() {
    let theme = crate::plot::Style::Paper.theme();
    let m = Metrics::get();
    let labels = ["a", "a much longer label than the others", "b", "c", "d"];
    let lines = lines(&labels);
    let legend = Legend::new(&lines, &theme, m).unwrap();
    let two = legend.grid_width(&[vec![0, 1], vec![2, 3], vec![4]]);
    // Packed greedily, "b", "c" and "d" would share a row out of line
    // with the columns above.
    let Placement::Above { rows } = legend.above(two + 1.0) else {
        panic!("above gives rows")
    };
    assert_eq!(rows, [vec![0, 1], vec![2, 3], vec![4]]);
    let Placement::Above { rows } = legend.above(1.0) else {
        panic!("above gives rows")
    };
    assert_eq!(rows.len(), labels.len(), "one column when nothing fits");
}

/// A long group label keeps its size after the cut (walkthrough A's
/// `steps=400, log_every=10, kind=meltr, on_collapse=restore…` lost its
/// `(n=2)`).
#[test]
fn a_cut_label_keeps_its_group_size() {
    let theme = crate::plot::Style::Paper.theme();
    let m = Metrics::get();
    let long = "train.steps=400, train.log_every=10, combiner.kind=meltr, meltr.on_collapse=restore, meltr.loss_scale=capped (n=2)";
    let lines = lines(&[long, "sum (n=2)"]);
    let legend = Legend::new(&lines, &theme, m).unwrap();
    let label = &legend.labels[0];
    assert!(
        label.ends_with("… (n=2)") && label.starts_with("train.steps=400"),
        "{label}"
    );
    assert_eq!(legend.labels[1], "sum (n=2)");
    let width = theme.width_in * 72.0 - 2.0 * theme.tick_pt;
    assert!(legend.entry_w(0) <= width);
}

/// Runs edited many times had legends alike up to the cut; they keep
/// the part that tells them apart and are cut in the middle.
#[test]
fn labels_alike_up_to_the_cut_keep_what_differs() {
    let theme = crate::plot::Style::Paper.theme();
    let m = Metrics::get();
    let stem = "kind=meltr, meltr.meta_lr=0.001→0.002@100→0.003@200→0.004@300→0.005@400, meltr.gamma=0.1→0.2@150";
    let a = format!("{stem}, aid.iterations=0");
    let b = format!("{stem}, aid.iterations=3");
    let lines = lines(&[&a, &b, "sum"]);
    let legend = Legend::new(&lines, &theme, m).unwrap();
    assert_ne!(legend.labels[0], legend.labels[1], "{:?}", legend.labels);
    assert!(
        legend.labels[0].ends_with("aid.iterations=0")
            && legend.labels[1].ends_with("aid.iterations=3"),
        "{:?}",
        legend.labels
    );
    assert!(legend.labels[0].starts_with("kind=meltr") && legend.labels[0].contains('…'));
    assert_eq!(legend.labels[2], "sum");
    let width = theme.width_in * 72.0 - 2.0 * theme.tick_pt;
    assert!(legend.entry_w(0) <= width && legend.entry_w(1) <= width);
}

/// Walkthrough M's two MELTR entries read `…, meta_lr=0.001,… (n=3)`
/// and `…, meta_lr=0.001… (n=1)`: alike but for a comma and the group
/// size. They are cut in the middle to keep what differs.
#[test]
fn labels_alike_but_for_punctuation_and_group_size_keep_what_differs() {
    let theme = crate::plot::Style::Paper.theme();
    let m = Metrics::get();
    let stem = "aid.alpha=0.1, aid.iterations=0, combiner.kind=meltr, meltr.meta_lr=0.001";
    let a = format!("{stem}, train.steps=400 (n=3)");
    let b = format!("{stem}→0.5@78→0.001@102, train.steps=600→200@155 (n=1)");
    let lines = lines(&[&a, &b, "sum (n=3)"]);
    let legend = Legend::new(&lines, &theme, m).unwrap();
    let (la, lb) = (&legend.labels[0], &legend.labels[1]);
    assert!(
        la.contains("steps=400") && lb.contains("200@155"),
        "{la} / {lb}"
    );
    let width = theme.width_in * 72.0 - 2.0 * theme.tick_pt;
    assert!(legend.entry_w(0) <= width && legend.entry_w(1) <= width);
}

/// Twins told apart by a session id in parentheses fit uncut, and stay
/// as they are (the review: they read alike without the parentheses).
#[test]
fn uncut_twins_with_ids_stay_whole() {
    let theme = crate::plot::Style::Paper.theme();
    let m = Metrics::get();
    let texts = ["baseline (20240101-abc)", "baseline (20240102-def)"];
    let lines = lines(&texts);
    let legend = Legend::new(&lines, &theme, m).unwrap();
    assert_eq!(legend.labels, texts.map(String::from).to_vec());
}

/// A label wider than the figure ran off its right edge (eight
/// settings' labels in a paper figure); it is shortened with `…`.
#[test]
fn a_label_wider_than_the_figure_is_shortened() {
    let theme = crate::plot::Style::Paper.theme();
    let m = Metrics::get();
    let long =
        "kind=meltr, gamma=0.1, steps=360 (fork of meltr-s1@300, my_fork%1@300, another@300)";
    let lines = lines(&["short", long]);
    let legend = Legend::new(&lines, &theme, m).unwrap();
    assert_eq!(legend.labels[0], "short");
    assert!(legend.labels[1].ends_with('…') && legend.labels[1].len() < long.len());
    assert!(long.starts_with(legend.labels[1].trim_end_matches('…')));
    let width = theme.width_in * 72.0 - 2.0 * theme.tick_pt;
    assert!(
        legend.entry_w(1) <= width,
        "{} > {width}",
        legend.entry_w(1)
    );
}

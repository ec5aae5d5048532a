//! Layout tests of [`super::Chart`]: labels, legends and ticks.

use super::*;

/// The number in attribute `name` of an SVG tag's text (after `<tag`).
fn attribute(tag: &str, name: &str) -> f64 {
    tag.split(&format!(" {name}=\""))
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Under a tall legend the y label, centred on the short axes, ran up
/// into the legend (walkthrough: eight settings in a paper figure).
#[test]
fn a_y_label_longer_than_the_axes_starts_at_their_top() {
    let lines: Vec<Line> = (0..8)
        .map(|i| Line {
            label: Some(format!(
                "kind=meltr, gamma=0.{i}, steps=360 (fork of meltr-s0@240)"
            )),
            points: vec![(0.0, i as f64), (10.0, i as f64 + 1.0)],
            look: super::super::style::look(i),
            emphasis: super::super::series::Emphasis::Main,
        })
        .collect();
    let chart = Chart {
        x_label: "training step".into(),
        y_label: "validation val_mse ↓".into(),
        y_kind: Kind::Linear,
        tight_x: false,
        zero_line: false,
        marks: Vec::new(),
        body: Body::Lines(lines),
    };
    let svg = chart.to_svg(&super::super::Style::Paper.theme());
    let number = |text: &str, key: &str| -> f64 {
        let at = text.find(key).unwrap() + key.len();
        text[at..].split('"').next().unwrap().parse().unwrap()
    };
    let clip = &svg[svg.find("<clipPath id=\"axes\">").unwrap()..];
    let (top, height) = (number(clip, "y=\""), number(clip, "height=\""));
    let label = &svg[svg.find("rotate(-90").unwrap() - 120..];
    let label = &label[label.find("<text").unwrap()..];
    let mid = number(label, " y=\"");
    let long = Metrics::get().width(
        "validation val_mse ↓",
        super::super::Style::Paper.theme().label_pt,
    );
    assert!(long > height, "the case needs a label longer than the axes");
    assert!(
        mid - long / 2.0 >= top - 1e-6,
        "label top {} above the axes' {top}",
        mid - long / 2.0
    );
}

/// A slides figure is 324 points tall; a 16-point label of a long loss
/// name (316 points) ran off its top (walkthrough).
#[test]
fn a_y_label_longer_than_the_figure_is_tall_fits_in_it() {
    let theme = super::super::Style::Slides.theme();
    let height = theme.height_in * 72.0;
    let drawn = |y_label: &str| -> (String, f64, f64) {
        let chart = Chart {
            x_label: "training step".into(),
            y_label: y_label.into(),
            y_kind: Kind::Log,
            tight_x: false,
            zero_line: false,
            marks: Vec::new(),
            body: Body::Lines(vec![Line {
                label: None,
                points: vec![(0.0, 1.0), (10.0, 100.0)],
                look: super::super::style::look(0),
                emphasis: super::super::series::Emphasis::Main,
            }]),
        };
        let svg = chart.to_svg(&theme);
        let at = svg.find("rotate(-90").unwrap();
        let element = &svg[svg[..at].rfind("<text").unwrap()..];
        let attribute = |key: &str| -> f64 {
            let from = element.find(key).unwrap() + key.len();
            element[from..].split('"').next().unwrap().parse().unwrap()
        };
        let text =
            element[element.find('>').unwrap() + 1..element.find("</text>").unwrap()].to_string();
        (text, attribute(" y=\""), attribute("font-size=\""))
    };
    let long = "training loss count_mse_x200 (EMA 0.9)";
    // Nearly as long as the figure is tall: more than it has between
    // its margins.
    assert!(
        Metrics::get().width(long, theme.label_pt) > 0.95 * height,
        "the case needs a label about as tall as the figure"
    );
    for label in [long.to_string(), format!("{long} {long}")] {
        let (text, mid, pt) = drawn(&label);
        let half = Metrics::get().width(&text, pt) / 2.0;
        assert!(
            mid - half >= 0.0 && mid + half <= height,
            "{text:?} at {pt} pt spans {}..{} of {height}",
            mid - half,
            mid + half
        );
        assert!(pt >= 0.75 * theme.label_pt - 1e-9, "{pt}");
    }
    let (text, _, pt) = drawn(long);
    assert_eq!(text, long, "set smaller ({pt} pt), not cut");
    let twice = format!("{long} {long}");
    let (text, _, _) = drawn(&twice);
    assert!(
        text.ends_with('…') && twice.starts_with(text.trim_end_matches('…')),
        "{text}"
    );
}

/// Wide y tick labels push the axes right; the transforms figure's x
/// label, centred under them, ran off the figure's right edge
/// (walkthrough O: "(others fixed" in the paper style).
#[test]
fn an_x_label_stays_inside_the_figure_beside_wide_y_ticks() {
    let theme = super::super::Style::Paper.theme();
    let width = theme.width_in * 72.0;
    let label = "lₖ as a multiple of its value at step 500 (others fixed)";
    let chart = Chart {
        x_label: label.into(),
        y_label: "combined loss M(l)".into(),
        y_kind: Kind::Linear,
        tight_x: false,
        zero_line: false,
        marks: Vec::new(),
        body: Body::Lines(vec![Line {
            label: None,
            points: vec![(0.0, -16.975), (1.0, -17.0), (2.0, -17.075)],
            look: super::super::style::look(0),
            emphasis: super::super::series::Emphasis::Main,
        }]),
    };
    let svg = chart.to_svg(&theme);
    let at = svg
        .find(&format!(">{label}</text>"))
        .expect("the label whole");
    let element = &svg[svg[..at].rfind("<text").unwrap()..at];
    let (mid, pt) = (attribute(element, "x"), attribute(element, "font-size"));
    let half = Metrics::get().width(label, pt) / 2.0;
    assert!(
        mid - half >= 0.0 && mid + half <= width,
        "spans {}..{} of {width}",
        mid - half,
        mid + half
    );
}

#[test]
fn a_short_y_axis_still_gets_three_labels() {
    // 0.45-0.9 at three labels' room gives a 0.2 step: 0.6 and 0.8 only.
    let scale = Scale::exact(Kind::Linear, 0.45, 0.9);
    assert_eq!(scale.ticks(3).major.len(), 2);
    let ticks = y_ticks_at_least_three(&scale, 2);
    let labels: Vec<&str> = ticks.major.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(labels, ["0.5", "0.6", "0.7", "0.8", "0.9"]);
}

/// A walkthrough's weights figure jumped at three collapse restores and
/// two live edits with nothing to say why: each is a dashed line with its
/// label; marks closer than a label's height share one label, and so do
/// the closest neighbours where there are too many labels.
#[test]
fn marks_are_labelled_lines_merged_when_close() {
    let line = Line {
        label: Some("w".into()),
        points: vec![(0.0, 0.0), (1000.0, 1.0)],
        look: super::super::style::look(0),
        emphasis: super::super::series::Emphasis::Main,
    };
    let chart = |marks: &[(f64, &str)]| Chart {
        x_label: "training step".into(),
        y_label: "w".into(),
        y_kind: Kind::Linear,
        tight_x: true,
        zero_line: false,
        marks: marks
            .iter()
            .map(|&(x, label)| Mark {
                x,
                label: label.into(),
            })
            .collect(),
        body: Body::Lines(vec![line.clone()]),
    };
    let theme = super::super::Style::Paper.theme();
    let texts = |svg: &str| -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.to_string()))
            .collect()
    };
    let dashed = |svg: &str| svg.matches("stroke-dasharray").count();
    let plain = chart(&[]).to_svg(&theme);
    let svg = chart(&[
        (300.0, "aid.alpha"),
        (302.0, "restore"),
        (700.0, "restore"),
        (5000.0, "out of view"),
    ])
    .to_svg(&theme);
    let labels = texts(&svg);
    assert!(
        labels.contains(&"aid.alpha, restore".to_string()),
        "{labels:?}"
    );
    assert!(labels.contains(&"restore".to_string()), "{labels:?}");
    // On a white halo: a label crossing a curve read badly (walkthrough K).
    assert_eq!(
        svg.matches("paint-order=\"stroke\"").count(),
        2,
        "one halo per label"
    );
    assert!(
        !labels.iter().any(|l| l.contains("out of view")),
        "{labels:?}"
    );
    assert_eq!(
        dashed(&svg) - dashed(&plain),
        3,
        "one line per mark in view"
    );
    // Keys too long to fit joined go whole in two columns, the second left
    // of the first, where there is room (a resume's `aid.iterations 1→0,
    // train.steps 4000→1000` read `iterations 1→0, ste…`, walkthroughs T
    // and U) ...
    let x_of = |svg: &str, text: &str| -> f64 {
        let tag = svg
            .split("<text")
            .find(|t| t.contains(&format!(">{text}</text>")))
            .unwrap_or_else(|| panic!("no `{text}` in {:?}", texts(svg)));
        attribute(tag, "x")
    };
    let svg = chart(&[(500.0, "aid.iterations"), (503.0, "meltr.gamma")]).to_svg(&theme);
    assert!(x_of(&svg, "meltr.gamma") < x_of(&svg, "aid.iterations"));
    // ... else, at the axes' left edge, they lose their sections, not the
    // second key.
    let svg = chart(&[(2.0, "aid.iterations"), (4.0, "meltr.gamma")]).to_svg(&theme);
    let labels = texts(&svg);
    assert!(
        labels.contains(&"iterations, gamma".to_string()),
        "{labels:?}"
    );
    // Except `train.steps`: `steps 600→900` read as a range of steps
    // beside a fork's mark (walkthrough M).
    let svg = chart(&[(2.0, "aid.iterations"), (4.0, "train.steps")]).to_svg(&theme);
    let labels = texts(&svg);
    assert!(
        labels.contains(&"iterations, train.steps".to_string()),
        "{labels:?}"
    );
    // A line by the left spine has its label right of it, not over the
    // spine and the tick labels (walkthrough J's fork at step 39 of 400);
    // elsewhere left of it.
    // The first dashed line's x.
    let line_x = |svg: &str| -> f64 {
        svg.split("<path d=\"M")
            .find(|p| p.contains("stroke-dasharray"))
            .and_then(|p| p.split(' ').next())
            .unwrap()
            .parse()
            .unwrap()
    };
    let label_side = |x: f64| {
        let svg = chart(&[(x, "fork of base")]).to_svg(&theme);
        x_of(&svg, "fork of base") - line_x(&svg)
    };
    assert!(label_side(2.0) > 0.0 && label_side(500.0) < 0.0);
    // Near the left spine, with room for one column left of its line and
    // more right of it, a label too long for one column goes right, whole
    // (walkthrough H's `iterations 0→1, g…` at step 111 of 1500).
    let edits = "aid.iterations 0→1, meltr.gamma 0.1→0.3";
    let svg = chart(&[(55.0, edits)]).to_svg(&theme);
    let labels = texts(&svg);
    let whole = |edit: &str| labels.iter().find(|l| l.ends_with(edit)).cloned();
    let (Some(iterations), Some(gamma)) = (whole("iterations 0→1"), whole("gamma 0.1→0.3"))
    else {
        panic!("{labels:?}")
    };
    assert!(
        line_x(&svg) < x_of(&svg, &iterations) && x_of(&svg, &iterations) < x_of(&svg, &gamma),
        "{svg}"
    );
    // A mark close right of such a label shares it, not drawn over it.
    let labels = texts(&chart(&[(2.0, "a"), (60.0, "b")]).to_svg(&theme));
    assert!(labels.contains(&"a, b".to_string()), "{labels:?}");
    // Nor beside another label, whose column a second one would cover.
    let svg = chart(&[
        (450.0, "restore"),
        (500.0, "aid.iterations"),
        (503.0, "meltr.gamma"),
    ])
    .to_svg(&theme);
    assert!(
        texts(&svg).contains(&"iterations, gamma".to_string()),
        "{:?}",
        texts(&svg)
    );
    // An edit with its values (OLD→NEW); the same key edited again at the same step
    // reads as one chain (walkthrough R: 0→2→1 at step 327 showed
    // `iterations` alone); a short key keeps its value when shortened.
    let svg = chart(&[(500.0, "aid.iterations 0→2"), (500.0, "aid.iterations 2→1")]).to_svg(&theme);
    let labels = texts(&svg);
    assert!(
        labels.contains(&"aid.iterations 0→2→1".to_string()),
        "{labels:?}"
    );
    let long = "workload.some_long_section.iters 0→2, meltr.another_section.lr 1→3";
    let svg = chart(&[(2.0, long)]).to_svg(&theme);
    let labels = texts(&svg);
    assert!(
        labels.contains(&"iters 0→2, lr 1→3".to_string()),
        "{labels:?}"
    );
    // An edit too long for a column alone does not hide the others behind
    // its `…`: one column each, where there is room (walkthrough J).
    let long =
        "meltr.meta_lr 0.00100000000000→0.00200000000000, aid.alpha 0.1→0.005, meltr.gamma 0.1→0.2";
    let labels = texts(&chart(&[(600.0, long)]).to_svg(&theme));
    assert!(
        labels.contains(&"alpha 0.1→0.005".to_string())
            && labels.contains(&"gamma 0.1→0.2".to_string())
            && labels
                .iter()
                .any(|l| l.starts_with("meta_lr 0.001") && l.ends_with('…')),
        "{labels:?}"
    );
    // Marks of one label drawn apart say their steps: the label sat on the
    // first line only (a walkthrough's edits at 186, 237 and 250).
    let svg = chart(&[(500.0, "gamma"), (520.0, "meta_lr"), (535.0, "restore")]).to_svg(&theme);
    let labels = texts(&svg);
    assert!(labels.contains(&"@500–535".to_string()), "{labels:?}");
    assert!(labels.iter().any(|l| l.starts_with("gamma,")), "{labels:?}");
    // Seven runs of marks: the two closest share a label with their span,
    // their chains joined (they were left bare), the other five keep theirs.
    let many: Vec<(f64, String)> = (1..=7)
        .map(|i| {
            let x = f64::from(i) * 120.0 + if i == 4 { 0.0 } else { 20.0 };
            (x, format!("aid.iterations {}→{}", i - 1, i))
        })
        .collect();
    let many: Vec<(f64, &str)> = many.iter().map(|(x, l)| (*x, l.as_str())).collect();
    let svg = chart(&many).to_svg(&theme);
    let labels = texts(&svg);
    assert!(labels.contains(&"@380–480".to_string()), "{labels:?}");
    assert!(
        labels.contains(&"aid.iterations 2→3→4".to_string()),
        "{labels:?}"
    );
    for kept in ["0→1", "1→2", "4→5", "5→6", "6→7"] {
        let label = format!("aid.iterations {kept}");
        assert!(labels.contains(&label), "no {label} in {labels:?}");
    }
    assert_eq!(dashed(&svg) - dashed(&plain), 7);
}

/// A fork's point, marked on its parent's curve, was covered by the
/// parent's line when the fork came first in the list (walkthrough: a
/// legend entry "fork of figs at step 2.6k" with no visible mark).
#[test]
fn a_single_point_mark_is_drawn_over_every_line() {
    use super::super::series::Emphasis;
    let fork_point = Line {
        label: Some("fork of a at step 5".into()),
        points: vec![(5.0, 5.0)],
        look: super::super::style::look(0),
        emphasis: Emphasis::MarkersOnly,
    };
    let parent = Line {
        label: Some("a".into()),
        points: vec![(0.0, 0.0), (10.0, 10.0)],
        look: super::super::style::look(1),
        emphasis: Emphasis::Main,
    };
    let chart = Chart {
        x_label: "training step".into(),
        y_label: "loss".into(),
        y_kind: Kind::Linear,
        tight_x: false,
        zero_line: false,
        marks: Vec::new(),
        body: Body::Lines(vec![fork_point, parent]),
    };
    let svg = chart.to_svg(&super::super::Style::Paper.theme());
    let axes = &svg[svg
        .find("clip-path=\"url(#axes)\"")
        .expect("the axes' group")..];
    let parent_path = axes
        .find(&format!(
            "stroke=\"{}\"",
            super::super::style::look(1).color
        ))
        .expect("the parent's path");
    let mark = axes
        .find(&format!("fill=\"{}\"", super::super::style::look(0).color))
        .expect("the fork's mark");
    assert!(
        mark > parent_path,
        "the mark is drawn before the parent's line"
    );
}

/// A slanted category label leans left of its tick: the first, long, one
/// was cut at the figure's left edge (walkthrough E's "mse (primary)").
#[test]
fn a_slanted_first_category_stays_inside_the_figure() {
    let names = [
        "mse (primary)",
        "help1",
        "help2",
        "help3",
        "rand1",
        "rand2",
        "copy1",
        "scaled2",
        "cls",
    ];
    let bars = names
        .iter()
        .enumerate()
        .map(|(i, n)| Bar {
            category: n.to_string(),
            value: 0.1 + i as f64,
            look: super::super::style::look(i),
        })
        .collect();
    let chart = bar_chart(bars);
    let theme = super::super::Style::Paper.theme();
    let svg = chart.to_svg(&theme);
    let at = svg.find(">mse (primary)<").expect("the label");
    let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
    assert!(tag.contains("rotate(-30"), "slanted: {tag}");
    let x: f64 = tag[tag.find(" x=\"").unwrap() + 4..]
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lean = Metrics::get().width("mse (primary)", theme.tick_pt) * 30f64.to_radians().cos();
    assert!(x - lean >= 0.0, "the label starts at {} (x {x})", x - lean);
}

/// Walkthrough A's legend box covered a "restore" label: it kept clear of
/// the label's baseline, while the rotated glyphs stand left of it.
#[test]
fn the_legend_keeps_clear_of_a_mark_labels_glyphs() {
    let names = ["mse (primary)", "smooth", "noise", "big"];
    let curve = |i: usize, scale: f64| Line {
        label: Some(names[i].into()),
        points: (1..=30)
            .map(|k| {
                let x = 10.0 * k as f64;
                (
                    x,
                    if x <= 120.0 {
                        0.02
                    } else {
                        scale * (1.0 + (x - 120.0) / 90.0)
                    },
                )
            })
            .collect(),
        look: super::super::style::look(i),
        emphasis: super::super::series::Emphasis::Main,
    };
    let chart = Chart {
        x_label: "training step".into(),
        y_label: "effective weight".into(),
        y_kind: Kind::Linear,
        tight_x: true,
        zero_line: false,
        marks: vec![Mark {
            x: 121.0,
            label: "restore".into(),
        }],
        body: Body::Lines(vec![
            curve(0, 1.0),
            curve(1, 0.8),
            curve(2, 0.6),
            curve(3, 0.0),
        ]),
    };
    let svg = chart.to_svg(&super::super::Style::Paper.theme());
    let legend = svg
        .split("<rect")
        .find(|t| t.contains(" rx="))
        .expect("a legend box inside");
    let (lx, ly) = (attribute(legend, "x"), attribute(legend, "y"));
    let (lw, lh) = (attribute(legend, "width"), attribute(legend, "height"));
    let label = svg
        .split("<text")
        .find(|t| t.contains(">restore</text>"))
        .expect("the label");
    let (tx, ty, size) = (
        attribute(label, "x"),
        attribute(label, "y"),
        attribute(label, "font-size"),
    );
    // Its glyphs: up to 0.8 em left of the baseline, down the text's length.
    let (left, right, top, bottom) = (tx - 0.8 * size, tx, ty, ty + 0.6 * size * 7.0);
    let apart = lx + lw <= left || lx >= right || ly + lh <= top || ly >= bottom;
    assert!(
        apart,
        "legend x {lx}..{} y {ly}..{}; label x {left}..{right} y {top}..{bottom}",
        lx + lw,
        ly + lh
    );
}

/// Walkthrough L's twelve bars: their value labels ran into each other;
/// they are set smaller, to fit between the bars.
#[test]
fn twelve_bars_value_labels_do_not_overlap() {
    let values = [
        3.004, 0.1962, 0.2331, 0.2493, 0.0681, 1.229, 0.4913, 0.2013, 0.1951, 0.1032, 0.9231,
        0.0612,
    ];
    let bars = values
        .iter()
        .enumerate()
        .map(|(i, &value)| Bar {
            category: format!("loss{i}"),
            value,
            look: super::super::style::look(i),
        })
        .collect();
    let chart = bar_chart(bars);
    let theme = super::super::Style::Paper.theme();
    let svg = chart.to_svg(&theme);
    let m = Metrics::get();
    // Each value label's horizontal extent (centred on its bar).
    let mut extents: Vec<(f64, f64)> = values
        .iter()
        .map(|&v| {
            let text = super::scale::short(v);
            let at = svg.find(&format!(">{text}<")).expect("the value label");
            let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
            let attr = |name: &str| -> f64 {
                tag[tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3..]
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let half = m.width(&text, attr("font-size")) / 2.0;
            (attr("x") - half, attr("x") + half)
        })
        .collect();
    extents.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in extents.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "value labels overlap: {extents:?}");
    }
}

/// A bar chart of effective weights, as `final-weights` draws one.
fn bar_chart(bars: Vec<Bar>) -> Chart {
    Chart {
        x_label: String::new(),
        y_label: "effective weight".into(),
        y_kind: Kind::Linear,
        tight_x: false,
        zero_line: true,
        marks: Vec::new(),
        body: Body::Bars(bars),
    }
}

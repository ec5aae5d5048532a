//! Figure export from a fixed metrics log: every format decodes at the
//! requested size and carries its text, SVG output is byte-stable, and bad
//! input fails with a clear message and leaves no files behind.

use meltr_tui::plot::{compare, export_session, ExportOptions, Format, LossAxis, Smoothing, Style};
use meltr_tui::session::log::MetricsWriter;
use meltr_tui::session::metrics::{Curve, Level, MetricLine, Named, Record};
use meltr_tui::session::{SessionMeta, Status};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LOSSES: [&str; 3] = ["retrieval", "caption", "align"];

fn meta(id: &str, name: &str) -> SessionMeta {
    SessionMeta {
        id: id.into(),
        name: name.into(),
        created: "2026-01-01T00:00:00Z".into(),
        status: Status::Finished,
        pid: 1,
        pid_started: None,
        device: "cpu".into(),
        libtorch: "2.7.0".into(),
        workload: "video-text".into(),
        losses: LOSSES.iter().map(|s| s.to_string()).collect(),
        primary: "retrieval".into(),
        primary_metric: "R@1".into(),
        higher_is_better: true,
        steps: 400,
        error: None,
        group: None,
        parent: None,
        fork_step: None,
        world_size: None,
        earlier_world_sizes: Vec::new(),
        provenance: Default::default(),
    }
}

fn named(values: [f64; 3]) -> Named {
    LOSSES.iter().map(|s| s.to_string()).zip(values).collect()
}

/// A deterministic run: decaying noisy losses, drifting weights, evals every
/// 50 steps, one transform line. `speed` makes runs differ.
fn write_session(root: &Path, id: &str, name: &str, speed: f64) -> PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    meta(id, name).write(&dir).unwrap();
    let mut w = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
    let line = |step: u64, record| MetricLine {
        step,
        time: step as f64 * 0.1,
        wall: None,
        record,
    };
    for step in (0..=400u64).step_by(5) {
        let s = step as f64;
        let wobble = |k: f64| 0.08 * (s * 0.37 + k).sin();
        let losses = named([
            2.0 * (-s * speed / 150.0).exp() + 0.3 + wobble(0.0),
            3.0 * (-s / 200.0).exp() + 0.8 + wobble(1.0),
            0.9 * (-s / 100.0).exp() + 0.1 + wobble(2.0).abs() * 0.5,
        ]);
        let weights = named([0.5 + s / 1600.0, 0.3 - s / 2000.0, 0.2 * (-s / 300.0).exp()]);
        let total = losses
            .values()
            .zip(weights.values())
            .map(|(l, w)| l * w)
            .sum();
        w.append(&line(
            step,
            Record::Train {
                losses,
                total,
                weights,
                lr: 1e-4,
                shares: Named::new(),
                gpu: None,
            },
        ))
        .unwrap();
        if step % 50 == 0 {
            let r1 = 0.45 * (1.0 - (-s * speed / 120.0).exp()) + 0.02 * (s * 0.1).sin();
            let metrics: Named = [("R@1".to_string(), r1), ("R@5".to_string(), r1 + 0.2)].into();
            w.append(&line(
                step,
                Record::Eval {
                    metrics,
                    losses: named([1.0, 1.5, 0.4]),
                },
            ))
            .unwrap();
        }
        if step % 15 == 0 {
            w.append(&line(
                step,
                Record::Meta {
                    hypergrad_norm: 0.5,
                    reg: 0.01,
                    meta_lr: 1e-3,
                    aid_iterations: 3,
                    gamma: Some(0.1),
                },
            ))
            .unwrap();
        }
    }
    let curves: BTreeMap<String, Curve> = LOSSES
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let x: Vec<f64> = (0..41).map(|i| i as f64 * 0.1).collect();
            let y = x
                .iter()
                .map(|v| (0.4 + 0.1 * k as f64) * v + 0.05 * v * v)
                .collect();
            (name.to_string(), Curve { x, y })
        })
        .collect();
    w.append(&line(400, Record::Transform { curves })).unwrap();
    w.append(&line(
        400,
        Record::Event {
            level: Level::Info,
            message: "finished".into(),
        },
    ))
    .unwrap();
    dir
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn svg_texts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = resvg::usvg::roxmltree::Document::parse(&text).expect("SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(str::to_string))
        .collect()
}

/// "log" when the figure's tick labels include a power of ten (`10⁻¹`),
/// which only a log axis writes.
fn y_axis_kind(path: &Path) -> &'static str {
    let decade = |t: &String| {
        t.strip_prefix("10")
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| "⁰¹²³⁴⁵⁶⁷⁸⁹⁻".contains(c))
    };
    if svg_texts(path).iter().any(decade) {
        "log"
    } else {
        "linear"
    }
}

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().expect("PNG decodes");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame decodes");
    (info.width, info.height)
}

/// The PDF's page count, the base names of its fonts, and its text: every
/// string shown with `Tj`/`TJ` in the page and form content streams, decoded
/// through the fonts' ToUnicode CMaps (svg2pdf writes glyph ids, not bytes
/// of text), concatenated in drawing order.
fn pdf_text(path: &Path) -> (usize, Vec<String>, String) {
    use lopdf::Object;
    let doc = lopdf::Document::load(path).expect("PDF opens");
    let pages = doc.get_pages();
    let mut fonts = Vec::new();
    let mut to_unicode: BTreeMap<u16, String> = BTreeMap::new();
    let mut contents: Vec<Vec<u8>> = pages
        .values()
        .map(|&id| doc.get_page_content(id).unwrap())
        .collect();
    for obj in doc.objects.values() {
        if let Ok(dict) = obj.as_dict() {
            if let Ok(name) = dict.get(b"BaseFont").and_then(Object::as_name) {
                fonts.push(String::from_utf8_lossy(name).to_string());
            }
            if let Ok(stream) = dict
                .get(b"ToUnicode")
                .and_then(|r| doc.dereference(r))
                .and_then(|(_, o)| o.as_stream())
            {
                let cmap = stream
                    .decompressed_content()
                    .unwrap_or_else(|_| stream.content.clone());
                to_unicode.extend(parse_bfchar(&String::from_utf8_lossy(&cmap)));
            }
        }
        if let Ok(stream) = obj.as_stream() {
            if stream.dict.get(b"Subtype").and_then(Object::as_name).ok()
                == Some(b"Form".as_slice())
            {
                contents.push(
                    stream
                        .decompressed_content()
                        .unwrap_or_else(|_| stream.content.clone()),
                );
            }
        }
    }
    let mut text = String::new();
    for content in contents {
        for op in lopdf::content::Content::decode(&content)
            .unwrap()
            .operations
        {
            let strings: Vec<&Object> = match op.operator.as_str() {
                "Tj" | "'" => op.operands.iter().collect(),
                "TJ" => op
                    .operands
                    .iter()
                    .filter_map(|o| o.as_array().ok())
                    .flatten()
                    .collect(),
                _ => continue,
            };
            for bytes in strings.into_iter().filter_map(|o| o.as_str().ok()) {
                for pair in bytes.chunks_exact(2) {
                    let cid = u16::from_be_bytes([pair[0], pair[1]]);
                    text.push_str(to_unicode.get(&cid).map_or("\u{FFFD}", String::as_str));
                }
            }
        }
    }
    (pages.len(), fonts, text)
}

/// `<0001> <0074>` pairs of a ToUnicode CMap's bfchar sections.
fn parse_bfchar(cmap: &str) -> BTreeMap<u16, String> {
    let hex = |s: &str| s.trim_matches(|c| c == '<' || c == '>').to_string();
    let mut map = BTreeMap::new();
    let mut inside = false;
    for line in cmap.lines().map(str::trim) {
        if line.ends_with("beginbfchar") {
            inside = true;
        } else if line == "endbfchar" {
            inside = false;
        } else if inside {
            let mut parts = line.split_whitespace().map(hex);
            if let (Some(cid), Some(uni)) = (parts.next(), parts.next()) {
                let units: Vec<u16> = (0..uni.len() / 4)
                    .map(|i| u16::from_str_radix(&uni[4 * i..4 * i + 4], 16).unwrap())
                    .collect();
                map.insert(
                    u16::from_str_radix(&cid, 16).unwrap(),
                    String::from_utf16_lossy(&units),
                );
            }
        }
    }
    map
}

#[test]
fn exports_every_figure_in_every_format() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_session(root.path(), "s1", "meltr J=3", 1.0);
    let exported = export_session(&dir, &ExportOptions::default()).unwrap();
    assert!(exported.skipped.is_empty(), "{:?}", exported.skipped);
    let names = ["losses", "metric", "weights", "final-weights", "transforms"];
    assert_eq!(exported.files.len(), names.len() * 3);
    let plots = dir.join("plots");
    let theme = Style::Paper.theme();
    for name in names {
        assert_eq!(
            png_size(&plots.join(format!("{name}.png"))),
            theme.pixels(),
            "{name}.png"
        );
        let texts = svg_texts(&plots.join(format!("{name}.svg")));
        let (pages, fonts, pdf) = pdf_text(&plots.join(format!("{name}.pdf")));
        assert_eq!(pages, 1, "{name}.pdf");
        assert!(
            fonts.iter().all(|f| f.ends_with("+DejaVuSans")) && !fonts.is_empty(),
            "{name}.pdf fonts: {fonts:?}"
        );
        let joined = texts.join("\n");
        let expect: &[&str] = match name {
            // 81 logged points: `auto` smoothing lowers 0.9 to 0.75 so the
            // EMA's time constant (4 points) stays within a twentieth.
            "losses" => &[
                "training step",
                "training loss (EMA 0.75)",
                "retrieval (primary)",
                "caption",
                "align",
            ],
            "metric" => &["training step", "validation R@1 ↑", "R@1", "best"],
            "weights" => &[
                "training step",
                "effective weight ∂M/∂lₖ (EMA 0.75)",
                "retrieval (primary)",
            ],
            // Each weight is the median of the last 10 lines within the
            // last 10% of steps, 361-400: lines 365-400 (the first's 0.5 +
            // step/1600: 0.7391 between steps 380 and 385, where step 400
            // has 0.75).
            "final-weights" => &[
                "loss (median of the last logged steps, 365–400)",
                "0.739",
                "effective weight ∂M/∂lₖ",
                "retrieval",
                "align",
            ],
            _ => &["combined loss M(l)", "retrieval (primary)"],
        };
        for e in expect {
            assert!(joined.contains(e), "{name}.svg lacks '{e}': {joined}");
            // The PDF carries the same text as real (selectable) text.
            assert!(pdf.contains(e), "{name}.pdf lacks '{e}': {pdf}");
        }
        assert!(std::fs::read_to_string(plots.join(format!("{name}.svg")))
            .unwrap()
            .contains("font-family=\"DejaVu Sans\""));
    }
    // Only the figures: no temp files left.
    assert_eq!(files_under(&plots).len(), names.len() * 3);
}

/// A loss decades above the others drew them flat along zero, silently
/// (walkthrough: a target scaled x100); `auto` now draws them on a log axis
/// and says so, and a linear axis asked for says what it hides.
#[test]
fn losses_decades_apart_go_on_a_log_axis() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_session(root.path(), "s1", "meltr", 1.0);
    let exported = export_session(&dir, &ExportOptions::default()).unwrap();
    assert!(exported.skipped.is_empty(), "{:?}", exported.skipped);
    // The second loss 1000x larger on every train line.
    let path = dir.join("metrics.jsonl");
    let scaled: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["kind"] == "train" {
                let loss = &mut v["losses"][LOSSES[1]];
                *loss = serde_json::json!(loss.as_f64().unwrap() * 1000.0);
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&path, scaled.join("\n") + "\n").unwrap();
    let exported = export_session(&dir, &ExportOptions::default()).unwrap();
    let hint = exported.skipped.join("; ");
    assert!(
        hint.contains(&format!("losses: on a log axis, since `{}`", LOSSES[1]))
            && hint.contains("(`meltr-tui export --y-scale linear` for a linear one)"),
        "{hint}"
    );
    let plots = dir.join("plots");
    assert_eq!(y_axis_kind(&plots.join("losses.svg")), "log");
    let linear = ExportOptions {
        loss_axis: LossAxis::Linear,
        out_dir: Some(root.path().join("linear")),
        ..ExportOptions::default()
    };
    let hint = export_session(&dir, &linear).unwrap().skipped.join("; ");
    assert!(
        hint.contains(&format!("losses: `{}`", LOSSES[1]))
            && hint.contains(
                "which a linear axis draws flat; `meltr-tui export --y-scale log` shows both"
            ),
        "{hint}"
    );
    assert_eq!(
        y_axis_kind(&root.path().join("linear/losses.svg")),
        "linear"
    );
    let logged = ExportOptions {
        loss_axis: LossAxis::Log,
        ..ExportOptions::default()
    };
    assert!(export_session(&dir, &logged).unwrap().skipped.is_empty());
}

/// A loss that starts far above the others (a held-out CNN's x100
/// auxiliary at 460, then about 5, the others below 2) set the linear
/// axis's range and drew every curve flat; its peak counts too.
#[test]
fn a_loss_that_starts_decades_above_the_others_goes_on_a_log_axis() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_session(root.path(), "s1", "meltr", 1.0);
    let path = dir.join("metrics.jsonl");
    let mut first = true;
    let spiked: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["kind"] == "train" && std::mem::replace(&mut first, false) {
                let loss = &mut v["losses"][LOSSES[1]];
                *loss = serde_json::json!(loss.as_f64().unwrap() * 1000.0);
            }
            v.to_string()
        })
        .collect();
    assert!(!first, "no train line");
    std::fs::write(&path, spiked.join("\n") + "\n").unwrap();
    let exported = export_session(&dir, &ExportOptions::default()).unwrap();
    let hint = exported.skipped.join("; ");
    assert!(
        hint.contains(&format!(
            "losses: on a log axis, since `{}` peaks at",
            LOSSES[1]
        )),
        "{hint}"
    );
    assert_eq!(y_axis_kind(&dir.join("plots/losses.svg")), "log");
}

/// Figures of a run that has not finished read as a finished run's (its
/// "final" weights, its best metric): the export says so.
#[test]
fn an_unfinished_session_is_said_to_be_one() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_session(root.path(), "s1", "meltr", 1.0);
    assert!(export_session(&dir, &ExportOptions::default())
        .unwrap()
        .skipped
        .iter()
        .all(|n| !n.contains("has not finished")));
    let mut running = meta("s1", "meltr");
    running.status = Status::Running;
    running.pid = std::process::id();
    running.write(&dir).unwrap();
    let notes = export_session(&dir, &ExportOptions::default())
        .unwrap()
        .skipped;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("the session has not finished (running at step 400 of ")),
        "{notes:?}"
    );
    running.pid = i32::MAX as u32; // above any pid_max: no such process
    running.write(&dir).unwrap();
    let notes = export_session(&dir, &ExportOptions::default())
        .unwrap()
        .skipped;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("has not finished (crashed at step 400")),
        "{notes:?}"
    );
}

/// An explicit weight is used as given, however short the curves.
#[test]
fn an_explicit_ema_weight_is_kept_on_short_curves() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_session(root.path(), "s1", "meltr", 1.0);
    for (ema, note) in [
        (Smoothing::Ema(0.9), Some("training loss (EMA 0.9)")),
        (Smoothing::Ema(0.0), None),
    ] {
        let opts = ExportOptions {
            formats: vec![Format::Svg],
            out_dir: Some(root.path().join(format!("ema-{note:?}"))),
            ema,
            ..ExportOptions::default()
        };
        export_session(&dir, &opts).unwrap();
        let texts = svg_texts(&opts.out_dir.unwrap().join("losses.svg"));
        let axis = texts.iter().find(|t| t.starts_with("training loss"));
        assert_eq!(
            axis.map(String::as_str),
            Some(note.unwrap_or("training loss"))
        );
    }
}

#[test]
fn svg_is_byte_identical_across_exports() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_session(root.path(), "s1", "meltr", 1.0);
    let opts = |out: &str| ExportOptions {
        formats: vec![Format::Svg],
        out_dir: Some(root.path().join(out)),
        loss_axis: LossAxis::Log,
        ..ExportOptions::default()
    };
    let a = export_session(&dir, &opts("a")).unwrap().files;
    let b = export_session(&dir, &opts("b")).unwrap().files;
    assert_eq!(a.len(), 5);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
}

#[test]
fn a_second_session_exported_to_the_same_folder_says_what_it_replaced() {
    let root = tempfile::tempdir().unwrap();
    let one = write_session(root.path(), "s1", "meltr", 1.0);
    let two = write_session(root.path(), "s2", "sum", 0.5);
    let shared = ExportOptions {
        formats: vec![Format::Svg],
        out_dir: Some(root.path().join("figs")),
        ..ExportOptions::default()
    };
    let first = export_session(&one, &shared).unwrap();
    assert!(first.replaced.is_empty(), "{:?}", first.replaced);
    let second = export_session(&two, &shared).unwrap();
    assert_eq!(second.replaced, second.files);
    // In a session's own plots/ a new export replaces the last as usual.
    let own = ExportOptions {
        formats: vec![Format::Svg],
        ..ExportOptions::default()
    };
    export_session(&one, &own).unwrap();
    assert!(export_session(&one, &own).unwrap().replaced.is_empty());
}

#[test]
fn styles_set_the_pixel_size() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_session(root.path(), "s1", "meltr", 1.0);
    for style in [Style::PaperWide, Style::Slides] {
        let out = root.path().join(style.to_string());
        let opts = ExportOptions {
            formats: vec![Format::Png],
            out_dir: Some(out.clone()),
            style,
            ..Default::default()
        };
        export_session(&dir, &opts).unwrap();
        assert_eq!(png_size(&out.join("losses.png")), style.theme().pixels());
    }
}

/// Sessions of two workloads: their primary metrics differ, said as such
/// unless a metric is named.
#[test]
fn compare_says_when_sessions_have_different_primary_metrics() {
    let root = tempfile::tempdir().unwrap();
    let a = write_session(root.path(), "a", "meltr", 1.0);
    let b = write_session(root.path(), "b", "other", 1.0);
    let mut other = meta("b", "other");
    other.primary_metric = "accuracy".into();
    other.write(&b).unwrap();
    let out = root.path().join("mixed.svg");
    let error = compare(&[a.clone(), b.clone()], &out, None, Style::Paper)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("these sessions have different primary metrics")
            && error.contains("`R@1` (1 session: meltr)")
            && error.contains("`accuracy` (1 session: other)"),
        "{error}"
    );
    compare(&[a, b], &out, Some("caption"), Style::Paper).unwrap();
}

#[test]
fn compare_overlays_runs_with_session_names() {
    let root = tempfile::tempdir().unwrap();
    let a = write_session(root.path(), "a", "meltr", 1.0);
    let b = write_session(root.path(), "b", "sum", 0.5);
    let c = write_session(root.path(), "c", "primary only", 0.3);
    let dirs = vec![a, b, c];
    let svg = compare(
        &dirs,
        &root.path().join("out/ablation.svg"),
        None,
        Style::Paper,
    )
    .unwrap();
    let texts = svg_texts(&svg).join("\n");
    for e in [
        "meltr",
        "sum",
        "primary only",
        "validation R@1 ↑",
        "training step",
    ] {
        assert!(texts.contains(e), "compare SVG lacks '{e}': {texts}");
    }
    let png = compare(
        &dirs,
        &root.path().join("ablation.png"),
        Some("caption"),
        Style::Slides,
    )
    .unwrap();
    assert_eq!(png_size(&png), Style::Slides.theme().pixels());
    let pdf = compare(
        &dirs,
        &root.path().join("ablation.pdf"),
        Some("R@5"),
        Style::Paper,
    )
    .unwrap();
    let (pages, _, text) = pdf_text(&pdf);
    assert_eq!(pages, 1);
    assert!(
        // A metric other than the primary gets its direction by name too.
        text.contains("validation R@5 ↑") && text.contains("primary only"),
        "{text}"
    );
}

fn assert_fails_cleanly(
    result: anyhow::Result<impl std::fmt::Debug>,
    expect: &[&str],
    no_files_in: &Path,
) {
    let err = format!("{:#}", result.expect_err("should fail"));
    for e in expect {
        assert!(err.contains(e), "error lacks '{e}': {err}");
    }
    assert!(
        files_under(no_files_in).is_empty(),
        "left files behind: {:?}",
        files_under(no_files_in)
    );
}

#[test]
fn bad_input_fails_with_a_clear_message_and_no_files() {
    let root = tempfile::tempdir().unwrap();
    let good = write_session(root.path(), "good", "meltr", 1.0);
    let out = root.path().join("out");
    let opts = ExportOptions {
        out_dir: Some(out.clone()),
        ..Default::default()
    };

    // Unknown session.
    assert_fails_cleanly(
        export_session(&root.path().join("nope"), &opts),
        &["unknown session", "nope"],
        &out,
    );

    // Empty metrics.
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    meta("empty", "empty run").write(&empty).unwrap();
    std::fs::write(empty.join("metrics.jsonl"), "").unwrap();
    assert_fails_cleanly(
        export_session(&empty, &opts),
        &["has no train or eval line", "empty run"],
        &out,
    );
    assert!(!empty.join("plots").exists());

    // Unwritable output directory: its parent is a file.
    let file = root.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let bad = ExportOptions {
        out_dir: Some(file.join("plots")),
        ..Default::default()
    };
    assert_fails_cleanly(
        export_session(&good, &bad),
        &["cannot create output directory"],
        &out,
    );
    assert!(!good.join("plots").exists());

    // A metric that does not exist lists those that do.
    let target = out.join("cmp.png");
    let dirs = [good.clone()];
    assert_fails_cleanly(
        compare(&dirs, &target, Some("R@10"), Style::Paper),
        &[
            "no metric or loss named 'R@10'",
            "R@1, R@5",
            "align, caption, retrieval",
        ],
        &out,
    );
    // Unknown session in a comparison; an output name without a format.
    assert_fails_cleanly(
        compare(
            &[good.clone(), root.path().join("missing")],
            &target,
            None,
            Style::Paper,
        ),
        &["unknown session"],
        &out,
    );
    assert_fails_cleanly(
        compare(&dirs, &out.join("cmp.jpg"), None, Style::Paper),
        &[".svg, .png or .pdf"],
        &out,
    );
    assert!(!out.exists());
}

#[test]
fn formats_parse_from_the_cli_list() {
    assert_eq!(
        Format::parse_list("svg, PNG,pdf,svg").unwrap(),
        vec![Format::Svg, Format::Png, Format::Pdf]
    );
    assert!(Format::parse_list("svg,gif")
        .unwrap_err()
        .contains("unknown format 'gif'"));
}

//! The number-formatting primitives every output shares: the TUI's panes
//! (plain ASCII, `tui::fmt`), the figures' tick labels and legends (with a
//! typographic minus and superscripts, `plot::scale`) and SVG coordinates
//! (`plot::svg`) are all built from these, so one value never reads two
//! ways for want of a shared rule.

/// `0.0980` -> `0.098`, `2.50` -> `2.5`, `3.0` -> `3` (integers unchanged).
pub fn trim_zeros(mut s: String) -> String {
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

/// `v` with at most `decimals` decimals, no trailing zeros, and no `-0`.
pub fn fixed(v: f64, decimals: usize) -> String {
    let s = trim_zeros(format!("{v:.decimals$}"));
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// `v` with exactly `decimals` decimals (a table column keeps its trailing
/// zeros), and `0.0000` where the rounding leaves `-0.0000`.
pub fn padded(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// `12340` -> `12,340`: a count with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12000` -> `12k`, `1500000` -> `1.5M` (at most `decimals` decimals of
/// the scaled value); below 1000, [`fixed`].
pub fn compact(v: f64, decimals: usize) -> String {
    let (div, suffix) = if v.abs() >= 1e6 {
        (1e6, "M")
    } else if v.abs() >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    fixed(v / div, decimals) + suffix
}

/// A share (0.25) as a percentage with one decimal (`25.0%`), or two
/// significant digits below 0.1% (`0.034%`): walkthrough L's `check`
/// read `cat 0.0%, randlab 0.0%` for shares that were not zero.
pub fn percent(share: f64) -> String {
    let p = 100.0 * share;
    if p == 0.0 || !p.is_finite() || p.abs() >= 0.1 {
        return format!("{p:.1}%");
    }
    let decimals = (1 - p.abs().log10().floor() as i32).max(2) as usize;
    format!("{p:.decimals$}%")
}

/// Whether `v` is exactly an f32's value (NaN and ±inf are).
pub fn is_single(v: f64) -> bool {
    !v.is_finite() || f64::from(v as f32) == v
}

/// `v` in full for a CSV: at f32's precision when the numbers it comes
/// from are f32s (`single`; more digits are the f32's rounding, not data),
/// else at f64's; -0 as 0.
pub fn full_precision(v: f64, single: bool) -> String {
    // Whole numbers from 2^24 on print as f32s with their last digits
    // zeroed (1073741824 as 1073741800): those keep f64's.
    let whole_and_large = v.fract() == 0.0 && v.abs() >= 16_777_216.0;
    match single && !whole_and_large {
        true => ((v as f32) + 0.0).to_string(),
        false => (v + 0.0).to_string(),
    }
}

/// A value for a message: 4 significant digits, in `1.353e38` form outside
/// 0.001 to 1e6 (a loss of 1.35e38 was printed with all 39 digits).
pub fn readable(v: f64) -> String {
    four_significant(v, true)
}

/// A value in a column of values: [`readable`]'s digits with its trailing
/// zeros kept, so that `0.5120` lines up with `0.4057` (a walkthrough's
/// `ls` read `mae↓ 0.512` above `mae↓ 0.4057`).
pub fn column_value(v: f64) -> String {
    four_significant(v, false)
}

fn four_significant(v: f64, trimmed: bool) -> String {
    if !v.is_finite() || (v == 0.0 && trimmed) {
        return format!("{v}");
    }
    // A column's 0 as its neighbours read (`ls` showed `r1↑ 0` under
    // `r1↑ 22.46`, walkthrough P).
    if v == 0.0 {
        return "0.000".into();
    }
    // The exponent after rounding to four digits: 9.99996 is 10.00, not
    // 10.000 (five digits where the zeros stay).
    let (_, exponent) = mantissa_exponent(v, 4);
    if (-3..6).contains(&exponent) {
        let decimals = (3 - exponent).max(0) as usize;
        let digits = format!("{v:.decimals$}");
        match trimmed {
            true => trim_zeros(digits),
            false => digits,
        }
    } else {
        let (m, e) = mantissa_exponent(v, 4);
        format!("{m}e{e}")
    }
}

/// `v = mantissa × 10^exponent` with the mantissa rounded to `sig`
/// significant digits (and renormalised when rounding reaches 10).
pub fn mantissa_exponent(v: f64, sig: usize) -> (String, i32) {
    if v == 0.0 || !v.is_finite() {
        return (format!("{v}"), 0);
    }
    let mut exp = v.abs().log10().floor() as i32;
    let mut mant = v / 10f64.powi(exp);
    let decimals = sig.saturating_sub(1);
    if format!("{:.decimals$}", mant.abs()).starts_with("10") {
        exp += 1;
        mant /= 10.0;
    }
    (trim_zeros(format!("{mant:.decimals$}")), exp)
}

/// `name value` pairs, the names in `order` first (the losses as the
/// config lists them, primary first), then any others by name.
pub fn named_values(values: &std::collections::BTreeMap<String, f64>, order: &[String]) -> String {
    let listed = order.iter().filter_map(|k| values.get_key_value(k));
    let mut rest: Vec<(&String, &f64)> =
        values.iter().filter(|(k, _)| !order.contains(k)).collect();
    rest.sort_by(|a, b| natural_order(a.0, b.0));
    listed
        .chain(rest)
        .map(|(k, v)| match k.contains(char::is_whitespace) {
            // `reg mse 0.9` would read as two names.
            true => format!("{k:?} {}", log_value(*v)),
            false => format!("{k} {}", log_value(*v)),
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Names compared with their runs of digits as numbers: `r1 < r5 < r10`
/// (walkthrough P's eval lines and table columns read `r1 r10 r5`).
pub fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    let chunks = |s: &str| -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match out.last_mut() {
                Some((d, chunk)) if *d == digit => chunk.push(c),
                _ => out.push((digit, c.to_string())),
            }
        }
        out
    };
    let (x, y) = (chunks(a), chunks(b));
    for ((xd, xs), (yd, ys)) in x.iter().zip(&y) {
        let order = match (xd, yd) {
            (true, true) => {
                let (xt, yt) = (xs.trim_start_matches('0'), ys.trim_start_matches('0'));
                xt.len().cmp(&yt.len()).then_with(|| xt.cmp(yt))
            }
            _ => xs.cmp(ys),
        };
        if order.is_ne() {
            return order;
        }
    }
    x.len().cmp(&y.len()).then_with(|| a.cmp(b))
}

/// Four decimals, or four significant digits for a magnitude under 1e-3
/// (a walkthrough's loss of 7e-4 printed as `0.0000` on every line).
pub fn log_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// `a` and `b` as [`log_value`] writes them, with as many more digits as
/// it takes to tell them apart when they differ (walkthrough P3's best
/// evaluation and last read "0.2899 at step 400, 0.2899 at step 1100").
pub fn told_apart(a: f64, b: f64) -> (String, String) {
    let (mut x, mut y) = (log_value(a), log_value(b));
    let tiny = |v: f64| v != 0.0 && v.abs() < 1e-3;
    for digits in 5..=17 {
        if x != y || a == b {
            break;
        }
        let write = |v: f64| match tiny(v) {
            true => format!("{v:.*e}", digits - 1),
            false => format!("{v:.digits$}"),
        };
        (x, y) = (write(a), write(b));
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_values_are_written_apart() {
        let pair = |a: f64, b: f64| {
            let (x, y) = told_apart(a, b);
            format!("{x} {y}")
        };
        assert_eq!(pair(0.28991, 0.28994), "0.28991 0.28994");
        assert_eq!(pair(0.6, 0.45), "0.6000 0.4500");
        assert_eq!(pair(0.5, 0.5), "0.5000 0.5000");
        assert_eq!(pair(7.0001e-4, 7.0002e-4), "7.0001e-4 7.0002e-4");
        let (x, y) = told_apart(1.0, 1.0 + f64::EPSILON);
        assert_ne!(x, y);
    }

    /// Walkthrough A's CSV read 0.9798320531845092 for a log's
    /// 0.9798320531845093: serde_json's default float parser may miss by
    /// one ulp (its `float_roundtrip` feature parses exactly).
    #[test]
    fn a_logged_value_reads_back_exactly_for_a_csv() {
        for text in [
            "0.9798320531845093",
            "0.995777428150177",
            "0.1",
            "1e-7",
            "2.2250738585072014e-308",
        ] {
            let v: f64 = serde_json::from_str(text).unwrap();
            assert_eq!(v, text.parse::<f64>().unwrap(), "{text}");
            assert_eq!(
                full_precision(v, false),
                text.parse::<f64>().unwrap().to_string()
            );
        }
    }

    #[test]
    fn padded_keeps_its_decimals_and_drops_a_negative_zero() {
        assert_eq!(padded(-0.00001, 4), "0.0000");
        assert_eq!(padded(-0.0, 2), "0.00");
        assert_eq!(padded(-0.5, 2), "-0.50");
        assert_eq!(padded(2.0, 3), "2.000");
    }

    #[test]
    fn small_shares_keep_two_significant_digits() {
        assert_eq!(percent(0.25), "25.0%");
        assert_eq!(percent(0.001), "0.1%");
        assert_eq!(percent(0.00034), "0.034%");
        assert_eq!(percent(0.0000012), "0.00012%");
        assert_eq!(percent(-0.00034), "-0.034%");
        assert_eq!(percent(0.0), "0.0%");
    }

    #[test]
    fn a_csv_writes_f32_numbers_without_their_rounding() {
        // Walkthrough L's recall@1 of 1/500 from an f32 run, and a mean of
        // three such values.
        let logged = f64::from(0.002f32);
        assert_eq!(logged.to_string(), "0.0020000000949949026");
        assert_eq!(full_precision(logged, is_single(logged)), "0.002");
        let mean = [0.072f32, 0.002, 0.074].map(f64::from).iter().sum::<f64>() / 3.0;
        assert_eq!(full_precision(mean, true), "0.049333334");
        // An f64 run's numbers keep every digit, and -0 is 0.
        let exact = 0.1 + 0.2;
        assert!(!is_single(exact));
        assert_eq!(
            full_precision(exact, is_single(exact)),
            "0.30000000000000004"
        );
        assert_eq!(full_precision(-0.0, true), "0");
        assert_eq!(full_precision(1073741824.0, true), "1073741824");
    }

    #[test]
    fn readable_values_keep_four_significant_digits() {
        assert_eq!(readable(1.352729020968571e38), "1.353e38");
        assert_eq!(readable(1.7693), "1.769");
        assert_eq!(readable(250000.0), "250000");
        assert_eq!(readable(-0.000_123_4), "-1.234e-4");
        assert_eq!(readable(f64::INFINITY), "inf");
        assert_eq!(readable(0.0), "0");
        assert_eq!(readable(0.512), "0.512");
        assert_eq!(column_value(0.512), "0.5120");
        assert_eq!(column_value(70.9), "70.90");
        assert_eq!(column_value(1.352729020968571e38), "1.353e38");
        // Four digits after rounding, not five.
        assert_eq!(column_value(9.99996), "10.00");
        assert_eq!(column_value(99.9996), "100.0");
        assert_eq!(column_value(0.0), "0.000");
        assert_eq!(readable(0.000_999_96), "0.001");
        assert_eq!(readable(999_999.7), "1e6");
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1424), "1,424");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn fixed_trims_and_never_says_minus_zero() {
        assert_eq!(fixed(2.50, 2), "2.5");
        assert_eq!(fixed(3.0, 2), "3");
        assert_eq!(fixed(-0.001, 2), "0");
        assert_eq!(fixed(120.0, 0), "120");
    }

    #[test]
    fn compact_scales_to_k_and_m() {
        assert_eq!(compact(12000.0, 3), "12k");
        assert_eq!(compact(1_500_000.0, 3), "1.5M");
        assert_eq!(compact(12_345.0, 1), "12.3k");
        assert_eq!(compact(950.0, 1), "950");
    }

    #[test]
    fn mantissa_renormalises_when_rounding_reaches_ten() {
        assert_eq!(mantissa_exponent(0.000_999_9, 2), ("1".into(), -3));
        assert_eq!(mantissa_exponent(2.5e-5, 2), ("2.5".into(), -5));
        assert_eq!(mantissa_exponent(-3.0e7, 3), ("-3".into(), 7));
    }

    /// A walkthrough read `harmful 0.1  helpful 0.2  primary 0.3`: the
    /// primary came last because the names were sorted.
    #[test]
    fn named_values_print_primary_first_in_the_configs_order() {
        let values = [
            ("harmful", 0.5),
            ("helpful", 0.25),
            ("primary", 1.0),
            ("zz", 2.0),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into();
        let order = ["primary", "helpful", "harmful"].map(String::from);
        assert_eq!(
            named_values(&values, &order),
            "primary 1.0000  helpful 0.2500  harmful 0.5000  zz 2.0000"
        );
        assert_eq!(
            named_values(&values, &[]),
            "harmful 0.5000  helpful 0.2500  primary 1.0000  zz 2.0000"
        );
        let recall: std::collections::BTreeMap<String, f64> = ["r10", "r5", "r1", "mdr"]
            .map(|k| (k.to_string(), 1.0))
            .into();
        assert_eq!(
            named_values(&recall, &["mdr".to_string()]),
            "mdr 1.0000  r1 1.0000  r5 1.0000  r10 1.0000"
        );
        assert!(natural_order("aux2", "aux10").is_lt());
        assert!(natural_order("a", "a1").is_lt());
        assert!(natural_order("r01", "r1").is_ne());
        // A name with a space is quoted (a walkthrough's `reg mse`).
        let spaced = [("reg mse".to_string(), 0.5)].into();
        assert_eq!(named_values(&spaced, &[]), "\"reg mse\" 0.5000");
        let small = [
            ("tiny", 7.259e-4),
            ("w", -4e-4),
            ("zero", 0.0),
            ("nan", f64::NAN),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into();
        assert_eq!(
            named_values(&small, &["tiny".to_string()]),
            "tiny 7.259e-4  nan NaN  w -4.000e-4  zero 0.0000"
        );
    }
}

//! Number, step and duration formatting shared by every pane, so the same
//! value always reads the same way, and text measured in terminal columns.

use unicode_width::UnicodeWidthChar;

/// A value in at most ~8 characters: `0.4123`, `2.318`, `152.3`, `1.20e-4`.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// A rate such as steps per second: `0.84`, `12.5`, `310`.
pub fn rate(v: f64) -> String {
    if !v.is_finite() {
        num(v)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A signed value with its sign always shown: `+0.612`, `-0.031`.
pub fn signed(v: f64) -> String {
    let s = num(v);
    if v >= 0.0 && !s.starts_with('+') && v.is_finite() {
        format!("+{s}")
    } else {
        s
    }
}

/// A short axis label: `0.52`, `12.3k`, `1e-3`.
pub fn axis(v: f64) -> String {
    if !v.is_finite() {
        return num(v);
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        crate::numfmt::compact(v, 2)
    } else if a >= 1e4 {
        crate::numfmt::compact(v, 1)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 0.01 {
        crate::numfmt::trim_zeros(format!("{v:.3}"))
    } else {
        format!("{v:.0e}")
    }
}

/// A step count with thousands separators: `12,340`.
pub fn steps(n: u64) -> String {
    crate::numfmt::thousands(n)
}

/// A duration: `45s`, `5m06s`, `1h02m`, `2d03h`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// The columns `text` takes on a terminal: a CJK character or an emoji
/// takes two, a combining mark or a control character none (counted per
/// character, as [`clip`] and [`wrap`] cut).
pub fn width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    UnicodeWidthChar::width(c).unwrap_or(0)
}

/// `text` padded with spaces to `columns` columns (as `{:<columns$}` would
/// for one-column characters).
pub fn pad(text: &str, columns: usize) -> String {
    format!("{text}{}", " ".repeat(columns.saturating_sub(width(text))))
}

/// Cuts `text` to at most `columns` columns, marking the cut with `…`.
pub fn clip(text: &str, columns: usize) -> String {
    if width(text) <= columns {
        return text.to_string();
    }
    if columns == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w > columns - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// Splits `text` into lines of at most `columns` columns, at a space where
/// there is one in the line, else mid-word (a character wider than the line
/// gets a line of its own).
pub fn wrap(text: &str, columns: usize) -> Vec<String> {
    let columns = columns.max(1);
    let mut rest: Vec<char> = text.chars().collect();
    let mut lines = Vec::new();
    while rest.iter().copied().map(char_width).sum::<usize>() > columns {
        // The most characters that fit (at least one, however wide).
        let mut fit = 0;
        let mut used = 0;
        while fit < rest.len() && used + char_width(rest[fit]) <= columns {
            used += char_width(rest[fit]);
            fit += 1;
        }
        let fit = fit.max(1);
        // A space just past the fitting part may end the line too.
        let upto = (fit + 1).min(rest.len());
        let cut = match rest[..upto].iter().rposition(|c| *c == ' ') {
            Some(space) if space > 0 => space,
            _ => fit,
        };
        lines.push(
            rest[..cut]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string(),
        );
        let skip = if rest.get(cut) == Some(&' ') {
            cut + 1
        } else {
            cut
        };
        rest.drain(..skip);
    }
    lines.push(rest.into_iter().collect());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(num(0.41234), "0.4123");
        assert_eq!(num(2.3181), "2.318");
        assert_eq!(num(0.00012), "1.20e-4");
        assert_eq!(signed(0.5), "+0.5000");
        assert_eq!(signed(-0.5), "-0.5000");
        assert_eq!(axis(12_345.0), "12.3k");
        assert_eq!(axis(0.5), "0.5");
        assert_eq!(axis(1_000_000.0), "1M");
        assert_eq!(steps(1_234_567), "1,234,567");
        assert_eq!(steps(999), "999");
        assert_eq!(duration(366.0), "6m06s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(wrap("abcdef", 4), vec!["abcd", "ef"]);
        assert_eq!(wrap("ab cd ef", 5), vec!["ab cd", "ef"]);
        assert_eq!(wrap("abc defgh", 4), vec!["abc", "defg", "h"]);
        // Wide characters take two columns each.
        assert_eq!(width("損失"), 4);
        assert_eq!(clip("損失関数", 5), "損失…");
        assert_eq!(clip("損失", 4), "損失");
        assert_eq!(wrap("損失 関数の重み", 6), vec!["損失", "関数の", "重み"]);
        assert!(wrap("損失関数の重みとは", 7).iter().all(|l| width(l) <= 7));
        assert_eq!(pad("損失", 6), "損失  ");
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(wrap("", 4), vec![""]);
    }
}

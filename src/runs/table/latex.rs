//! Text in a LaTeX table: the tool's words escaped, a user's math kept.

/// Unicode symbols and the math commands a plain pdflatex sets them with,
/// both ways: a table writes the commands, a figure (no TeX) the symbols.
const SYMBOLS: [(char, &str); 18] = [
    ('→', r"\to"),
    ('←', r"\leftarrow"),
    ('↑', r"\uparrow"),
    ('↓', r"\downarrow"),
    ('±', r"\pm"),
    ('×', r"\times"),
    ('·', r"\cdot"),
    ('≥', r"\geq"),
    ('≤', r"\leq"),
    ('−', "-"),
    ('α', r"\alpha"),
    ('β', r"\beta"),
    ('γ', r"\gamma"),
    ('λ', r"\lambda"),
    ('θ', r"\theta"),
    ('φ', r"\phi"),
    ('σ', r"\sigma"),
    ('∞', r"\infty"),
];

/// A `--label`'s `$…$` math as a figure shows it (no TeX there): its
/// commands as their symbols, the `$` and braces dropped (`MELTR
/// ($\gamma=0.1$)` read literally in a legend, walkthrough I). Text without
/// a pair of `$` is as given.
pub fn plain_math(s: &str) -> String {
    let dollars = s.matches('$').count();
    if dollars == 0 || dollars % 2 == 1 {
        return s.to_string();
    }
    s.split('$')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            0 => part.to_string(),
            _ => {
                // Whole commands only: `\\top` is not `\\to` then `p`.
                let mut math = String::new();
                let mut rest = part;
                while let Some(at) = rest.find('\\') {
                    math.push_str(&rest[..at]);
                    let name_len = rest[at + 1..]
                        .find(|c: char| !c.is_ascii_alphabetic())
                        .unwrap_or(rest.len() - at - 1);
                    let command = &rest[at..at + 1 + name_len];
                    match SYMBOLS.iter().find(|(_, tex)| *tex == command) {
                        Some((symbol, _)) => math.push(*symbol),
                        None => math.push_str(command),
                    }
                    rest = &rest[at + 1 + name_len..];
                }
                math.push_str(rest);
                // Grouping braces, not `\\{`.
                math.replace(['{', '}'], "")
            }
        })
        .collect()
}

/// Text set safely in LaTeX (`_`, `&`, `%`, `#`, `$`, braces, `~`, `^`, `\`),
/// and the symbols the tool writes in its own labels (`3000→600@200`,
/// `meta_lr 0.001 ± …`, `γ`) as math a plain pdflatex sets: raw Unicode
/// fails there (walkthrough S).
pub fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let math = SYMBOLS.iter().find(|(u, _)| *u == c).map(|(_, tex)| *tex);
        if let Some(math) = math {
            out.push_str(&format!("${math}$"));
            continue;
        }
        match c {
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            '…' => out.push_str(r"\ldots{}"),
            '\\' => out.push_str(r"\textbackslash{}"),
            '_' | '&' | '%' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str(r"\textasciitilde{}"),
            '^' => out.push_str(r"\textasciicircum{}"),
            _ => out.push(c),
        }
    }
    out
}

/// A header or a cell: `$…$` spans are a user's math (`--label
/// 'kind=meltr=MELTR ($\gamma=0.1$)'`) and stay as written; the text
/// around them, and any text with an unpaired `$`, is escaped.
pub(super) fn latex_text(s: &str) -> String {
    let dollars = s.matches('$').count();
    if dollars == 0 || dollars % 2 == 1 {
        return latex_escape(s);
    }
    s.split('$')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 => format!("${part}$"),
            _ => latex_escape(part),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latex_specials_are_escaped() {
        assert_eq!(latex_escape("aid.max_growth"), r"aid.max\_growth");
        assert_eq!(latex_escape("R@1 & 5%"), r"R@1 \& 5\%");
        // The tool's own symbols, as math pdflatex sets without Unicode input.
        assert_eq!(latex_escape("3000→600@200"), r"3000$\to$600@200");
        assert_eq!(latex_escape("γ ± 1–2"), r"$\gamma$ $\pm$ 1--2");
        assert!(latex_escape("a ← b × c ≥ d … φ").is_ascii());
    }

    #[test]
    fn a_labels_math_reads_as_symbols_in_a_figure() {
        assert_eq!(plain_math(r"MELTR ($\gamma=0.1$)"), "MELTR (γ=0.1)");
        assert_eq!(plain_math(r"$\lambda_{1} \leq \alpha$ x"), "λ_1 ≤ α x");
        assert_eq!(plain_math("5$ each"), "5$ each");
        assert_eq!(plain_math(r"$\top \cdots \to$"), r"\top \cdots →");
        // Both ways through one table.
        assert_eq!(
            latex_escape(&plain_math(r"$\theta\to\phi$")),
            r"$\theta$$\to$$\phi$"
        );
    }

    /// A `--label` with `$…$` is the user's math (it was escaped to `\$`, so
    /// no label could hold a formula); text around it and a lone `$` are not.
    #[test]
    fn latex_math_in_a_label_is_kept() {
        assert_eq!(
            latex_text(r"MELTR ($\gamma=0.1$) & co"),
            r"MELTR ($\gamma=0.1$) \& co"
        );
        assert_eq!(latex_text("a_$x_1$_b$y$"), r"a\_$x_1$\_b$y$");
        assert_eq!(latex_text("5$ each"), r"5\$ each");
        assert_eq!(latex_text("γ_1"), r"$\gamma$\_1");
    }
}

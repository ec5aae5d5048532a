//! Text in a LaTeX table: the tool's words escaped, a user's math kept.

/// Text set safely in LaTeX (`_`, `&`, `%`, `#`, `$`, braces, `~`, `^`, `\`),
/// and the symbols the tool writes in its own labels (`3000→600@200`,
/// `meta_lr 0.001 ± …`, `γ`) as math a plain pdflatex sets: raw Unicode
/// fails there (walkthrough S).
pub fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let math = match c {
            '→' => Some(r"\to"),
            '←' => Some(r"\leftarrow"),
            '↑' => Some(r"\uparrow"),
            '↓' => Some(r"\downarrow"),
            '±' => Some(r"\pm"),
            '×' => Some(r"\times"),
            '·' => Some(r"\cdot"),
            '≥' => Some(r"\geq"),
            '≤' => Some(r"\leq"),
            '−' => Some("-"),
            'α' => Some(r"\alpha"),
            'γ' => Some(r"\gamma"),
            'θ' => Some(r"\theta"),
            'φ' => Some(r"\phi"),
            _ => None,
        };
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

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

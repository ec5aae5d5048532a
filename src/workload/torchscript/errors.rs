//! libtorch's errors from a user's module, made readable: the exception
//! and its innermost frame first, values described briefly.

use super::*;

/// libtorch's message without the C++ backtrace that follows it.
pub fn torch_message(error: &tch::TchError) -> String {
    let text = error.to_string();
    let cut = ["Exception raised from", "\nFrame ", "frame #0"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    let trimmed = text[..cut].trim();
    let trimmed = trimmed
        .strip_prefix("Internal torch error:")
        .unwrap_or(trimmed)
        .trim();
    let lines: Vec<&str> = trimmed.lines().filter(|l| !l.trim().is_empty()).collect();
    // A TorchScript runtime error is a traceback that ends with the
    // exception ("RuntimeError: shape '[7]' is invalid ..."): that line
    // first, then the innermost frame (file, line, the failing expression).
    let exception = lines.iter().rposition(|l| {
        let head = l.split(':').next().unwrap_or("");
        !head.is_empty()
            && !head.contains(' ')
            && (head.ends_with("Error") || head.ends_with("Exception"))
    });
    if let (Some(at), true) = (exception, trimmed.contains("Traceback of TorchScript")) {
        let innermost = lines[..at]
            .iter()
            .rposition(|l| l.trim_start().starts_with("File \""))
            .map(|frame| lines[frame..at].join("\n"))
            .unwrap_or_default();
        let message = lines[at..].join("\n");
        return if innermost.is_empty() {
            message
        } else {
            format!("{message}\n{innermost}")
        };
    }
    // Other errors carry the script source as context; keep it short.
    lines.into_iter().take(6).collect::<Vec<_>>().join("\n")
}

pub(super) fn describe(value: &IValue) -> String {
    match value {
        IValue::Tensor(t) => format!("a tensor of shape {:?}", t.size()),
        IValue::Tuple(items) => format!("a tuple of {} values", items.len()),
        IValue::GenericList(items) => format!("a list of {} values", items.len()),
        IValue::TensorList(items) => format!("a list of {} tensors", items.len()),
        IValue::Double(_) => "a float".into(),
        IValue::Int(_) => "an int".into(),
        IValue::Bool(_) => "a bool".into(),
        IValue::String(_) => "a string".into(),
        IValue::None => "None".into(),
        _ => "an unsupported value".into(),
    }
}

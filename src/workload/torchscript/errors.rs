//! libtorch's errors from a user's module, made readable: the exception
//! and the innermost frame of the user's code first, values described
//! briefly.

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
    // first, then the frame that failed (file, line, the failing expression).
    let exception = lines.iter().rposition(|l| {
        let head = l.split(':').next().unwrap_or("");
        !head.is_empty()
            && !head.contains(' ')
            && (head.ends_with("Error") || head.ends_with("Exception"))
    });
    if let (Some(at), true) = (exception, trimmed.contains("Traceback of TorchScript")) {
        let message = lines[at..].join("\n");
        let frames = traceback_frames(&lines[..at]);
        // The innermost frame in the user's own code says which call
        // failed (a model has several `cross_entropy`s); the library's frame
        // inside it, when there is one, by its header only.
        let own = frames
            .iter()
            .rposition(|frame| !in_installed_package(frame[0]));
        let mut shown: Vec<String> = own.map(|k| frames[k].join("\n")).into_iter().collect();
        if let Some(innermost) = frames.last() {
            if own != Some(frames.len() - 1) {
                shown.push(match own {
                    Some(_) => format!("  inside {}", innermost[0].trim()),
                    None => innermost.join("\n"),
                });
            }
        }
        return std::iter::once(message)
            .chain(shown)
            .collect::<Vec<_>>()
            .join("\n");
    }
    // Other errors carry the script source as context; keep it short.
    lines.into_iter().take(6).collect::<Vec<_>>().join("\n")
}

/// A TorchScript traceback's frames, each from its `File "…"` line to the
/// next; from the "original code" traceback (the user's source) when the
/// error carries one, else the serialized code's.
fn traceback_frames<'a>(lines: &[&'a str]) -> Vec<Vec<&'a str>> {
    let start = lines
        .iter()
        .position(|l| l.contains("Traceback of TorchScript, original code"))
        .unwrap_or(0);
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in &lines[start..] {
        if line.trim_start().starts_with("File \"") {
            frames.push(vec![line]);
        } else if let Some(frame) = frames.last_mut() {
            frame.push(line);
        }
    }
    frames
}

/// Whether a traceback frame's `File "…"` line is in an installed package
/// (torch, torchvision, transformers…) or in torch as TorchScript
/// serializes it, rather than in the user's own code.
fn in_installed_package(file_line: &str) -> bool {
    [
        "/site-packages/",
        "/dist-packages/",
        "\\site-packages\\",
        "\"code/__torch__/torch/",
    ]
    .iter()
    .any(|dir| file_line.contains(dir))
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

/// A failed (or skipped) batch's rows checked one by one at most (a
/// forward each, on the error path or a few skipped steps a run): beyond,
/// the message goes without them.
const ROWS_CHECKED_ALONE: usize = 256;
/// A larger batch is tried in chunks of this many rows first, and only the
/// rows of chunks that fail alone (a held-out model's 500-row validation
/// batch was named with no row; its bad rows were ten).
const PROBE_CHUNK: usize = 32;

impl TorchScript {
    /// Which of `rows` (training rows) make the forward fail on their own,
    /// run one at a time in eval mode without gradients (so that BatchNorm
    /// takes a single row, and running statistics do not move). `None` when
    /// there are too many to check, on CUDA (a device-side assert, as an
    /// out-of-range label raises there, breaks every later forward), or
    /// when none or every row fails alone: then the fault is the model's or
    /// the batch's (a misspelt key, a loss that needs two rows), not a row's.
    pub(super) fn rows_failing_alone_of(&self, rows: &[i64]) -> Option<Vec<i64>> {
        self.rows_failing_alone_in(&self.train, rows)
    }

    /// [`Self::rows_failing_alone_of`] in the split `data`. Rows failing on a tensor `data` lacks and the other split has (a
    /// model that reads it for some rows only) are no bad samples: `None`
    /// then too, and the error names the tensor (walkthrough P's `concept`,
    /// absent from the training file, listed every third row first). A
    /// `KeyError` of the model's own (a lookup of a row's label) still
    /// blames its rows.
    pub(super) fn rows_failing_alone_in(&self, data: &Split, rows: &[i64]) -> Option<Vec<i64>> {
        let other = match std::ptr::eq(data, &self.train) {
            true => &self.val,
            false => &self.train,
        };
        let not_the_rows = std::cell::Cell::new(false);
        let failing = self.rows_alone_where(data, rows, |outputs| match outputs {
            Ok(_) => false,
            Err(e) => {
                let message = format!("{e:#}");
                let lacks = !super::validation::missing_tensors(&message, data, other).is_empty();
                // Class indices of the wrong kind fail every row that uses
                // them: a tensor's fault, not its rows' (walkthrough G5's
                // labelled rows were listed as failing on their own).
                let kind = class_index_error(&message).is_some();
                not_the_rows.set(not_the_rows.get() || lacks || kind);
                true
            }
        });
        failing.filter(|_| !not_the_rows.get())
    }

    /// Which of `rows` (training rows) make one of `losses` non-finite on
    /// their own, run as [`Self::rows_failing_alone_of`] runs them: a model
    /// that makes NaN from some rows only was listed with the whole batch's
    /// rows at every skip (walkthrough S).
    pub(super) fn rows_non_finite_alone_of(
        &self,
        rows: &[i64],
        losses: &[String],
    ) -> Option<Vec<i64>> {
        self.rows_alone_where(&self.train, rows, |outputs| {
            outputs.as_ref().is_ok_and(|outputs| {
                outputs.iter().any(|(name, t)| {
                    losses.contains(name) && t.isfinite().all().int64_value(&[]) == 0
                })
            })
        })
    }

    /// The rows of `data` whose own forward's outputs are `bad`; `None`
    /// as [`Self::rows_failing_alone_of`] says.
    fn rows_alone_where(
        &self,
        data: &Split,
        rows: &[i64],
        bad: impl Fn(&Result<Vec<(String, Tensor)>>) -> bool,
    ) -> Option<Vec<i64>> {
        let on_cpu = data.tensors.first()?.1.device() == Device::Cpu;
        if !on_cpu {
            return None;
        }
        self.module.borrow_mut().set_eval();
        let fails = |batch: Batch| bad(&tch::no_grad(|| self.forward_checked(&batch)));
        let candidates: Vec<i64> = match rows.len() > ROWS_CHECKED_ALONE {
            true => rows
                .chunks(PROBE_CHUNK)
                .filter(|chunk| fails(data.rows(&Tensor::from_slice(chunk))))
                .flatten()
                .copied()
                .collect(),
            false => rows.to_vec(),
        };
        let failing: Vec<i64> = match candidates.len() > ROWS_CHECKED_ALONE {
            true => Vec::new(),
            false => candidates
                .into_iter()
                .filter(|&row| fails(data.slice(row, 1)))
                .collect(),
        };
        self.module.borrow_mut().set_train();
        (!failing.is_empty() && failing.len() < rows.len()).then_some(failing)
    }
}

/// A batch's tensors as a failed forward's error lists them: name, kind
/// and shape (a label tensor of the wrong kind, a key the file lacks).
pub(super) fn batch_inventory(batch: &Batch) -> String {
    batch
        .iter()
        .map(|(name, t)| format!("`{name}` {:?} {:?}", t.kind(), t.size()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a known libtorch message means for this batch, when the batch shows
/// it: class indices stored as Int32 fail `cross_entropy` with "expected
/// scalar type Long but found Int" on the CPU (a walkthrough) and
/// "\"nll_loss…\" not implemented for 'Int'" on CUDA, neither naming a
/// tensor. Only tensors of the kind the message names are listed. Or
/// integer features fed to float layers (see [`integer_features_hint`]).
pub(super) fn batch_hint(message: &str, batch: &Batch) -> Option<String> {
    class_index_hint(message, batch)
        .or_else(|| out_of_range_hint(message, batch))
        .or_else(|| float_index_hint(message, batch))
        .or_else(|| integer_features_hint(message, batch))
        .or_else(|| signature_hint(message))
}

/// An index out of range names no tensor (walkthrough X's label 4 of four
/// classes read "Target 4 is out of bounds."): the batch's integer tensors
/// that hold the value libtorch names (`Target N`, `index N … with size
/// S`), or, for an embedding's "index out of range", every integer tensor
/// with its range.
fn out_of_range_hint(message: &str, batch: &Batch) -> Option<String> {
    let number_after = |prefix: &str| -> Option<i64> {
        let rest = message.split_once(prefix)?.1;
        let end = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(rest.len(), |(i, _)| i);
        rest[..end].parse().ok()
    };
    let integer = |t: &Tensor| integer_kind(t.kind()) && t.numel() > 0;
    let range = |t: &Tensor| (t.min().int64_value(&[]), t.max().int64_value(&[]));
    let (value, rule) = if let Some(target) = number_after("Target ") {
        (
            target,
            "class indices for `cross_entropy` and `nll_loss` run from 0 to the number of classes − 1 \
             (the width of the model's logits), or are its ignore_index",
        )
    } else if let Some(index) =
        number_after("index ").filter(|_| message.contains("is out of bounds"))
    {
        (
            index,
            "an index must be below the size of the dimension it indexes (negative: at least minus that size)",
        )
    } else if message.contains("index out of range in self") {
        let ranges: Vec<String> = batch
            .iter()
            .filter(|(_, t)| integer(t))
            .map(|(name, t)| {
                let (low, high) = range(t);
                format!("`{name}` from {low} to {high}")
            })
            .collect();
        return (!ranges.is_empty()).then(|| {
            format!(
                "the batch's integer tensors hold {}: an embedding's indices run from 0 to its num_embeddings − 1",
                ranges.join(", ")
            )
        });
    } else {
        return None;
    };
    let holding: Vec<String> = batch
        .iter()
        .filter(|(_, t)| integer(t))
        .filter_map(|(name, t)| {
            // Compared as Int64: a narrower kind wraps the value (uint8
            // `eq(-1)` matches 255).
            let count = t.to_kind(Kind::Int64).eq(value).sum(Kind::Int64).int64_value(&[]);
            (count > 0).then(|| {
                let (low, high) = range(t);
                format!(
                    "`{name}` holds {value} ({count} of its {} values here, which run from {low} to {high})",
                    t.numel()
                )
            })
        })
        .collect();
    // Several may hold it, where it is in range for some (walkthrough L3's
    // 5-class `y_src` beside the 3-class `y`): no tensor is singled out.
    let which = match holding.len() {
        1 => "",
        _ => " (one of these: the model's line above shows which the failing op read)",
    };
    (!holding.is_empty()).then(|| format!("{}{which}: {rule}", holding.join("; ")))
}

/// Whether `kind` is one of the integer kinds a data file's tensor can have.
fn integer_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    )
}

/// A float tensor of whole numbers with at most this many distinct values
/// in a batch may be class indices (see [`class_index_hint`]).
const FEW_CLASS_VALUES: usize = 32;

/// Index tensors stored as floats (walkthrough R's edge list, V2's
/// embedding ids): libtorch names none. The batch's floating tensors of
/// whole numbers ≥ 0 are (0/1 masks only when nothing else is).
fn float_index_hint(message: &str, batch: &Batch) -> Option<String> {
    const SAID: [&str; 3] = [
        "for index",
        "used as indices must be",
        "'indices' to have one of",
    ];
    if !SAID.iter().any(|p| message.contains(p)) {
        return None;
    }
    let whole: Vec<(&String, &Tensor, f64)> = batch
        .iter()
        .filter(|(_, t)| t.is_floating_point() && whole_and_not_negative(t))
        .map(|(name, t)| (name, t, t.max().double_value(&[])))
        .collect();
    let beyond_masks = whole.iter().any(|w| w.2 > 1.0);
    let whole: Vec<String> = whole
        .iter()
        .filter(|w| !beyond_masks || w.2 > 1.0)
        .map(|(name, t, _)| format!("`{name}` ({:?})", t.kind()))
        .collect();
    (!whole.is_empty()).then(|| {
        format!(
            "{} whole numbers stored as floats: index tensors (index_select, index_add_, scatter, gather) must be \
             Int64 (torch.long; Int32 where libtorch accepts it); store them so in the data, or cast in the model (`.long()`)",
            whole.join(", ")
        )
    })
}

/// A `forward` that does not take the batch as one dict (walkthrough P's
/// `forward(self, x, y)`): TorchScript says which argument did not fit, not
/// what the engine passes.
fn signature_hint(message: &str) -> Option<String> {
    let mismatch = message.contains("forward() Expected a value of type")
        || message.contains("forward() is missing value for argument");
    mismatch.then(|| {
        "the engine calls `forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]` with one dict, \
         the data file's tensors by name (README, \"Bring your own model\"); read `batch[\"x\"]` inside it"
            .to_string()
    })
}

/// Integer features (int64 `x` of shape [32, 16, 4]) reach an LSTM or a
/// Linear layer as "expected m1 and m2 to have the same dtype, but got:
/// long int != float", which reads as the model's fault (walkthrough S).
/// Named when the message is a float/integer mismatch: the batch's integer
/// tensors of two or more dimensions (1-D ones are labels).
fn integer_features_hint(message: &str, batch: &Batch) -> Option<String> {
    let mismatch = [
        "same dtype",
        "expected scalar type Float",
        "expected scalar type Double",
        "should be the same",
        "must have the type torch.float",
    ]
    .iter()
    .any(|p| message.contains(p));
    // Whole words ("along" holds "long"): libtorch's names of the kinds.
    let integer = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| {
            matches!(
                word,
                "long"
                    | "Long"
                    | "int"
                    | "Int"
                    | "short"
                    | "Short"
                    | "char"
                    | "Char"
                    | "Byte"
                    | "int64"
                    | "int32"
                    | "int16"
                    | "int8"
                    | "uint8"
                    | "LongTensor"
                    | "IntTensor"
            )
        });
    if !(mismatch && integer) {
        return None;
    }
    let features: Vec<String> = batch
        .iter()
        .filter(|(_, t)| t.dim() >= 2 && integer_kind(t.kind()))
        .map(|(name, t)| format!("`{name}` ({:?})", t.kind()))
        .collect();
    (!features.is_empty()).then(|| {
        format!(
            "{} in the data: integer values fed to float layers (Linear, LSTM, Conv) fail so; store them as \
             float32 in the safetensors file, or cast in the model (`.float()`); token ids for an embedding stay integers",
            features.join(", ")
        )
    })
}

/// Whether a tensor holds finite whole numbers ≥ 0 only, as indices do.
fn whole_and_not_negative(t: &Tensor) -> bool {
    whole(t) && t.min().double_value(&[]) >= 0.0
}

/// Whether a tensor holds finite whole numbers only.
fn whole(t: &Tensor) -> bool {
    t.numel() > 0
        && t.isfinite().all().int64_value(&[]) == 1
        && t.eq_tensor(&t.round()).all().int64_value(&[]) == 1
}

/// Whether a tensor may hold class indices: whole numbers ≥ 0, but for one
/// negative value that marks rows without a label (-1, or cross entropy's
/// ignore index -100: walkthrough G5's float labels, -1 on its unlabelled
/// rows, were passed over and its 0/1 float mask was named instead).
fn class_indices_like(t: &Tensor) -> bool {
    whole(t) && {
        let negative = t.masked_select(&t.lt(0.0));
        negative.numel() == 0 || negative.internal_unique(false, false).0.numel() == 1
    }
}

fn class_index_hint(message: &str, batch: &Batch) -> Option<String> {
    class_index_words(&class_index_candidates(message, batch)?)
}

/// "`name` (Kind), … not Int64: …" for the tensors named.
fn class_index_words(named: &[(String, Kind)]) -> Option<String> {
    (!named.is_empty()).then(|| {
        let named: Vec<String> = named
            .iter()
            .map(|(name, kind)| format!("`{name}` ({kind:?})"))
            .collect();
        format!(
            "{} not Int64: class indices for `cross_entropy` and `nll_loss` must be Int64 (torch.long); store them so in the data, or cast in the model (`.long()`)",
            named.join(", ")
        )
    })
}

impl TorchScript {
    /// [`batch_hint`], with several class-index candidates narrowed by
    /// trying them on the CPU: a candidate cast to Int64 (with those kept
    /// so far) that lets the forward through, or moves its failure to
    /// another class-index error (a second `cross_entropy`), is kept.
    /// Walkthrough G1's float labels were named beside a float adjacency,
    /// a 0/1 mask and a degree count, as if each should be cast. The
    /// module's buffers are put back after. Off the CPU a cast label out
    /// of range would stop the device (an asynchronous assert): no tries.
    pub(super) fn batch_hint_tried(&self, message: &str, batch: &Batch) -> Option<String> {
        let on_cpu = batch.iter().all(|(_, t)| t.device() == tch::Device::Cpu);
        let Some(candidates) = class_index_candidates(message, batch)
            .filter(|c| on_cpu && (2..=MAX_CAST_TRIES).contains(&c.len()))
        else {
            return batch_hint(message, batch);
        };
        let saved = crate::workload::SavedBuffers::take(self).ok();
        let cast_fails = |cast: &[&(String, Kind)]| -> Option<String> {
            let tried: Batch = batch
                .iter()
                .map(|(n, t)| match cast.iter().any(|(name, _)| name == n) {
                    true => (n.clone(), t.to_kind(Kind::Int64)),
                    false => (n.clone(), t.shallow_clone()),
                })
                .collect();
            let module = self.module.borrow();
            let outcome =
                tch::no_grad(|| self.call_module(|| module.forward_is(&[batch_ivalue(&tried)])));
            outcome.err().map(|e| torch_message(&e))
        };
        let is_class_index =
            |message: &str| class_index_candidates(message, batch).is_some_and(|c| !c.is_empty());
        // Two passes: a label tried before the one whose error hides it
        // (a second `cross_entropy` reached only once the first passes).
        let (mut kept, mut failing) = (Vec::new(), message.to_string());
        let mut through = false;
        'passes: for _ in 0..2 {
            for candidate in &candidates {
                if kept.contains(&candidate) {
                    continue;
                }
                let mut cast = kept.clone();
                cast.push(candidate);
                match cast_fails(&cast) {
                    None => {
                        kept = cast;
                        through = true;
                        break 'passes;
                    }
                    Some(now) if now != failing && is_class_index(&now) => {
                        kept = cast;
                        failing = now;
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(saved) = saved {
            let _ = saved.restore(self);
        }
        let kept: Vec<(String, Kind)> = kept.into_iter().cloned().collect();
        class_index_words(match through {
            true => &kept,
            false => &candidates,
        })
    }
}

/// At most this many class-index candidates are tried one by one (each a
/// forward on the failing batch); more are all named.
const MAX_CAST_TRIES: usize = 6;

/// The kind a libtorch message says class indices had, when it is a
/// class-index kind error ("expected scalar type Long but found Float" on
/// the CPU, "nll_loss ... not implemented for 'Int'" on CUDA), and whether
/// that kind is floating.
fn class_index_error(message: &str) -> Option<(Kind, bool)> {
    let found = message
        .split_once("expected scalar type Long but found ")
        .map(|(_, rest)| rest)
        .or_else(|| {
            let (_, rest) = message
                .split_once("nll_loss")?
                .1
                .split_once("not implemented for '")?;
            Some(rest)
        })?;
    Some(match found.split(|c: char| !c.is_alphanumeric()).next()? {
        "Int" => (Kind::Int, false),
        "Short" => (Kind::Int16, false),
        "Char" => (Kind::Int8, false),
        "Float" => (Kind::Float, true),
        "Double" => (Kind::Double, true),
        _ => return None,
    })
}

/// The batch's tensors that may be the class indices a message says are
/// of another kind, by name, in the hint's order.
fn class_index_candidates(message: &str, batch: &Batch) -> Option<Vec<(String, Kind)>> {
    let (kind, floating) = class_index_error(message)?;
    // Of floating tensors, those holding whole numbers ≥ 0 only: class
    // indices stored as floats (walkthrough U's Float labels had no hint;
    // the inputs are Float too, and are not blamed).
    let class_like = |t: &Tensor| !floating || class_indices_like(t);
    // Of floats, those with few distinct values, fewest first: whole-number
    // inputs (pixels 0–255, counts) have more than labels. Not the fewest
    // alone: a mask of 3 classes beside two 0/1 targets was not named
    // (walkthrough Z4).
    let mut candidates: Vec<(&String, &Tensor, usize)> = batch
        .iter()
        .filter(|(_, t)| t.kind() == kind && class_like(t))
        .map(|(name, t)| (name, t, t.internal_unique(false, false).0.numel()))
        .collect();
    candidates.sort_by_key(|c| c.2);
    let fewest = candidates.first().map_or(0, |c| c.2);
    Some(
        candidates
            .iter()
            .filter(|c| !floating || c.2 <= fewest.max(FEW_CLASS_VALUES))
            .map(|(name, t, _)| (name.to_string(), t.kind()))
            .collect(),
    )
}

#[cfg(test)]
mod tests;

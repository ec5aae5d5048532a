//! A TorchScript workload's data split: named tensors with one row per
//! sample, checked and batched.

use super::*;

/// One data file: named tensors with a common first dimension.
pub(super) struct Split {
    pub(super) tensors: Vec<(String, Tensor)>,
    pub(super) samples: i64,
    /// Floating-point tensors holding NaN or ±inf, as read from the file.
    non_finite: Vec<NonFinite>,
    /// Floating-point tensors stored in another kind than the run's, with
    /// that kind: they are read in the run's (`train.dtype`).
    cast: Vec<(String, Kind)>,
}

/// Where one tensor holds non-finite values.
struct NonFinite {
    tensor: String,
    values: i64,
    /// The first [`ROWS_NAMED`] rows holding any.
    rows: Vec<i64>,
    /// How many rows hold any.
    row_count: i64,
    /// Of `values`, how many are ±inf, and the first [`ROWS_NAMED`] rows
    /// holding one: among masked NaN, one inf the model does not mask was
    /// lost in the count (walkthrough J2).
    infinite: i64,
    infinite_rows: Vec<i64>,
}

/// Rows named per tensor in the non-finite warning.
const ROWS_NAMED: usize = 10;

/// Scans `t` (on the CPU, as read) a slice of rows at a time, so the masks
/// stay small whatever the data's size.
fn non_finite(name: &str, t: &Tensor, samples: i64) -> Result<Option<NonFinite>> {
    let per_row = t.numel() as i64 / samples.max(1);
    let chunk = ((1i64 << 22) / per_row.max(1)).max(1);
    let mut found = NonFinite {
        tensor: name.to_string(),
        values: 0,
        rows: Vec::new(),
        row_count: 0,
        infinite: 0,
        infinite_rows: Vec::new(),
    };
    let mut start = 0;
    while start < samples {
        let len = chunk.min(samples - start);
        let bad = t
            .narrow(0, start, len)
            .isfinite()
            .logical_not()
            .reshape([len, -1]);
        let rows = bad.any_dim(1, false);
        found.values += bad.sum(Kind::Int64).int64_value(&[]);
        found.row_count += rows.sum(Kind::Int64).int64_value(&[]);
        let first_rows = |rows: &Tensor, named: &mut Vec<i64>| -> Result<()> {
            if named.len() < ROWS_NAMED {
                let at = Vec::<i64>::try_from(rows.nonzero().flatten(0, -1)).map_err(|e| {
                    anyhow!("cannot scan tensor `{name}` for non-finite values: {e}")
                })?;
                let room = ROWS_NAMED - named.len();
                named.extend(at.iter().take(room).map(|r| r + start));
            }
            Ok(())
        };
        first_rows(&rows, &mut found.rows)?;
        let infinite = t.narrow(0, start, len).isinf().reshape([len, -1]);
        found.infinite += infinite.sum(Kind::Int64).int64_value(&[]);
        first_rows(&infinite.any_dim(1, false), &mut found.infinite_rows)?;
        start += len;
    }
    Ok((found.values > 0).then_some(found))
}

/// The safetensors dtypes libtorch reads (the format has more: U16, U32,
/// U64, the F8 kinds).
const READABLE_DTYPES: [&str; 10] = [
    "BOOL", "U8", "I8", "I16", "I32", "I64", "F16", "BF16", "F32", "F64",
];

/// `tensor `y` has dtype U16` (and the others) when the file's header
/// reads and names dtypes libtorch has no kind for: its own error says only
/// "unsupported dtype U16", naming no tensor.
fn dtypes_libtorch_cannot_read(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).ok()?;
    let length = usize::try_from(u64::from_le_bytes(length)).ok()?;
    if length > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; length];
    file.read_exact(&mut header).ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).ok()?;
    let unreadable: Vec<String> = header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .filter_map(|(name, entry)| {
            let dtype = entry.get("dtype")?.as_str()?;
            (!READABLE_DTYPES.contains(&dtype))
                .then(|| format!("tensor `{name}` has dtype {dtype}"))
        })
        .collect();
    (!unreadable.is_empty()).then(|| unreadable.join(", "))
}

/// What a data file that is no safetensors file looks like it is, from its
/// first bytes: a TorchScript module given as data read "HeaderTooLarge"
/// (walkthrough P).
fn other_format(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut start = [0u8; 4];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut start)
        .ok()?;
    match start {
        [b'P', b'K', 3, 4] => Some(
            " (it is a zip archive: a TorchScript module, a torch.save file or a NumPy .npz? The data \
             takes safetensors.torch.save_file({name: tensor, …}); the module goes in workload.model)",
        ),
        // A safetensors header length of 0x280 starts 80 02 00: byte 2 of a
        // pickle (torch.save's legacy format, 80 02 8a 0a) is not 0.
        [0x80, 2..=5, third, _] if third != 0 => Some(
            " (it is a Python pickle: torch.save's legacy format? The data takes \
             safetensors.torch.save_file({name: tensor, …}))",
        ),
        _ => None,
    }
}

impl Split {
    pub(super) fn load(key: &str, path: &str, device: Device, kind: Kind) -> Result<Split> {
        if !Path::new(path).exists() {
            bail!("{key}: {path} does not exist");
        }
        let tensors = Tensor::read_safetensors(path).map_err(|e| {
            match dtypes_libtorch_cannot_read(Path::new(path)) {
                Some(which) => anyhow!(
                    "{key}: {path}: {which}, which libtorch cannot read (it reads {}); save them as one of those (labels as int64)",
                    READABLE_DTYPES.join(", ")
                ),
                None => anyhow!(
                    "{key}: {path} is not a readable safetensors file: {}{}",
                    torch_message(&e),
                    other_format(Path::new(path)).unwrap_or_default()
                ),
            }
        })?;
        if tensors.is_empty() {
            bail!("{key}: {path} holds no tensors");
        }
        let mut sorted = tensors;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rows: Vec<(String, i64)> = Vec::new();
        for (name, t) in &sorted {
            match t.size().first() {
                Some(&n) => rows.push((name.clone(), n)),
                None => bail!("{key}: {path}: tensor `{name}` is 0-dimensional; every tensor needs the sample dimension first"),
            }
        }
        let samples = rows[0].1;
        if let Some((name, n)) = rows.iter().find(|(_, n)| *n != samples) {
            let listing: Vec<String> = rows.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            bail!(
                "{key}: {path}: tensors disagree on the sample dimension (first dimension): `{name}` has {n} rows, `{}` has {samples} ({})",
                rows[0].0,
                listing.join(", ")
            );
        }
        if samples == 0 {
            bail!("{key}: {path} has no samples (first dimension is 0)");
        }
        // Before the cast: a value that overflows the run's kind is the
        // cast's doing, not the file's.
        let mut non_finite_found = Vec::new();
        for (name, t) in sorted.iter().filter(|(_, t)| t.is_floating_point()) {
            non_finite_found.extend(non_finite(name, t, samples)?);
        }
        let cast = sorted
            .iter()
            .filter(|(_, t)| t.is_floating_point() && t.kind() != kind)
            .map(|(name, t)| (name.clone(), t.kind()))
            .collect();
        let tensors = sorted
            .into_iter()
            .map(|(name, t)| {
                let t = if t.is_floating_point() {
                    t.to_kind(kind)
                } else {
                    t
                };
                (name, t.to_device(device))
            })
            .collect();
        Ok(Split {
            tensors,
            samples,
            non_finite: non_finite_found,
            cast,
        })
    }

    /// The tensors' names, in the file's order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(name, _)| name.as_str())
    }

    /// Checks that tensors this split shares with `train` have the same
    /// shape after the sample dimension and the same kind of values
    /// (floating point or not, and the same integer type): the model sees
    /// batches of both. A mismatch names both files, either of which may be
    /// the wrong one, and starts with no key, so that no one file's line is
    /// blamed (a walkthrough's `--set workload.train=` to a file of the
    /// wrong shape was blamed on the untouched validation file's line).
    pub(super) fn check_like(
        &self,
        key: &str,
        path: &str,
        train: &Split,
        train_path: &str,
    ) -> Result<()> {
        for (name, t) in &self.tensors {
            let Some((_, like)) = train.tensors.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let (shape, want) = (&t.size()[1..], &like.size()[1..]);
            if shape != want {
                bail!(
                    "tensor `{name}`: workload.train and {key} disagree, {want:?} per sample in workload.train \
                     ({train_path}, shape {:?}), {shape:?} in {key} ({path}, shape {:?}); the model sees \
                     batches of both, so one of the two files is not what it expects",
                    like.size(),
                    t.size()
                );
            }
            // Floating-point tensors are read in the run's kind; integer
            // ones as stored, so their widths must agree too.
            let integers_differ = !t.is_floating_point() && t.kind() != like.kind();
            if t.is_floating_point() != like.is_floating_point() || integers_differ {
                bail!(
                    "tensor `{name}`: workload.train and {key} disagree, {:?} values in workload.train \
                     ({train_path}), {:?} in {key} ({path}); the model sees batches of both, so one of the \
                     two files is not what it expects",
                    like.kind(),
                    t.kind()
                );
            }
        }
        Ok(())
    }

    /// Which floating-point tensors the file stores in another precision
    /// than the run's `kind`, read in the run's: a note, since a model that
    /// computes a loss in the file's precision must cast them back.
    pub(super) fn cast_note(&self, key: &str, path: &str, kind: Kind) -> Option<String> {
        if self.cast.is_empty() {
            return None;
        }
        let listed: Vec<String> = self
            .cast
            .iter()
            .map(|(name, from)| format!("`{name}` ({from:?})"))
            .collect();
        // The cast back to the file's precision, by the first tensor's
        // (walkthrough K's f32 file in an f64 run was told `.double()`).
        let back = match self.cast[0].1 {
            Kind::Double => "`.double()`",
            Kind::Half => "`.half()`",
            Kind::BFloat16 => "`.bfloat16()`",
            _ => "`.float()`",
        };
        Some(format!(
            "{key}: {path}: {} {} read as {kind:?} (train.dtype), the model's precision; a model that \
             computes a loss in the file's precision casts {} back itself (e.g. {back}), or the file can be \
             saved in the run's precision",
            listed.join(", "),
            if listed.len() == 1 { "is" } else { "are" },
            if listed.len() == 1 { "it" } else { "them" },
        ))
    }

    /// One line per floating-point tensor holding NaN or ±inf: how many,
    /// and the first rows that hold them, so they can be found and fixed
    /// (a model that masks such values on purpose can ignore it).
    pub(super) fn non_finite(&self, key: &str, path: &str, effect: &str) -> Vec<String> {
        self.non_finite
            .iter()
            .map(|f| {
                let shown: Vec<String> = f.rows.iter().map(i64::to_string).collect();
                let more = match f.row_count - f.rows.len() as i64 {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                // How many of each kind, and the inf rows on their own
                // when NaN are there too.
                let kinds = match (f.values - f.infinite, f.infinite) {
                    (_, 0) => "NaN".to_string(),
                    (0, _) => "inf".to_string(),
                    (nan, inf) => {
                        let rows: Vec<String> = f.infinite_rows.iter().map(i64::to_string).collect();
                        let more = match inf as usize > rows.len() { true => ", …", false => "" };
                        format!("{nan} NaN, {inf} inf in row{} {}{more}", if rows.len() == 1 { "" } else { "s" }, rows.join(", "))
                    }
                };
                format!(
                    "{key}: {path}: tensor `{}` holds {} non-finite value{} ({kinds}) in row{} {}{more}: {effect}",
                    f.tensor,
                    f.values,
                    if f.values == 1 { "" } else { "s" },
                    if f.row_count == 1 { "" } else { "s" },
                    shown.join(", ")
                )
            })
            .collect()
    }

    pub(super) fn rows(&self, index: &Tensor) -> Batch {
        self.tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.index_select(0, index)))
            .collect()
    }

    /// The rows named in the non-finite warning (the first few of each
    /// tensor's), in order.
    pub(super) fn non_finite_rows(&self) -> Vec<i64> {
        // The inf rows too: a model that masks NaN may not mask inf.
        let mut rows: Vec<i64> = self
            .non_finite
            .iter()
            .flat_map(|f| f.rows.iter().chain(&f.infinite_rows).copied())
            .collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// The rows named as holding ±inf (the first few of each tensor's), in
    /// order.
    pub(super) fn infinite_rows(&self) -> Vec<i64> {
        let mut rows: Vec<i64> = self
            .non_finite
            .iter()
            .flat_map(|f| f.infinite_rows.clone())
            .collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// Of `rows`, those holding NaN or ±inf in a floating-point tensor, in
    /// their order in `rows`.
    pub(super) fn non_finite_of(&self, rows: &[i64]) -> Vec<(String, Vec<i64>)> {
        if self.non_finite.is_empty() || rows.is_empty() {
            return Vec::new();
        }
        let index = Tensor::from_slice(rows).to_device(self.tensors[0].1.device());
        self.tensors
            .iter()
            .filter(|(_, t)| t.is_floating_point())
            .filter_map(|(name, t)| {
                let bad = t
                    .index_select(0, &index)
                    .isfinite()
                    .logical_not()
                    .reshape([rows.len() as i64, -1])
                    .any_dim(1, false);
                let flags =
                    Vec::<bool>::try_from(bad.to_device(tch::Device::Cpu)).unwrap_or_default();
                let bad: Vec<i64> = rows
                    .iter()
                    .zip(flags)
                    .filter_map(|(&row, bad)| bad.then_some(row))
                    .collect();
                (!bad.is_empty()).then(|| (name.clone(), bad))
            })
            .collect()
    }

    pub(super) fn slice(&self, start: i64, len: i64) -> Batch {
        self.tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.narrow(0, start, len)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    /// A pickle and a zip archive are named; a safetensors file whose
    /// header length starts with the pickle's byte (0x280) is not.
    #[test]
    fn other_formats_are_told_by_their_first_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let said = |bytes: &[u8]| {
            let path = tmp.path().join("data");
            std::fs::write(&path, bytes).unwrap();
            super::other_format(&path)
        };
        assert!(said(&[0x80, 2, 0x8a, 0x0a, 0])
            .unwrap()
            .contains("a Python pickle"));
        assert!(said(b"PK\x03\x04rest").unwrap().contains("a zip archive"));
        assert_eq!(said(&[0x80, 2, 0, 0, 0, 0, 0, 0, b'{']), None);
        assert_eq!(said(b"{}"), None);
    }
}

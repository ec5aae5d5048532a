//! A TorchScript workload's data split: named tensors with one row per
//! sample, checked and batched.

use super::*;

/// One data file: named tensors with a common first dimension.
pub(super) struct Split {
    pub(super) tensors: Vec<(String, Tensor)>,
    pub(super) samples: i64,
}

impl Split {
    pub(super) fn load(key: &str, path: &str, device: Device, kind: Kind) -> Result<Split> {
        if !Path::new(path).exists() {
            bail!("{key}: {path} does not exist");
        }
        let tensors = Tensor::read_safetensors(path).map_err(|e| {
            anyhow!(
                "{key}: {path} is not a readable safetensors file: {}",
                torch_message(&e)
            )
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
        Ok(Split { tensors, samples })
    }

    /// Checks that tensors this split shares with `train` have the same
    /// shape after the sample dimension and the same kind of values
    /// (floating point or not): the model sees batches of both.
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
                    "{key}: {path}: tensor `{name}` has shape {:?}, i.e. {shape:?} per sample, but in workload.train ({train_path}) it has {want:?} per sample; the model sees batches of both",
                    t.size()
                );
            }
            if t.is_floating_point() != like.is_floating_point() {
                bail!(
                    "{key}: {path}: tensor `{name}` holds {:?} values, but in workload.train ({train_path}) {:?}; the model sees batches of both",
                    t.kind(),
                    like.kind()
                );
            }
        }
        Ok(())
    }

    /// One line per floating-point tensor holding NaN or ±inf: how many,
    /// and the first rows that hold them, so they can be found and fixed
    /// (a model that masks such values on purpose can ignore it).
    pub(super) fn non_finite(&self, key: &str, path: &str, effect: &str) -> Vec<String> {
        const LISTED: usize = 10;
        let mut lines = Vec::new();
        for (name, t) in &self.tensors {
            if !t.is_floating_point() {
                continue;
            }
            let bad = t.isfinite().logical_not();
            let count = bad.sum(Kind::Int64).int64_value(&[]);
            if count == 0 {
                continue;
            }
            let per_row = bad.reshape([self.samples, -1]).any_dim(1, false);
            let rows = Vec::<i64>::try_from(per_row.nonzero().flatten(0, -1)).unwrap_or_default();
            let shown: Vec<String> = rows.iter().take(LISTED).map(i64::to_string).collect();
            let more = if rows.len() > LISTED {
                format!(" and {} more", rows.len() - LISTED)
            } else {
                String::new()
            };
            lines.push(format!(
                "{key}: {path}: tensor `{name}` holds {count} non-finite value{} (NaN or inf) in row{} {}{more}: {effect}, unless the model masks them",
                if count == 1 { "" } else { "s" },
                if rows.len() == 1 { "" } else { "s" },
                shown.join(", ")
            ));
        }
        lines
    }

    pub(super) fn rows(&self, index: &Tensor) -> Batch {
        self.tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.index_select(0, index)))
            .collect()
    }

    pub(super) fn slice(&self, start: i64, len: i64) -> Batch {
        self.tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.narrow(0, start, len)))
            .collect()
    }
}

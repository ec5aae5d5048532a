//! Copies of the primary loss (the same value to the bit): the watches
//! that read the primary's weight or gradient share count them with it.

use crate::session::metrics::Named;

/// The auxiliary losses whose value is the primary's to the bit (a copy
/// of it: walkthrough P's `dup` was the primary's InfoNCE computed a
/// second time, and the watch restored φ over a primary weight that `dup`
/// held). A loss of exactly 0 or not finite copies nothing; two different
/// losses rarely share a value to the bit, and the weights are read anew
/// at every meta step.
pub fn copies_of_primary(losses: &[f64]) -> Vec<usize> {
    let Some(&primary) = losses.first() else {
        return Vec::new();
    };
    if primary == 0.0 || !primary.is_finite() {
        return Vec::new();
    }
    (1..losses.len())
        .filter(|&k| losses[k].to_bits() == primary.to_bits())
        .collect()
}

/// The loss names for the watch's messages: the primary's with its
/// copies (`nce (with its copy dup)`).
pub fn names_with_copies(names: &[String], copies: &[usize]) -> Vec<String> {
    let mut names = names.to_vec();
    if !copies.is_empty() {
        let listed: Vec<&str> = copies.iter().map(|&k| names[k].as_str()).collect();
        let what = match listed.len() {
            1 => "copy",
            _ => "copies",
        };
        names[0] = format!("{} (with its {what} {})", names[0], listed.join(", "));
    }
    names
}

/// Gradient shares with each copy's share added to the primary's and the
/// copy left out: a copy holding most of the gradient is the primary's
/// task training (walkthrough P: "dup has 97.9% … the model trains away
/// from its own task").
pub fn shares_with_copies(shares: &Named, names: &[String], copies: &[usize]) -> Named {
    let mut merged = shares.clone();
    for &k in copies {
        if let Some(share) = merged.remove(&names[k]) {
            *merged.entry(names[0].clone()).or_insert(0.0) += share;
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_losses_equal_to_the_primary_to_the_bit() {
        let primary = 0.8297_f64;
        assert_eq!(
            copies_of_primary(&[primary, 0.5, primary, primary + 1e-16]),
            [2]
        );
        // A masked primary's 0, and a non-finite one, copy nothing.
        assert!(copies_of_primary(&[0.0, 0.0]).is_empty());
        assert!(copies_of_primary(&[f64::NAN, f64::NAN]).is_empty());
        assert!(copies_of_primary(&[]).is_empty());
        let names: Vec<String> = ["nce", "cap", "dup", "dup2"].map(String::from).to_vec();
        assert_eq!(
            names_with_copies(&names, &[2])[0],
            "nce (with its copy dup)"
        );
        assert_eq!(
            names_with_copies(&names, &[2, 3])[0],
            "nce (with its copies dup, dup2)"
        );
        assert_eq!(names_with_copies(&names, &[]), names);
        let shares: Named = [("nce", 0.01), ("cap", 0.011), ("dup", 0.979)]
            .map(|(n, s)| (n.to_string(), s))
            .into();
        let merged = shares_with_copies(&shares, &names, &[2]);
        assert_eq!(merged.len(), 2);
        assert!((merged["nce"] - 0.989).abs() < 1e-12);
        assert_eq!(merged["cap"], 0.011);
    }
}

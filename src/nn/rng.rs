//! A seeded generator for host-side choices.

/// SplitMix64: a tiny seeded generator for host-side choices (batch indices,
/// meta-batch picks) that is identical on every device and platform.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator for `seed`; each `stream` gives an independent sequence from
    /// the same seed (one per use, so that uses do not shift each other).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut s = SplitMix(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        s.next_u64();
        s
    }
    /// The next 64 uniformly random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// libtorch's default generator is one per process. A build that seeds it
/// and then draws (data, initial parameters) holds this guard, so that
/// builds on other threads (parallel tests, in-process ranks) cannot slip
/// their draws in between and change what a seed gives.
pub fn global_draws() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Which forward of a step a [`forward_seed`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The inner step's forward of its batch.
    Inner = 0,
    /// The meta step's forwards of its training batch (the same seed for
    /// each evaluation, so the γ term, the JVPs and finite differences see
    /// one dropout mask).
    MetaTrain = 1,
    /// The meta step's forward of its validation batch.
    MetaVal = 2,
}

/// The seed libtorch's generator gets before each training forward of the
/// model, so any randomness inside it (dropout) is a function of the run's
/// seed, the step and which forward this is: the same after a resume, and
/// the same in the PyTorch replay (`scripts/meltr_replay.py`, `forward_seed`,
/// computes it identically, so a traced run with dropout replays step for
/// step). Non-negative, as `torch.manual_seed` takes it.
pub fn forward_seed(seed: u64, step: u64, forward: Forward) -> i64 {
    let stream = FORWARD_STREAM ^ (step << 2 | forward as u64);
    (SplitMix::new(seed, stream).next_u64() >> 1) as i64
}

/// Runs `forward` with libtorch's generator seeded to `seed`, holding
/// [`global_draws`] so that no other thread (an in-process rank, a parallel
/// test) reseeds or draws in between.
pub fn seeded<T>(seed: i64, forward: impl FnOnce() -> T) -> T {
    let _draws = global_draws();
    tch::manual_seed(seed);
    forward()
}

/// Keeps the forwards' streams apart from the host-side ones.
const FORWARD_STREAM: u64 = 0x464F_5257_0000_0000;

#[cfg(test)]
mod tests {
    use super::*;

    /// The values `scripts/meltr_replay.py --self-test` checks its own
    /// `forward_seed` against: if either side changes, traced runs with
    /// dropout stop replaying, and both tests say so.
    #[test]
    fn forward_seeds_are_pinned() {
        assert_eq!(forward_seed(0, 1, Forward::Inner), FORWARD_SEED_PINS[0]);
        assert_eq!(
            forward_seed(7, 30, Forward::MetaTrain),
            FORWARD_SEED_PINS[1]
        );
        assert_eq!(
            forward_seed(u64::MAX, 12345, Forward::MetaVal),
            FORWARD_SEED_PINS[2]
        );
        let seeds: std::collections::HashSet<i64> = (1..200)
            .flat_map(|step| {
                [Forward::Inner, Forward::MetaTrain, Forward::MetaVal]
                    .map(|f| forward_seed(3, step, f))
            })
            .collect();
        assert_eq!(seeds.len(), 3 * 199, "distinct per step and forward");
        assert!(seeds.iter().all(|&s| s >= 0));
    }

    const FORWARD_SEED_PINS: [i64; 3] = [
        5022792191686593838,
        1818162376358596220,
        3646454355600130421,
    ];
}

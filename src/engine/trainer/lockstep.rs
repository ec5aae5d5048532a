//! Commands that reach every rank at the same step (data-parallel runs).
//! Rank 0 alone hears commands (the socket, the TUI, the config file
//! watch, signals); before every step it broadcasts one small integer
//! tensor — what the ranks do next, the step, and the length of a new
//! config — then, when its config in force changed, that config as TOML
//! bytes, which the other ranks apply before the same step. While rank 0
//! is paused it repeats the message well within the collective timeout, so
//! the others wait with it instead of failing. A checkpoint asked for by
//! hand is an order of its own, taken by every rank.

use super::*;

/// What every rank does next, as rank 0 decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Go on: train the next step (or finish, at `train.steps`).
    Train,
    /// Train nothing now (rank 0 is paused); another message follows.
    Wait,
    /// Stop now, as after a Stop command (rank 0 writes the checkpoint).
    Stop,
    /// Take the checkpoint asked for by hand (`keep`: past the rotation,
    /// the TUI's `c`; else for a fork, `f`), then another message follows.
    /// Every rank flushes with it: the flush reads the collapse watch,
    /// whose restore changes φ before the next step.
    Checkpoint { keep: bool },
}

impl Order {
    fn code(self) -> i64 {
        match self {
            Order::Train => 0,
            Order::Wait => 1,
            Order::Stop => 2,
            Order::Checkpoint { keep: true } => 3,
            Order::Checkpoint { keep: false } => 4,
        }
    }

    fn from_code(code: i64) -> Result<Order> {
        Ok(match code {
            0 => Order::Train,
            1 => Order::Wait,
            2 => Order::Stop,
            3 => Order::Checkpoint { keep: true },
            4 => Order::Checkpoint { keep: false },
            other => bail!("rank 0 sent an order this rank does not know: {other}"),
        })
    }
}

/// The config text rank 0 last sent (so that it sends each change once).
#[derive(Default)]
pub(super) struct Sent {
    config: Option<String>,
}

impl Trainer {
    /// Rank 0: tells the other ranks `order` (and the config in force when
    /// it changed since the last message); returns it. Other ranks: learn
    /// rank 0's order (applying its config) and return that. Without a
    /// group: `order`.
    pub(super) fn lockstep(&mut self, order: Order) -> Result<Order> {
        let Some(group) = &self.group else {
            return Ok(order);
        };
        let (rank, world) = (group.rank(), group.world_size());
        let timeout = group.timeout().as_secs();
        let (dir, checkpointed_at) = (self.dir.path().to_path_buf(), self.checkpointed_at);
        let failed = move |what: &str| {
            // Formatted on failure only: every step passes here.
            let resume = match rank {
                0 => super::data_parallel::resume_hint(&dir, checkpointed_at, world),
                _ => String::new(),
            };
            let whom = if rank == 0 {
                "the other ranks"
            } else {
                "rank 0"
            };
            format!(
                "{what}: rank {rank} of {world} could not reach {whom} (one of them died, or did not answer within train.collective_timeout_s = {timeout} s){resume}"
            )
        };
        let config = (rank == 0)
            .then(|| self.config.to_toml_string())
            .filter(|text| self.lockstep_sent.config.as_ref() != Some(text));
        // NCCL groups carry CUDA tensors only: the messages go on θ's device.
        let device = self.theta.first().map_or(Device::Cpu, Tensor::device);
        let header = Tensor::from_slice(&[
            order.code(),
            self.step as i64,
            config.as_ref().map_or(0, |c| c.len() as i64),
        ])
        .to_device(device);
        group
            .broadcast(std::slice::from_ref(&header), 0)
            .with_context(|| failed(&format!("step {}: taking rank 0's orders", self.step)))?;
        let values =
            Vec::<i64>::try_from(&header.to_device(Device::Cpu)).context("rank 0's orders")?;
        let [code, step, config_len] = values[..] else {
            bail!("rank 0's orders: expected 3 numbers, got {values:?}");
        };
        if step != self.step as i64 {
            bail!(
                "rank {rank} of {world} is at step {} but rank 0 at step {step}: the ranks diverged",
                self.step
            );
        }
        if config_len > 0 {
            let bytes = match &config {
                Some(text) => Tensor::from_slice(text.as_bytes()).to_device(device),
                None => Tensor::zeros([config_len], (Kind::Uint8, device)),
            };
            group
                .broadcast(std::slice::from_ref(&bytes), 0)
                .with_context(|| failed(&format!("step {}: taking rank 0's config", self.step)))?;
            match config {
                Some(text) => self.lockstep_sent.config = Some(text),
                None => self.apply_rank0_config(&bytes)?,
            }
        }
        Order::from_code(code)
    }

    /// Another rank: applies the config rank 0 has in force, as rank 0 did.
    fn apply_rank0_config(&mut self, bytes: &Tensor) -> Result<()> {
        let bytes =
            Vec::<u8>::try_from(&bytes.to_device(Device::Cpu)).context("rank 0's config")?;
        let text = String::from_utf8(bytes).context("rank 0's config is not UTF-8")?;
        let config = Config::parse(&text)
            .map_err(anyhow::Error::new)
            .context("rank 0's config")?;
        if config != self.config {
            self.apply_config(config)?;
        }
        Ok(())
    }

    /// At `train.steps`: every rank ends now, so rank 0 sends no more
    /// messages (a failed final checkpoint may keep it waiting, alone).
    pub(super) fn leave_group_when_done(&mut self) {
        if self.group.as_ref().is_some_and(|g| g.rank() == 0) {
            self.report_dp_timing();
            self.buckets = None;
            self.group = None;
        }
    }

    /// How often a paused rank 0 tells the others it is still there.
    pub(super) fn heartbeat(&self) -> Option<std::time::Duration> {
        let group = self.group.as_ref()?;
        Some((group.timeout() / 3).min(std::time::Duration::from_secs(10)))
    }
}

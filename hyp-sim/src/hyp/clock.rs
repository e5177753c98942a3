//! The hypervisor's trace clock: the raw cycle counter, converted to the host's nanoseconds with
//! parameters the host calibrates and hands over (`UPDATE_CLOCK`), kept in a
//! [`ClockLatch`] so that writers stamping events never wait for, nor see half of, an update.

pub use ring_core::clock_latch::{ClockLatch, ClockParams};

/// The hypervisor's trace clock.
#[derive(Debug, Default)]
pub struct HypClock {
    latch: ClockLatch,
}

impl HypClock {
    /// A clock converting with `params`.
    pub fn new(params: ClockParams) -> Self {
        Self { latch: ClockLatch::new(params) }
    }

    /// Installs new parameters; `false` if another update is running (see [`ClockLatch::update`]).
    pub fn update(&self, params: ClockParams) -> bool {
        self.latch.update(params)
    }

    /// The parameters in force.
    pub fn params(&self) -> ClockParams {
        self.latch.params()
    }

    /// The raw counter now, in nanoseconds.
    pub fn now(&self) -> u64 {
        self.params().convert(raw_counter())
    }
}

/// The raw cycle counter.
pub fn raw_counter() -> u64 {
    ring_core::Clock::now(&ring_core::CycleClock)
}

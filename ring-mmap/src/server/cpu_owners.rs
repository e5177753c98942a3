//! Which client consumes each CPU: the first to swap a CPU's reader page or arm its doorbell
//! owns it until it disconnects; the others are answered `EBUSY`.

use crate::producer::Producer;
use parking_lot::Mutex;

/// The client (its connection's id) consuming each CPU, if any.
pub(super) struct CpuOwners {
    owners: Mutex<Vec<Option<u64>>>,
}

impl std::fmt::Debug for CpuOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.owners.lock().fmt(f)
    }
}

impl CpuOwners {
    /// `nr_cpus` CPUs, none consumed.
    pub(super) fn new(nr_cpus: u32) -> Self {
        Self { owners: Mutex::new(vec![None; nr_cpus as usize]) }
    }

    /// Whether a client consumes `cpu`.
    pub(super) fn is_consumed(&self, cpu: u32) -> bool {
        self.owners.lock().get(cpu as usize).is_some_and(Option::is_some)
    }

    /// Takes `cpu` for `client` unless another client consumes it (`None` then): `Some(false)`
    /// if `client` owned it already, `Some(true)` if it takes it now.
    pub(super) fn claim(&self, cpu: u32, client: u64) -> Option<bool> {
        let mut owners = self.owners.lock();
        let owner = owners.get_mut(cpu as usize)?;
        match *owner {
            Some(o) if o != client => None,
            Some(_) => Some(false),
            None => {
                *owner = Some(client);
                Some(true)
            }
        }
    }

    /// The CPUs `client` consumes.
    pub(super) fn owned_by(&self, client: u64) -> Vec<u32> {
        let owners = self.owners.lock();
        owners.iter().enumerate().filter(|(_, o)| **o == Some(client)).map(|(cpu, _)| cpu as u32).collect()
    }

    /// Frees the CPUs `client` consumed, disarming their doorbells in `producer`.
    pub(super) fn release(&self, client: u64, producer: &dyn Producer) {
        let mut owners = self.owners.lock();
        for (cpu, owner) in owners.iter_mut().enumerate() {
            if *owner == Some(client) {
                *owner = None;
                producer.disarm_doorbell(cpu as u32);
            }
        }
    }
}

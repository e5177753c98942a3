//! This process's user and the users it trusts: itself and root.

/// This process's effective uid.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// True if `uid` is this process's effective user or root: the users it trusts.
pub fn is_trusted_uid(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

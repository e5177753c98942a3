//! Where the control socket lives and who may connect to it: the socket's directory (created
//! private), the socket file (bound mode 0600, replacing one a dead producer left), and the
//! peer's credentials, which must carry the producer's effective uid.

use crate::error::Error;
use crate::wire::{control_address, control_socket};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The socket path used when none is given: `$XDG_RUNTIME_DIR/hyptrace.sock`, or
/// `/tmp/hyptrace-<euid>/hyptrace.sock` (in a directory only this user may enter).
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("hyptrace.sock"),
        _ => PathBuf::from(format!("/tmp/hyptrace-{}", crate::users::euid())).join("hyptrace.sock"),
    }
}

/// Creates, binds and listens on the socket at `path`.
pub(super) fn bind(path: &Path) -> Result<OwnedFd, Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        prepare_dir(parent, path == default_socket_path())?;
    }
    let addr = control_address(path)?;
    if path.exists() {
        let probe = control_socket(SocketFlags::empty())?;
        match rustix::net::connect(&probe, &addr) {
            Ok(()) => {
                return Err(Error::path("serving", path, std::io::Error::from(std::io::ErrorKind::AddrInUse)));
            }
            // Nobody listens: a socket file left by a producer that died.
            Err(Errno::CONNREFUSED) => std::fs::remove_file(path).map_err(|e| Error::path("removing", path, e))?,
            Err(e) => return Err(Error::path("probing", path, e.into())),
        }
    }
    let sock = control_socket(SocketFlags::NONBLOCK)?;
    rustix::net::bind(&sock, &addr).map_err(|e| Error::path("binding", path, e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::path("chmod", path, e))?;
    rustix::net::listen(&sock, 16).map_err(|e| Error::path("listening on", path, e.into()))?;
    Ok(sock)
}

/// Creates the socket's directory (mode 0700) if missing. The default directory, when it
/// exists, must be private to us ([`crate::socket_dir::check_private_dir`]), or someone could
/// swap the socket.
fn prepare_dir(dir: &Path, is_default: bool) -> Result<(), Error> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) if is_default => crate::socket_dir::check_private_dir(dir),
        Ok(_) => Ok(()),
        Err(_) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::path("creating", parent, e))?;
            }
            // Created closed (the umask only takes bits away), so it is never open to others.
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::path("chmod", dir, e)),
                // Created by someone else meanwhile: judged as any existing directory.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_default => {
                    crate::socket_dir::check_private_dir(dir)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(Error::path("creating", dir, e)),
            }
        }
    }
}

/// Whether the peer of the accepted connection `fd` runs as `euid` (`SO_PEERCRED`); a peer
/// whose credentials cannot be read does not.
pub(super) fn peer_is(fd: &OwnedFd, euid: u32) -> bool {
    rustix::net::sockopt::socket_peercred(fd).is_ok_and(|cred| cred.uid.as_raw() == euid)
}

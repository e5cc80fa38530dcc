//! A real ext4 file system on a loop device (an image file, `mkfs.ext4`, `mount -o loop`;
//! this needs root, as CI has), so that fallocate, write and fsync run out of space as they
//! do on a disk (tmpfs would not). Used by the disk-full tests and the nemesis campaign.
//!
//! Invariant: the image is sparse (it costs the host only what the file system holds) and
//! the mount is lazily unmounted when the `LoopFs` drops, after whatever lives on it (a
//! broker, a cluster) has been stopped by its own owner dropping first.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;

/// An ext4 file system on a loop device, mounted in a temporary directory; unmounted on drop.
pub(crate) struct LoopFs {
    _dir: TempDir,
    mount: PathBuf,
}

/// Runs a system command that must succeed (mkfs, mount, fallocate, df).
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed (the loop-device tests need root and loop devices): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl LoopFs {
    /// Makes and mounts a file system of `size_bytes`.
    pub(crate) fn new(label: &str, size_bytes: u64) -> LoopFs {
        let dir = TempDir::new(label);
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir_all(&mount).expect("mount point");
        std::fs::File::create(&image).and_then(|f| f.set_len(size_bytes)).expect("image file");
        let image_arg = image.display().to_string();
        let mount_arg = mount.display().to_string();
        // No blocks reserved for root: the tests run as root, and reserved blocks would let
        // writes go on past what fstatvfs reports free.
        run("mkfs.ext4", &["-q", "-F", "-m", "0", &image_arg]);
        run("mount", &["-o", "loop", &image_arg, &mount_arg]);
        LoopFs { _dir: dir, mount }
    }

    /// The mounted file system's root.
    pub(crate) fn mount(&self) -> &Path {
        &self.mount
    }

    /// A data directory on the file system.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.mount.join("data")
    }

    /// Bytes free for unprivileged use, as `df` (statvfs) reports them.
    pub(crate) fn free_bytes(&self) -> u64 {
        let mount = self.mount.display().to_string();
        let out = run("df", &["-B1", "--output=avail", &mount]);
        out.lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("df {mount} printed no free bytes: {out:?}"))
    }

    /// Reserves `bytes` on the file system in a new file at `path` (fallocate: the blocks
    /// are allocated, not written).
    pub(crate) fn fill(&self, path: &Path, bytes: u64) {
        let (size, path) = (bytes.to_string(), path.display().to_string());
        run("fallocate", &["-l", &size, &path]);
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

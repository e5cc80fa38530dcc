//! One simulated file's bytes: a durable image (what a power loss keeps for sure) and a
//! volatile image (what reads see), with the writes and length changes made since the last
//! sync in order.
//!
//! Invariants:
//! - `volatile` is `durable` with every op of `pending` applied in order.
//! - A sync makes `durable` equal `volatile` and empties `pending`.
//! - A crash never changes a byte of `durable` below its length except through a pending op
//!   that wrote or cut there: synced bytes survive, whatever the crash keeps of the rest.
//!   What it keeps is decided sector by sector (`SECTOR_BYTES`): a sector is written whole
//!   or not at all, the disk's unit of atomicity.

use super::rng::Rng;

/// The unit a disk writes atomically: a write torn by a power loss keeps whole sectors.
pub(super) const SECTOR_BYTES: u64 = 512;

/// A change made since the last sync.
#[derive(Debug, Clone)]
enum Op {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// What a crash kept of a file's unsynced changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kept {
    /// Nothing was pending.
    Clean,
    /// Every unsynced change was lost.
    Nothing,
    /// Every unsynced change was written back.
    Everything,
    /// The changes up to one, and whole sectors of that one (a torn write).
    Torn,
    /// The changes up to one, then random sectors of the later writes (writeback out of
    /// order), one sector of them possibly landing elsewhere (misdirected).
    Scattered { misdirected: bool },
}

#[derive(Debug, Default)]
pub(super) struct Image {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    pending: Vec<Op>,
}

impl Image {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.volatile
    }

    pub(super) fn write(&mut self, position: u64, bytes: &[u8]) {
        write_into(&mut self.volatile, position, bytes);
        self.pending.push(Op::Write { position, bytes: bytes.to_vec() });
    }

    pub(super) fn set_len(&mut self, len: u64) {
        self.volatile.resize(len as usize, 0);
        self.pending.push(Op::SetLen(len));
    }

    pub(super) fn sync(&mut self) {
        if !self.pending.is_empty() {
            self.durable.clone_from(&self.volatile);
            self.pending.clear();
        }
    }

    /// A power loss: keeps some of the unsynced changes, as `rng` decides, and makes the
    /// result both images. `misdirect_ppm` is the chance that one kept sector of an
    /// out-of-order writeback lands at another unsynced position of the file.
    pub(super) fn crash(&mut self, rng: &mut Rng, misdirect_ppm: u32) -> Kept {
        if self.pending.is_empty() {
            return Kept::Clean;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut image = std::mem::take(&mut self.durable);
        let kept = match rng.below(4) {
            0 => Kept::Nothing,
            1 => {
                for op in &pending {
                    apply(&mut image, op);
                }
                Kept::Everything
            }
            2 => {
                let whole = rng.below(pending.len() as u64) as usize;
                for op in &pending[..whole] {
                    apply(&mut image, op);
                }
                if let Op::Write { position, bytes } = &pending[whole] {
                    let sectors = sectors(*position, bytes.len() as u64);
                    let kept = rng.below(sectors.len() as u64 + 1) as usize;
                    for &(from, to) in &sectors[..kept] {
                        write_into(&mut image, position + from, &bytes[from as usize..to as usize]);
                    }
                }
                Kept::Torn
            }
            _ => {
                let whole = rng.below(pending.len() as u64 + 1) as usize;
                for op in &pending[..whole] {
                    apply(&mut image, op);
                }
                // Below here the file's synced bytes and the changes kept whole lie; a
                // misdirected sector lands at or past it, in what only unsynced writes touched.
                let floor = (image.len() as u64).div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
                let mut misdirected = false;
                for op in &pending[whole..] {
                    let Op::Write { position, bytes } = op else { continue };
                    for (from, to) in sectors(*position, bytes.len() as u64) {
                        if !rng.coin() {
                            continue;
                        }
                        let piece = &bytes[from as usize..to as usize];
                        let target = position + from;
                        if !misdirected && target >= floor && rng.chance_ppm(misdirect_ppm) {
                            let span = (self.volatile.len() as u64).div_ceil(SECTOR_BYTES) + 1;
                            let floor_sector = floor / SECTOR_BYTES;
                            let sector =
                                floor_sector + rng.below(span.saturating_sub(floor_sector) + 1);
                            write_into(&mut image, sector * SECTOR_BYTES, piece);
                            misdirected = true;
                        } else {
                            write_into(&mut image, target, piece);
                        }
                    }
                }
                Kept::Scattered { misdirected }
            }
        };
        self.volatile.clone_from(&image);
        self.durable = image;
        kept
    }
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { position, bytes } => write_into(image, *position, bytes),
        Op::SetLen(len) => image.resize(*len as usize, 0),
    }
}

/// Writes `bytes` at `position`, extending the image with zeros if it is shorter.
fn write_into(image: &mut Vec<u8>, position: u64, bytes: &[u8]) {
    let start = position as usize;
    let end = start + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(bytes);
}

/// The pieces of a write of `len` bytes at `position` that fall in one sector each, as
/// ranges of the write's own bytes.
fn sectors(position: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut from = 0;
    while from < len {
        let next_boundary = ((position + from) / SECTOR_BYTES + 1) * SECTOR_BYTES;
        let to = (next_boundary - position).min(len);
        out.push((from, to));
        from = to;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_split_at_absolute_boundaries() {
        assert_eq!(sectors(500, 30), vec![(0, 12), (12, 30)]);
        assert_eq!(sectors(0, 1024), vec![(0, 512), (512, 1024)]);
        assert!(sectors(7, 0).is_empty());
    }

    #[test]
    fn synced_bytes_survive_every_crash() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut image = Image::default();
            image.write(0, &[1; 700]);
            image.sync();
            image.write(700, &[2; 2000]);
            image.set_len(1500);
            image.write(1500, &[3; 100]);
            image.crash(&mut rng, 500_000);
            assert!(image.bytes().len() >= 700, "seed {seed}");
            assert_eq!(&image.bytes()[..700], &[1; 700][..], "seed {seed}");
        }
    }
}

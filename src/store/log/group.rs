//! A consensus group's log as of a checkpoint, in one file (format in the
//! parent module's doc, "Group file"): [`write_group_file`] writes one
//! whole, atomically (a temporary file, fdatasync'd, renamed, the
//! directory synced); [`read_group_file`] reads one back at a start,
//! refusing any damage; [`read_group_entry`] reads one entry by the
//! offset the writer or the reader reported.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::chunks::{open_read, read_exact_at, Chunks, Step, READ_CHUNK};
use super::record::{decode, encode_entry_into, encode_into, Decoded, Entry, MAX_BODY, TYPE_ENTRY};
use super::{sync_dir, LogError};

/// Record type of a group file's head.
pub(crate) const TYPE_GROUP: u8 = 6;

/// A group file's head: what the log holds besides its entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct GroupHead {
    /// The last entry purged, `(index, term)`, if any was.
    pub(crate) purged: Option<(u64, u64)>,
    /// The saved vote (opaque bytes), if any.
    pub(crate) vote: Option<Vec<u8>>,
    /// The index of the first entry (one past the purged one).
    pub(crate) first: u64,
    /// How many entries follow, with consecutive indexes.
    pub(crate) count: u64,
    /// How far into the write-ahead files the file is up to date, as
    /// (generation, control entry index): what replay skips.
    pub(crate) through: (u64, u64),
}

/// Where an entry is in a group file: its index, its term, and its
/// record's offset and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) offset: u64,
    pub(crate) size: u32,
}

/// The name of group `group`'s file of generation `generation`.
pub(crate) fn group_file_name(group: u64, generation: u64) -> String {
    format!("{group:020}.{generation:020}.grp")
}

/// The group and generation of a group file's name (`None` for any other
/// name, such as a temporary file).
pub(crate) fn parse_group_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".grp")?;
    let (group, generation) = stem.split_once('.')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(group) || !digits(generation) {
        return None;
    }
    Some((group.parse().ok()?, generation.parse().ok()?))
}

fn encode_head(head: &GroupHead) -> Vec<u8> {
    let mut p = Vec::with_capacity(61 + head.vote.as_ref().map_or(0, Vec::len));
    let (purged_index, purged_term) = head.purged.unwrap_or((0, 0));
    p.push(u8::from(head.purged.is_some()));
    let (gen, at) = head.through;
    for v in [purged_index, purged_term, head.first, head.count, gen, at] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    match &head.vote {
        Some(v) => {
            p.push(1);
            p.extend_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(v);
        }
        None => p.push(0),
    }
    p
}

fn decode_head(p: &[u8]) -> Option<GroupHead> {
    let (&has_purged, rest) = p.split_first()?;
    let mut words = [0u64; 6];
    let mut rest = rest;
    for w in &mut words {
        let (b, r) = rest.split_first_chunk::<8>()?;
        *w = u64::from_le_bytes(*b);
        rest = r;
    }
    let (&has_vote, rest) = rest.split_first()?;
    let vote = match has_vote {
        0 if rest.is_empty() => None,
        1 => {
            let (len, v) = rest.split_first_chunk::<4>()?;
            (u32::from_le_bytes(*len) as usize == v.len())
                .then(|| v.to_vec())?
                .into()
        }
        _ => return None,
    };
    let purged = match has_purged {
        0 => None,
        1 => Some((words[0], words[1])),
        _ => return None,
    };
    let (first, count, through) = (words[2], words[3], (words[4], words[5]));
    if first == 0 || purged.is_some_and(|(i, _)| i.checked_add(1) != Some(first)) {
        return None;
    }
    Some(GroupHead {
        purged,
        vote,
        first,
        count,
        through,
    })
}

/// Writes group `group`'s file of generation `generation` in `dir`: its
/// head, then `entries` (`(index, term, body)`, consecutive from
/// `head.first`, `head.count` of them), to a temporary file that is
/// fdatasync'd and renamed into place, then the directory is synced.
/// Returns where each entry went.
pub(crate) fn write_group_file(
    dir: &Path,
    group: u64,
    generation: u64,
    head: &GroupHead,
    entries: impl IntoIterator<Item = Result<(u64, u64, bytes::Bytes), LogError>>,
) -> Result<Vec<Placed>, LogError> {
    let path = dir.join(group_file_name(group, generation));
    let tmp = dir.join(format!("{}.tmp", group_file_name(group, generation)));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| LogError::io(&tmp, e))?;
    let mut buf = Vec::new();
    encode_into(&mut buf, TYPE_GROUP, &encode_head(head));
    let mut offset = buf.len() as u64;
    let mut placed = Vec::with_capacity(usize::try_from(head.count).unwrap_or(0));
    let mut next = head.first;
    for e in entries {
        let (index, term, body) = e?;
        if index != next {
            return Err(LogError::OutOfOrder {
                expected: next,
                got: index,
            });
        }
        let before = buf.len();
        encode_entry_into(
            &mut buf,
            &Entry {
                index,
                term,
                body: &body,
            },
        )
        .map_err(|len| LogError::TooLarge { len, max: MAX_BODY })?;
        let size = (buf.len() - before) as u64;
        placed.push(Placed {
            index,
            term,
            offset,
            size: u32::try_from(size).unwrap_or(u32::MAX),
        });
        offset += size;
        next += 1;
        if buf.len() >= READ_CHUNK {
            file.write_all(&buf).map_err(|e| LogError::io(&tmp, e))?;
            buf.clear();
        }
    }
    if next - head.first != head.count {
        return Err(LogError::corrupt(
            &tmp,
            offset,
            "entries missing from a group file",
        ));
    }
    file.write_all(&buf).map_err(|e| LogError::io(&tmp, e))?;
    file.sync_data().map_err(|e| LogError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(placed)
}

/// Reads group file `path` whole: its head and where each entry is. Any
/// damage (a bad record, a head that does not parse, entries that do not
/// count or follow what it says) is [`LogError::Corrupt`]: the file was
/// complete when it was renamed into place.
pub(crate) fn read_group_file(path: &Path) -> Result<(GroupHead, Vec<Placed>), LogError> {
    let (file, len) = open_read(path)?;
    let mut chunks = Chunks::new(file, path, 0, len, READ_CHUNK);
    let head = match chunks.next()? {
        Step::Record {
            typ: TYPE_GROUP,
            payload,
            offset,
        } => decode_head(&chunks.buf[payload])
            .ok_or_else(|| LogError::corrupt(path, offset, "group head does not parse"))?,
        Step::Record { offset, .. } | Step::Bad { offset, .. } => {
            return Err(LogError::corrupt(path, offset, "no group head"))
        }
        Step::End => return Err(LogError::corrupt(path, 0, "empty group file")),
    };
    let mut placed = Vec::new();
    let mut next = head.first;
    loop {
        match chunks.next()? {
            Step::Record {
                typ: TYPE_ENTRY,
                offset,
                payload,
            } => {
                let e = Entry::decode_payload(&chunks.buf[payload.clone()])
                    .filter(|e| e.index == next)
                    .ok_or_else(|| LogError::corrupt(path, offset, format!("not entry {next}")))?;
                placed.push(Placed {
                    index: e.index,
                    term: e.term,
                    offset,
                    size: u32::try_from(chunks.pos - offset).unwrap_or(u32::MAX),
                });
                next += 1;
            }
            Step::End => break,
            Step::Record { typ, offset, .. } => {
                return Err(LogError::corrupt(
                    path,
                    offset,
                    format!("record type {typ}"),
                ))
            }
            Step::Bad { offset, what } => return Err(LogError::corrupt(path, offset, what)),
        }
    }
    if placed.len() as u64 != head.count {
        return Err(LogError::corrupt(
            path,
            len,
            format!(
                "{} entries where the head says {}",
                placed.len(),
                head.count
            ),
        ));
    }
    Ok((head, placed))
}

/// Reads the entry `index` at `offset` (`size` bytes, as [`Placed`] says)
/// of group file `file` (opened from `path`): its term and body.
pub(crate) fn read_group_entry(
    file: &File,
    path: &Path,
    at: &Placed,
) -> Result<(u64, bytes::Bytes), LogError> {
    let buf = bytes::Bytes::from(read_exact_at(file, path, at.size as usize, at.offset)?);
    match decode(&buf) {
        Decoded::Record {
            typ: TYPE_ENTRY,
            payload,
            ..
        } => match Entry::decode_payload(payload) {
            Some(e) if e.index == at.index && e.term == at.term => {
                Ok((e.term, buf.slice_ref(e.body)))
            }
            _ => Err(LogError::corrupt(
                path,
                at.offset,
                format!("not entry {}", at.index),
            )),
        },
        _ => Err(LogError::corrupt(
            path,
            at.offset,
            format!("entry {} unreadable", at.index),
        )),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn head(first: u64, count: u64) -> GroupHead {
        GroupHead {
            purged: (first > 1).then(|| (first - 1, 2)),
            vote: Some(b"vote 3 node 1".to_vec()),
            first,
            count,
            through: (4, 17),
        }
    }

    fn entries(first: u64, n: u64) -> Vec<Result<(u64, u64, Bytes), LogError>> {
        (first..first + n)
            .map(|i| Ok((i, 2 + i / 10, Bytes::from(format!("command {i}")))))
            .collect()
    }

    #[test]
    fn a_group_file_reads_back_as_written_and_each_entry_by_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let h = head(5, 30);
        let placed = write_group_file(dir.path(), 7, 3, &h, entries(5, 30)).unwrap();
        let path = dir.path().join(group_file_name(7, 3));
        let (got, read) = read_group_file(&path).unwrap();
        assert_eq!((got, &read), (h, &placed));
        let file = File::open(&path).unwrap();
        for p in &placed {
            let (term, body) = read_group_entry(&file, &path, p).unwrap();
            assert_eq!(term, 2 + p.index / 10);
            assert_eq!(&body[..], format!("command {}", p.index).as_bytes());
        }
        // Empty, no vote, nothing purged.
        let empty = GroupHead {
            first: 1,
            ..GroupHead::default()
        };
        write_group_file(dir.path(), 7, 4, &empty, Vec::new()).unwrap();
        let (got, read) = read_group_file(&dir.path().join(group_file_name(7, 4))).unwrap();
        assert_eq!((got, read.len()), (empty, 0));
        assert_eq!(parse_group_file_name(&group_file_name(7, 4)), Some((7, 4)));
        assert_eq!(parse_group_file_name("x.grp"), None);
        assert_eq!(
            parse_group_file_name(&format!("{}.tmp", group_file_name(7, 4))),
            None
        );
    }

    #[test]
    fn every_damage_to_a_group_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_group_file(dir.path(), 1, 1, &head(1, 5), entries(1, 5)).unwrap();
        let path = dir.path().join(group_file_name(1, 1));
        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(read_group_file(&path), Err(LogError::Corrupt { .. })),
                "a flipped bit at {at}"
            );
        }
        for cut in 0..good.len() {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(read_group_file(&path).is_err(), "cut at {cut}");
        }
        // Entries that do not follow the head.
        assert!(write_group_file(dir.path(), 1, 2, &head(1, 5), entries(2, 5)).is_err());
        assert!(write_group_file(dir.path(), 1, 2, &head(1, 6), entries(1, 5)).is_err());
    }
}

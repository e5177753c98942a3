//! Event ids for a recording of several sources: a trace.dat file has one set of event formats
//! for all its buffers, matched by id, while each source numbers its own events (hyp-sim from
//! 1, the kernel from 1 too). The sources after the first get ids no source before them uses,
//! and their events are renumbered on the way into the file.
//!
//! ```text
//!   kernel formats   1 ... 1843            kept as they are (the top-level buffer)
//!   hyp formats      1 ... 6      ──►  1844 ... 1849   (`ID:` lines rewritten,
//!                                                        each event's common_type likewise)
//! ```

use crate::formats::{EventFormat, FormatError, Formats};

/// How one source's event ids map to the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventIds {
    /// (source id, file id), sorted by source id.
    map: Vec<(u16, u16)>,
}

/// Why a source's events cannot be given ids of their own.
#[derive(Debug, thiserror::Error)]
pub enum RenumberError {
    /// Event ids are 16 bits: the sources together have more events than that.
    #[error(
        "the sources have more than 65535 event formats between them, more than a trace file numbers; \
         record fewer kernel systems (-e) or fewer sources"
    )]
    TooMany,
    /// A renumbered format did not parse back (it parsed as received).
    #[error("renumbering event formats: {0}")]
    Format(#[from] FormatError),
}

impl EventIds {
    /// Renumbers `source`'s formats from the first id above every one of `taken`'s: the
    /// formats as the file will hold them, and the mapping for their events.
    pub fn after(taken: &Formats, source: &Formats) -> Result<(Formats, Self), RenumberError> {
        let first = taken.iter().map(|f| u32::from(f.id) + 1).max().unwrap_or(1);
        let mut ordered: Vec<&EventFormat> = source.iter().collect();
        ordered.sort_by_key(|f| f.id);
        let mut renumbered = Formats::default();
        let mut map = Vec::with_capacity(ordered.len());
        for (format, new) in ordered.into_iter().zip(first..) {
            let new = u16::try_from(new).map_err(|_| RenumberError::TooMany)?;
            renumbered.insert(EventFormat::parse(&format.system, &with_id(&format.text, new))?);
            map.push((format.id, new));
        }
        Ok((renumbered, Self { map }))
    }

    /// The file's id of the source's event `id`, if the source has such an event.
    pub fn get(&self, id: u16) -> Option<u16> {
        let at = self.map.binary_search_by_key(&id, |&(source, _)| source).ok()?;
        Some(self.map[at].1)
    }

    /// Rewrites the `common_type` (the first two bytes, host order) of an event's `payload` to
    /// the file's id. An event whose id has no format, or too short to have an id, is left as
    /// it is: it is printed as unknown either way.
    pub fn renumber(&self, payload: &mut [u8]) {
        let Some(id) = payload.get(..2) else { return };
        let id = u16::from_ne_bytes([id[0], id[1]]);
        if let Some(new) = self.get(id) {
            payload[..2].copy_from_slice(&new.to_ne_bytes());
        }
    }
}

/// `text`, a format description, with its `ID:` line saying `id`.
fn with_id(text: &str, id: u16) -> String {
    text.lines()
        .map(|line| if line.trim_start().starts_with("ID:") { format!("ID: {id}") } else { line.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(system: &str, name: &str, id: u16) -> EventFormat {
        let text = format!(
            "name: {name}\nID: {id}\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
             \n\tfield:u64 value;\toffset:8;\tsize:8;\tsigned:0;\n\nprint fmt: \"value=%llu\", REC->value\n"
        );
        EventFormat::parse(system, &text).unwrap()
    }

    fn formats(list: &[EventFormat]) -> Formats {
        let mut formats = Formats::default();
        for f in list {
            formats.insert(f.clone());
        }
        formats
    }

    #[test]
    fn a_source_gets_ids_above_those_taken_and_its_events_follow() {
        let kernel = formats(&[format("sched", "sched_switch", 1), format("sched", "sched_wakeup", 316)]);
        let hyp =
            formats(&[format("hyp", "hyp_enter", 1), format("hyp", "hyp_exit", 2), format("hyp", "host_hcall", 5)]);
        let (renumbered, ids) = EventIds::after(&kernel, &hyp).unwrap();
        let names: Vec<(u16, &str)> =
            [317, 318, 319].iter().map(|&id| (id, renumbered.get(id).unwrap().name.as_str())).collect();
        assert_eq!(names, [(317, "hyp_enter"), (318, "hyp_exit"), (319, "host_hcall")]);
        assert!(renumbered.get(317).unwrap().text.contains("\nID: 317\n"), "the text says the new id");
        assert_eq!(renumbered.get(319).unwrap().fields[0].name, "value", "and is otherwise the same");
        let mut payload = [5u8, 0, 0, 0, 7, 0, 0, 0];
        payload[..2].copy_from_slice(&5u16.to_ne_bytes());
        ids.renumber(&mut payload);
        assert_eq!(u16::from_ne_bytes([payload[0], payload[1]]), 319);
        let mut unknown = 9u16.to_ne_bytes();
        ids.renumber(&mut unknown);
        assert_eq!(u16::from_ne_bytes(unknown), 9, "an id without a format is left alone");
        ids.renumber(&mut [1u8]);
    }

    #[test]
    fn ids_run_out_at_sixteen_bits() {
        let kernel = formats(&[format("sched", "last", u16::MAX - 1)]);
        let hyp = formats(&[format("hyp", "a", 1), format("hyp", "b", 2)]);
        assert!(matches!(EventIds::after(&kernel, &hyp), Err(RenumberError::TooMany)));
    }
}

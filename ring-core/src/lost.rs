//! Events lost before a point in a trace: what a page header's missed-events flags say, what a
//! swap answers, and what every consumer reports before the next event it hands over.

/// Events lost before a reader page, a stored page, or the next event handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// None.
    None,
    /// This many.
    Count(u64),
    /// Some, count unknown (a kernel page with no room to store it, or a buffer reset under its
    /// reader).
    Unknown,
}

impl Lost {
    /// These losses followed by `later` ones, as one.
    pub fn then(self, later: Lost) -> Lost {
        match (self, later) {
            (a, Lost::None) => a,
            (Lost::Count(a), Lost::Count(b)) => Lost::Count(a.saturating_add(b)),
            (Lost::Unknown, _) | (_, Lost::Unknown) => Lost::Unknown,
            (Lost::None, b) => b,
        }
    }
}

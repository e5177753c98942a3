//! The sub-buffer decoder on arbitrary pages: never a panic or an out-of-bounds read, every
//! payload inside the page, the two page sources (plain bytes, shared memory read through
//! atomics) decode identically, and draining (the consumers' path) hands over what iterating
//! yields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ring_core::{Event, EventIter, ShmPage, ShmRegion};

fuzz_target!(|input: &[u8]| {
    // The first two bytes pick a start offset; the rest is the page.
    let (start, page) = match input {
        [a, b, page @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), page),
        _ => return,
    };
    let len = page.len() & !7;
    let page = &page[..len];
    let region = ShmRegion::alloc_zeroed(len.max(8));
    region.store_bytes(0, page);
    let Some(shm) = ShmPage::new(&region, 0, len) else { return };
    let plain = EventIter::starting_at(page, start).map(|events| events.collect::<Vec<_>>());
    let shared = EventIter::starting_at(&shm, start).map(|events| events.collect::<Vec<_>>());
    match (&plain, &shared) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                match (x, y) {
                    (Ok(x), Ok(y)) => {
                        assert!(x.offset < x.end && x.end as usize <= len, "{x:?} outside the page");
                        assert_eq!((x.offset, x.timestamp), (y.offset, y.timestamp));
                        assert_eq!(x.payload, &y.payload.to_vec()[..]);
                    }
                    (Err(x), Err(y)) => assert_eq!(x, y),
                    _ => panic!("the decoders disagree: {x:?} vs {y:?}"),
                }
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("the decoders disagree: {:?} vs {:?}", a.is_ok(), b.is_ok()),
    }
    // Draining the shared page against iterating the plain one (the two iterate alike).
    if let (Ok(iterated), Ok(mut events)) = (&plain, EventIter::starting_at(&shm, start)) {
        let mut drained = Vec::new();
        let outcome =
            events.drain_events(|e: Event<_>| drained.push((e.offset, e.end, e.timestamp, e.payload.to_vec())));
        let before_error: Vec<_> = iterated
            .iter()
            .map_while(|e| e.as_ref().ok())
            .map(|e| (e.offset, e.end, e.timestamp, e.payload.to_vec()))
            .collect();
        assert_eq!(drained, before_error);
        match outcome {
            Ok(n) => assert!(n as usize == drained.len() && iterated.iter().all(Result::is_ok)),
            Err(e) => assert_eq!(iterated.get(drained.len()), Some(&Err(e))),
        }
    }
});

//! The line filter between `pg_restore -f -` and psql: pg_restore 17+ always writes
//! `SET transaction_timeout = 0;`, which servers 10 to 16 reject, so that one line is left out
//! of the script as it streams by; everything else passes unchanged.
//!
//! The filter works on chunks as they arrive (a line may be split across any number of them)
//! and never holds more than the length of the line it looks for. It looks only in the
//! script's header, where pg_restore writes its fixed session settings: at the first archive
//! entry (`-- Name: `, `-- Data for Name: `, `COPY `) or once the line is dropped, it stops
//! looking, so a table row or a function body that reads the same is never touched.

/// The line pg_restore 17+ writes and servers 10 to 16 reject.
pub const TRANSACTION_TIMEOUT_LINE: &str = "SET transaction_timeout = 0;";

/// That line as it is dropped: whole, with its newline.
const DROPPED_LINE: &[u8] = b"SET transaction_timeout = 0;\n";

/// Lines that start the script's archive entries: the header is over.
const ENTRY_STARTS: [&[u8]; 3] = [b"-- Name: ", b"-- Data for Name: ", b"COPY "];

/// Where the filter is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line of the header, or inside one that may still be the line to drop
    /// or an entry's start (its bytes so far held back).
    LineStart,
    /// Inside a header line that is neither: passed through up to its newline.
    InLine,
    /// The line was dropped or the header is over: everything passes.
    Done,
}

/// Drops the first `SET transaction_timeout = 0;` line of a script's header, chunk by chunk.
#[derive(Debug, Clone)]
pub struct TransactionTimeoutFilter {
    state: State,
    /// The bytes of the current line held back, a prefix of the line or of an entry's start.
    held: Vec<u8>,
    /// Whether the line was dropped.
    dropped: bool,
}

impl Default for TransactionTimeoutFilter {
    fn default() -> Self {
        TransactionTimeoutFilter::new()
    }
}

impl TransactionTimeoutFilter {
    /// A filter at the start of a script.
    pub fn new() -> TransactionTimeoutFilter {
        TransactionTimeoutFilter {
            state: State::LineStart,
            held: Vec::with_capacity(TRANSACTION_TIMEOUT_LINE.len() + 1),
            dropped: false,
        }
    }

    /// Whether the line was found and dropped (the tests ask).
    #[cfg(test)]
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    /// Filters the next chunk of the script into `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        while !chunk.is_empty() {
            match self.state {
                State::Done => {
                    out.extend_from_slice(chunk);
                    return;
                }
                State::InLine => match chunk.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        out.extend_from_slice(&chunk[..=end]);
                        chunk = &chunk[end + 1..];
                        self.state = State::LineStart;
                    }
                    None => {
                        out.extend_from_slice(chunk);
                        return;
                    }
                },
                State::LineStart => {
                    self.held.push(chunk[0]);
                    chunk = &chunk[1..];
                    self.look_at_held(out);
                }
            }
        }
    }

    /// The end of the script: what is still held back (a last line without its newline).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.held);
        self.state = State::Done;
    }

    /// Decides on the held bytes of a header line once one more byte arrived.
    fn look_at_held(&mut self, out: &mut Vec<u8>) {
        let held = self.held.as_slice();
        if held == DROPPED_LINE {
            self.held.clear();
            self.dropped = true;
            self.state = State::Done;
        } else if ENTRY_STARTS.contains(&held) {
            out.append(&mut self.held);
            self.state = State::Done;
        } else if !DROPPED_LINE.starts_with(held)
            && !ENTRY_STARTS.iter().any(|start| start.starts_with(held))
        {
            let ended = held.last() == Some(&b'\n');
            out.append(&mut self.held);
            self.state = if ended {
                State::LineStart
            } else {
                State::InLine
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole of `script` through a fresh filter, in chunks of `size` bytes.
    fn filtered(script: &str, size: usize) -> (String, bool) {
        let mut filter = TransactionTimeoutFilter::new();
        let mut out = Vec::new();
        for chunk in script.as_bytes().chunks(size) {
            filter.push(chunk, &mut out);
        }
        filter.finish(&mut out);
        (String::from_utf8(out).unwrap(), filter.dropped())
    }

    /// The header pg_restore 18 writes, then two archive entries.
    const SCRIPT: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\n\
        SET statement_timeout = 0;\nSET lock_timeout = 0;\n\
        SET idle_in_transaction_session_timeout = 0;\nSET transaction_timeout = 0;\n\
        SET client_encoding = 'UTF8';\nSET transaction_timeout = 00;\n\n\
        --\n-- Name: t; Type: TABLE; Schema: public; Owner: u1\n--\n\n\
        CREATE TABLE public.t (x text);\n\n\
        COPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\n\\.\n";

    #[test]
    fn drops_only_that_line_of_the_header_whatever_the_chunks() {
        let expected = SCRIPT.replacen("SET transaction_timeout = 0;\n", "", 1);
        assert_eq!(expected.len() + 29, SCRIPT.len());
        assert!(expected.contains("COPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\n"));
        for size in 1..=SCRIPT.len() {
            assert_eq!(
                filtered(SCRIPT, size),
                (expected.clone(), true),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn every_split_of_the_line_across_two_chunks() {
        let start = SCRIPT.find("SET transaction_timeout").unwrap();
        for split in start..=start + 30 {
            let mut filter = TransactionTimeoutFilter::new();
            let mut out = Vec::new();
            filter.push(&SCRIPT.as_bytes()[..split], &mut out);
            filter.push(&SCRIPT.as_bytes()[split..], &mut out);
            filter.finish(&mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(filter.dropped(), "split at {split}");
            assert!(
                text.contains("session_timeout = 0;\nSET client_encoding"),
                "split at {split}: {text}"
            );
        }
    }

    #[test]
    fn lines_like_it_pass() {
        for script in [
            "SET transaction_timeout = 0; -- no\n",
            " SET transaction_timeout = 0;\n",
            "SET transaction_timeout = 0;",
            "SET transaction_timeout = 0;\r\n",
            "SET transaction_timeout = 5s;\n",
            "SET\n",
            "",
            "-- Name: x\nSET transaction_timeout = 0;\n",
            "-- Data for Name: x\nSET transaction_timeout = 0;\n",
            "COPY x FROM stdin;\nSET transaction_timeout = 0;\n",
        ] {
            for size in [1, 3, 64] {
                assert_eq!(
                    filtered(script, size),
                    (script.to_string(), false),
                    "{script:?}"
                );
            }
        }
    }

    #[test]
    fn holds_back_no_more_than_the_line() {
        let mut filter = TransactionTimeoutFilter::new();
        let mut out = Vec::new();
        let long = "x".repeat(100_000);
        filter.push(long.as_bytes(), &mut out);
        assert_eq!(out.len(), long.len());
        filter.push(b"SET transaction_timeout = 0", &mut out);
        assert_eq!(
            out.len(),
            long.len() + 27,
            "the line is not ended: passed on"
        );
        filter.push(b";\nSET transaction_timeout = 0", &mut out);
        assert!(filter.held.len() <= TRANSACTION_TIMEOUT_LINE.len() + 1);
        filter.push(b";\n", &mut out);
        assert!(filter.dropped());
        filter.finish(&mut out);
        assert_eq!(
            out.len(),
            long.len() + 29,
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}

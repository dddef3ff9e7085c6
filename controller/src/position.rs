//! Positions as people type and read them: `m:ss`, `mm:ss.mmm`, `h:mm:ss`,
//! converted exactly to and from timeline frames.
//!
//! Invariant: parsing never rounds up past what was typed (a fraction is
//! truncated to whole milliseconds, then converted with the protocol's
//! integer math), and formatting never shows a time later than the frame.

use autoharmonize_protocol::Nanos;
use autoharmonize_protocol::transport::Frames;

/// Why a position could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// Not of the form `ss`, `m:ss` or `h:mm:ss` (optionally `.fff`).
    #[error("{0:?} is not a time: write m:ss, for example 1:30, or h:mm:ss")]
    Syntax(String),
    /// Seconds or minutes above 59 after the first field.
    #[error("{0:?}: minutes and seconds after the first field must be below 60")]
    Range(String),
}

/// Longest position accepted: 24 hours, far beyond any track, small enough
/// that nothing overflows.
const MAX_MS: u64 = 24 * 3600 * 1000;

/// Reads `ss`, `m:ss`, `h:mm:ss`, each optionally followed by `.f` to `.fff`.
///
/// # Errors
/// [`PositionError`] when the text is not such a time.
pub fn parse(text: &str) -> Result<Frames, PositionError> {
    let ms = parse_millis(text)?;
    Ok(Frames::from_nanos(Nanos::from_millis(ms)))
}

/// Like [`parse`], in milliseconds.
///
/// # Errors
/// [`PositionError`] when the text is not such a time.
pub fn parse_millis(text: &str) -> Result<u64, PositionError> {
    let syntax = || PositionError::Syntax(text.to_owned());
    let t = text.trim();
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (t, None),
    };
    let fields: Vec<&str> = whole.split(':').collect();
    if fields.is_empty() || fields.len() > 3 {
        return Err(syntax());
    }
    let mut secs: u64 = 0;
    for (i, f) in fields.iter().enumerate() {
        if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let v: u64 = f.parse().map_err(|_| syntax())?;
        if i > 0 && v >= 60 {
            return Err(PositionError::Range(text.to_owned()));
        }
        secs = secs.saturating_mul(60).saturating_add(v);
    }
    let mut ms = secs.saturating_mul(1000);
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 3 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let scale = [100, 10, 1][f.len() - 1];
        let v: u64 = f.parse().map_err(|_| syntax())?;
        ms += v * scale;
    }
    if ms > MAX_MS {
        return Err(PositionError::Range(text.to_owned()));
    }
    Ok(ms)
}

/// `m:ss` (or `h:mm:ss` from one hour), rounded down to the second.
#[must_use]
pub fn format(pos: Frames) -> String {
    let secs = pos.to_nanos().0 / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Whole milliseconds of `pos`, rounded down.
#[must_use]
pub fn millis(pos: Frames) -> u64 {
    pos.to_nanos().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_people_type() {
        assert_eq!(parse_millis("0:00"), Ok(0));
        assert_eq!(parse_millis("1:30"), Ok(90_000));
        assert_eq!(parse_millis("01:30"), Ok(90_000));
        assert_eq!(parse_millis("90"), Ok(90_000));
        assert_eq!(parse_millis("1:02:03"), Ok(3_723_000));
        assert_eq!(parse_millis("0:01.5"), Ok(1_500));
        assert_eq!(parse_millis("0:01.25"), Ok(1_250));
        assert_eq!(parse_millis(" 2:00.001 "), Ok(120_001));
        assert_eq!(parse("0:10"), Ok(Frames(480_000)));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            ":",
            "1:",
            ":30",
            "a:bc",
            "1:2:3:4",
            "-1:00",
            "1:00.",
            "1:00.1234",
            "1.5:00",
            "+5",
        ] {
            assert!(
                matches!(parse_millis(bad), Err(PositionError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(parse_millis("1:60"), Err(PositionError::Range(_))));
        assert!(matches!(
            parse_millis("25:00:00"),
            Err(PositionError::Range(_))
        ));
    }

    #[test]
    fn formats_round_down() {
        assert_eq!(format(Frames(0)), "0:00");
        assert_eq!(format(Frames(47_999)), "0:00");
        assert_eq!(format(Frames(48_000 * 90)), "1:30");
        assert_eq!(format(Frames(48_000 * 3723)), "1:02:03");
        assert_eq!(millis(Frames(48)), 1);
    }

    #[test]
    fn format_then_parse_never_moves_forward() {
        for f in [0u64, 1, 47_999, 48_000, 4_320_000, 172_800_000] {
            let back = parse(&format(Frames(f))).expect("own output parses");
            assert!(back.0 <= f, "{f} -> {back:?}");
            assert!(f - back.0 < 48_000, "{f} -> {back:?}");
        }
    }
}

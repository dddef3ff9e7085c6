//! Writes one benchmark's section of `docs/benchmarks.md` in place, between
//! `<!-- name:begin -->` and `<!-- name:end -->` markers, so each benchmark
//! command refreshes its own figures and leaves the others alone.

use std::path::Path;

/// Replaces (or appends, under `heading`) the section `name` of `path`
/// with `body`.
///
/// # Errors
/// The file cannot be written.
pub fn write_section(path: &Path, name: &str, heading: &str, body: &str) -> std::io::Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{begin}\n{body}{end}");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], block, &old[b + end.len()..]),
        _ => format!("{old}\n## {heading}\n\n{block}\n"),
    };
    std::fs::write(path, new)
}

/// The machine's CPU model from `/proc/cpuinfo` (`unknown CPU` if
/// unreadable), for the "Machine:" line of every benchmark section.
#[must_use]
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("b.md");
        std::fs::write(&p, "# Benchmarks\n").expect("write");
        write_section(&p, "x", "X", "one\n").expect("write");
        write_section(&p, "y", "Y", "two\n").expect("write");
        write_section(&p, "x", "X", "three\n").expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        assert_eq!(
            text,
            "# Benchmarks\n\n## X\n\n<!-- x:begin -->\nthree\n<!-- x:end -->\n\n## Y\n\n<!-- y:begin -->\ntwo\n<!-- y:end -->\n"
        );
    }
}

//! The inject/uninject report, in the seed's format: dotted check lines ending
//! `[ok]` or `[warn] -- …`, then `Summary: N of M YAML document(s) injected`.

use std::fmt::Write;

use kinject_inject::{ObjectReport, ObjectStatus, SkipReason};

/// Total width of a check line (Linkerd's `lineWidth`).
const LINE_WIDTH: usize = 80;

/// `label` padded with dots so that `label…[ok]` is 79 columns wide.
pub fn check_line(label: &str, result: Result<(), String>) -> String {
    let dots = LINE_WIDTH.saturating_sub(label.chars().count() + "[ok]".len() + 1);
    match result {
        Ok(()) => format!("{label}{}[ok]", ".".repeat(dots)),
        Err(why) => format!("{label}{}[warn] -- {why}", ".".repeat(dots)),
    }
}

fn names(reports: &[&ObjectReport]) -> String {
    reports
        .iter()
        .map(|r| r.resource.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(
    out: &mut String,
    label: &str,
    offenders: Vec<&ObjectReport>,
    why: impl FnOnce(&str, usize) -> String,
) {
    let result = if offenders.is_empty() {
        Ok(())
    } else {
        Err(why(&names(&offenders), offenders.len()))
    };
    let _ = writeln!(out, "{}", check_line(label, result));
}

fn skipped_for(r: &ObjectReport, wanted: &[SkipReason]) -> bool {
    matches!(&r.status, ObjectStatus::Skipped { reasons } if reasons.iter().any(|x| wanted.contains(x)))
}

/// The report for one input source after `inject`.
pub fn inject_report(reports: &[ObjectReport]) -> String {
    let mut out = String::from("\n");
    let all: Vec<&ObjectReport> = reports.iter().collect();
    check(
        &mut out,
        "hostNetwork: pods do not use host networking",
        all.iter().copied().filter(|r| r.host_network).collect(),
        |n, _| format!("\"hostNetwork: true\" detected in {n}"),
    );
    check(
        &mut out,
        "sidecar: pods do not have a proxy or initContainer already injected",
        all.iter().copied().filter(|r| r.sidecar).collect(),
        |n, _| format!("known sidecar detected in {n}"),
    );
    check(
        &mut out,
        "disabled: pods are not opted out of injection",
        all.iter()
            .copied()
            .filter(|r| {
                skipped_for(
                    r,
                    &[
                        SkipReason::InjectionDisabledByLabel,
                        SkipReason::InjectionDisabledByAnnotation,
                        SkipReason::InvalidInjectValue,
                    ],
                )
            })
            .collect(),
        |n, _| format!("injection disabled (label or annotation) in {n}"),
    );
    let injected: Vec<&ObjectReport> = all
        .iter()
        .copied()
        .filter(|r| r.status == ObjectStatus::Injected)
        .collect();
    let supported = if injected.is_empty() {
        Err("no supported objects found".to_string())
    } else {
        Ok(())
    };
    let _ = writeln!(
        out,
        "{}",
        check_line("supported: at least one resource injected", supported)
    );
    check(
        &mut out,
        "udp: pod specs do not include UDP ports",
        all.iter().copied().filter(|r| r.udp).collect(),
        |n, count| {
            let verb = if count == 1 { "uses" } else { "use" };
            format!("{n} {verb} \"protocol: UDP\"")
        },
    );
    warnings_block(&mut out, reports);
    let _ = writeln!(
        out,
        "\nSummary: {} of {} YAML document(s) injected",
        injected.len(),
        reports.len()
    );
    for r in injected {
        let _ = writeln!(out, "  {}", r.resource);
    }
    out.push('\n');
    out
}

/// The report for one input source after `uninject`.
pub fn uninject_report(reports: &[ObjectReport]) -> String {
    let mut out = String::from("\n");
    let done: Vec<&ObjectReport> = reports
        .iter()
        .filter(|r| r.status == ObjectStatus::Uninjected)
        .collect();
    warnings_block(&mut out, reports);
    let _ = writeln!(
        out,
        "Summary: {} of {} YAML document(s) uninjected",
        done.len(),
        reports.len()
    );
    for r in done {
        let _ = writeln!(out, "  {}", r.resource);
    }
    out.push('\n');
    out
}

/// Every skip reason per object, then every warning; a warning that several
/// objects share is printed once with all their names.
fn warnings_block(out: &mut String, reports: &[ObjectReport]) {
    for r in reports {
        if let ObjectStatus::Skipped { reasons } = &r.status
            && !reasons.is_empty()
        {
            let why: Vec<&str> = reasons.iter().map(|x| x.describe()).collect();
            let _ = writeln!(out, "skipped: {}: {}", r.resource, why.join("; "));
        }
    }
    let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in reports {
        for w in &r.warnings {
            match grouped.iter_mut().find(|(m, _)| *m == w.message) {
                Some((_, names)) => names.push(&r.resource),
                None => grouped.push((&w.message, vec![&r.resource])),
            }
        }
    }
    for (message, names) in grouped {
        let _ = writeln!(out, "warning: {}: {message}", names.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_lines_are_79_columns() {
        let ok = check_line("udp: pod specs do not include UDP ports", Ok(()));
        assert_eq!(ok.len(), 79);
        assert!(ok.ends_with("....[ok]"));
        let warn = check_line("udp: x", Err("bad".into()));
        assert!(warn.ends_with("[warn] -- bad"));
    }
}

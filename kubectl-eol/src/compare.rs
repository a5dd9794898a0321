//! `kubectl eol compare`: how a shadow switch's candidate compares with the
//! serving phase on live calls: agreement per operation, then the last
//! disagreements side by side.

use crate::access::Target;
use crate::error::Error;
use crate::tree::shorten;
use eol_core::crd::ShadowStatus;
use std::fmt::Write;

/// Prints the comparison of Feature `name`.
pub async fn compare(target: &Target, name: &str) -> Result<(), Error> {
    let feature = target.feature(name).await?;
    let Some(shadow) = feature.status.and_then(|s| s.shadow) else {
        return Err(Error::Refused(format!(
            "Feature {name} in namespace {} has no shadow comparison: one runs during a switch with spec.rollout.strategy Shadow (or Canary)",
            target.namespace
        )));
    };
    print!("{}", comparison(&shadow));
    Ok(())
}

/// The comparison as text.
pub fn comparison(shadow: &ShadowStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "candidate {} ({}), {}{}",
        shadow.candidate,
        shadow.id,
        shadow.state,
        shadow
            .agreement
            .as_ref()
            .map(|a| format!(", agreement {a}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "\n{:<24} {:>8} {:>6} {:>9} {:>7}  AGREEMENT",
        "OPERATION", "SAMPLES", "AGREE", "DISAGREE", "ERRORS"
    );
    for op in &shadow.operations {
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>6} {:>9} {:>7}  {}",
            op.name,
            op.samples,
            op.agree,
            op.disagree,
            op.errors,
            op.agreement.as_deref().unwrap_or("-")
        );
    }
    if shadow.disagreements.is_empty() {
        out.push_str("\nno disagreements\n");
    }
    for d in &shadow.disagreements {
        let _ = writeln!(
            out,
            "\n{} {} at {}: {}",
            d.operation,
            d.verdict.as_str(),
            d.at,
            d.reason
        );
        for (label, value) in [
            ("input", &d.input),
            ("serving", &d.serving),
            ("candidate", &d.candidate),
        ] {
            let shown = value
                .as_deref()
                .map(|v| shorten(v, 200))
                .unwrap_or_else(|| "(redacted or none)".to_owned());
            let _ = writeln!(out, "  {label:<10} {shown}");
        }
    }
    out
}

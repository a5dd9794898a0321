//! `metav1.Condition` lists, kept the way `kubectl wait` and Argo CD expect.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

impl Status {
    /// The spelling the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// Sets condition `type_` in `conditions`. `lastTransitionTime` moves only when
/// the status changes, so watchers can tell how long a state has held.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) {
    let message = message.into();
    let now = Time(Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status.as_str() {
                c.last_transition_time = now;
            }
            c.status = status.as_str().to_owned();
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.as_str().to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation,
            last_transition_time: now,
        }),
    }
}

/// The condition `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when condition `type_` is present with `status`.
pub fn is(conditions: &[Condition], type_: &str, status: Status) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let mut list = Vec::new();
        set(&mut list, "Ready", Status::False, "Waiting", "a", Some(1));
        let first = list[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        set(
            &mut list,
            "Ready",
            Status::False,
            "StillWaiting",
            "b",
            Some(2),
        );
        assert_eq!(list[0].last_transition_time, first);
        assert_eq!(list[0].reason, "StillWaiting");
        assert_eq!(list[0].observed_generation, Some(2));
        set(&mut list, "Ready", Status::True, "Ready", "c", Some(2));
        assert_ne!(list[0].last_transition_time, first);
        assert!(is(&list, "Ready", Status::True));
        assert_eq!(list.len(), 1);
    }
}

//! Completion inside kubectl's own (kubectl 1.26 and later): for `kubectl eol
//! ...<TAB>`, kubectl runs `kubectl_complete-eol ARGS... PARTIAL` from the
//! PATH and reads Cobra's completion protocol: a candidate per line
//! (`value<TAB>description`), then `:DIRECTIVE`. That script (shipped beside
//! the binary) runs `kubectl-eol __complete ARGS... PARTIAL`, answered here:
//! commands and flags from the clap definition, phases from `PhaseArg`, and
//! Feature, operation, FeatureRun and namespace names read from the cluster
//! as the user (nothing, silently, when that fails: a completion never prints
//! errors into the user's command line).

use crate::access::Target;
use crate::args::Cli;
use clap::CommandFactory;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

/// The hidden command kubectl's completion script calls.
pub const COMMAND: &str = "__complete";

/// Cobra's `ShellCompDirectiveNoFileComp`: no file names as a fallback.
const NO_FILE_COMPLETION: u8 = 4;

/// What the word being completed is.
#[derive(Debug, PartialEq, Eq)]
enum Slot {
    /// A command (or, with flags, one of the current command's flags).
    Commands(Vec<(String, String)>),
    /// Flags of the current command.
    Flags(Vec<(String, String)>),
    /// Fixed values (a flag's possible values).
    Values(Vec<(String, String)>),
    /// A Feature's name.
    Feature,
    /// An operation of Feature `0`.
    Operation(String),
    /// A FeatureRun's name.
    Run,
    /// A namespace.
    Namespace,
    /// Nothing to offer.
    Nothing,
}

/// Where the words leave the command line, and the `-n`/`--context` given.
#[derive(Debug, Default)]
struct Parsed {
    slot: Option<Slot>,
    namespace: Option<String>,
    context: Option<String>,
}

/// Prints the candidates for `words` (the last one is being typed).
pub async fn complete(words: &[String]) {
    let (partial, before) = match words.split_last() {
        Some((last, before)) => (last.as_str(), before),
        None => ("", &[][..]),
    };
    let parsed = parse(before, partial);
    let candidates = match parsed.slot.unwrap_or(Slot::Nothing) {
        Slot::Commands(c) | Slot::Flags(c) | Slot::Values(c) => c,
        Slot::Nothing => Vec::new(),
        cluster => from_cluster(cluster, parsed.namespace, parsed.context).await,
    };
    for (value, about) in candidates.iter().filter(|(v, _)| v.starts_with(partial)) {
        if about.is_empty() {
            println!("{value}");
        } else {
            println!("{value}\t{about}");
        }
    }
    println!(":{NO_FILE_COMPLETION}");
}

/// Walks `before` through the command tree and says what `partial` is.
fn parse(before: &[String], partial: &str) -> Parsed {
    let root = Cli::command();
    let mut command = &root;
    let mut parsed = Parsed::default();
    let mut positionals: Vec<String> = Vec::new();
    let mut words = before.iter().peekable();
    // The flag whose value `partial` is, if any.
    let mut pending: Option<clap::Arg> = None;
    while let Some(word) = words.next() {
        if let Some(flag) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) {
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            let Some(arg) = find_flag(&root, command, name) else {
                continue;
            };
            if !takes_value(&arg) {
                continue;
            }
            let value = match inline {
                Some(value) => Some(value),
                None => match words.next() {
                    Some(value) => Some(value.clone()),
                    None => {
                        pending = Some(arg.clone());
                        None
                    }
                },
            };
            if let Some(value) = value {
                match arg.get_id().as_str() {
                    "namespace" => parsed.namespace = Some(value),
                    "context" => parsed.context = Some(value),
                    _ => {}
                }
            }
            continue;
        }
        if let Some(sub) = command
            .get_subcommands()
            .find(|s| s.get_name() == word || s.get_all_aliases().any(|a| a == word))
        {
            command = sub;
            positionals.clear();
            continue;
        }
        positionals.push(word.clone());
    }
    parsed.slot = Some(if let Some(arg) = pending {
        match arg.get_id().as_str() {
            "namespace" => Slot::Namespace,
            "operation" => positionals
                .first()
                .map_or(Slot::Nothing, |f| Slot::Operation(f.clone())),
            _ => values(&arg),
        }
    } else if partial.starts_with('-') {
        Slot::Flags(flags(&root, command))
    } else if command.has_subcommands() {
        Slot::Commands(
            command
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .map(|s| (s.get_name().to_owned(), about(s.get_about())))
                .collect(),
        )
    } else {
        let position = positionals.len();
        match command
            .get_positionals()
            .nth(position)
            .map(|a| a.get_id().as_str().to_owned())
            .as_deref()
        {
            Some("name") => Slot::Feature,
            Some("operation") => Slot::Operation(positionals[0].clone()),
            Some("run") => Slot::Run,
            _ => Slot::Nothing,
        }
    });
    parsed
}

fn find_flag(root: &clap::Command, command: &clap::Command, name: &str) -> Option<clap::Arg> {
    let matches = |a: &&clap::Arg| {
        a.get_long() == Some(name) || (name.len() == 1 && a.get_short() == name.chars().next())
    };
    command
        .get_arguments()
        .find(matches)
        .or_else(|| root.get_arguments().find(matches))
        .cloned()
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_num_args().is_none_or(|n| n.takes_values())
        && !matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue
                | clap::ArgAction::SetFalse
                | clap::ArgAction::Count
                | clap::ArgAction::Help
                | clap::ArgAction::HelpShort
                | clap::ArgAction::HelpLong
                | clap::ArgAction::Version
        )
}

fn flags(root: &clap::Command, command: &clap::Command) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = command
        .get_arguments()
        .chain(root.get_arguments().filter(|a| a.is_global_set()))
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| Some((format!("--{}", a.get_long()?), about(a.get_help()))))
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn values(arg: &clap::Arg) -> Slot {
    let values: Vec<(String, String)> = arg
        .get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| (v.get_name().to_owned(), about(v.get_help())))
        .collect();
    if values.is_empty() {
        Slot::Nothing
    } else {
        Slot::Values(values)
    }
}

fn about(text: Option<&clap::builder::StyledStr>) -> String {
    text.map(|t| t.to_string().lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Names read from the cluster as the user; none when that fails.
async fn from_cluster(
    slot: Slot,
    namespace: Option<String>,
    context: Option<String>,
) -> Vec<(String, String)> {
    let Ok(target) = Target::connect(context.as_deref(), namespace.as_deref()).await else {
        return Vec::new();
    };
    let list = ListParams::default();
    match slot {
        Slot::Feature => target.features().list(&list).await.map_or_else(
            |_| Vec::new(),
            |l| {
                l.items
                    .iter()
                    .map(|f| {
                        let phase = f.status.as_ref().and_then(|s| s.phase);
                        (
                            f.name_any(),
                            phase.map(|p| p.to_string()).unwrap_or_default(),
                        )
                    })
                    .collect()
            },
        ),
        Slot::Operation(feature) => target.features().get(&feature).await.map_or_else(
            |_| Vec::new(),
            |f| {
                f.status
                    .map(|s| s.operation_phases.into_iter().collect())
                    .unwrap_or_default()
            },
        ),
        Slot::Run => target.runs().list(&list).await.map_or_else(
            |_| Vec::new(),
            |l| {
                l.items
                    .iter()
                    .map(|r| (r.name_any(), format!("of {}", r.spec.feature_ref)))
                    .collect()
            },
        ),
        Slot::Namespace => Api::<Namespace>::all(target.client.clone())
            .list(&list)
            .await
            .map_or_else(
                |_| Vec::new(),
                |l| {
                    l.items
                        .iter()
                        .map(|n| (n.name_any(), String::new()))
                        .collect()
                },
            ),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(line: &str) -> Slot {
        let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
        let partial = words.pop().unwrap_or_default();
        parse(&words, &partial).slot.unwrap()
    }

    fn names(slot: Slot) -> Vec<String> {
        match slot {
            Slot::Commands(c) | Slot::Flags(c) | Slot::Values(c) => {
                c.into_iter().map(|(v, _)| v).collect()
            }
            other => panic!("not a fixed list: {other:?}"),
        }
    }

    #[test]
    fn commands_flags_and_phases_come_from_the_definition() {
        let top = names(slot(""));
        for command in [
            "get",
            "switch",
            "run",
            "logs",
            "compare",
            "completions",
            "man",
        ] {
            assert!(top.contains(&command.to_owned()), "{command} in {top:?}");
        }
        assert_eq!(names(slot("get ")), ["feature"]);
        assert_eq!(
            names(slot("switch inventory --to ")),
            ["prototyping", "implementation", "hybrid"]
        );
        let flags = names(slot("switch inventory --"));
        for flag in ["--to", "--operation", "--watch", "--namespace", "--context"] {
            assert!(flags.contains(&flag.to_owned()), "{flag} in {flags:?}");
        }
    }

    #[test]
    fn names_come_from_the_cluster_in_the_namespace_given() {
        assert_eq!(slot("get feature "), Slot::Feature);
        assert_eq!(slot("get ft "), Slot::Feature, "an alias");
        assert_eq!(slot("-n shop switch "), Slot::Feature);
        assert_eq!(slot("run inventory "), Slot::Operation("inventory".into()));
        assert_eq!(
            slot("switch inventory --operation "),
            Slot::Operation("inventory".into())
        );
        assert_eq!(slot("logs "), Slot::Run);
        assert_eq!(slot("compare -n "), Slot::Namespace);
        assert_eq!(
            slot("get feature inventory "),
            Slot::Nothing,
            "one name only"
        );
        let parsed = parse(
            &[
                "--namespace=shop".into(),
                "--context".into(),
                "prod".into(),
                "get".into(),
                "feature".into(),
            ],
            "",
        );
        assert_eq!(
            (parsed.namespace.as_deref(), parsed.context.as_deref()),
            (Some("shop"), Some("prod"))
        );
    }
}

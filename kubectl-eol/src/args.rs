//! The command line: `kubectl eol <command>`, each command with examples.

use clap::{Args, Parser, Subcommand, ValueEnum};
use eol_core::Phase;

/// kubectl eol: EOL Features and FeatureRuns from the command line, as your kubeconfig's user.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-eol",
    bin_name = "kubectl eol",
    version,
    after_help = "Examples:
  kubectl eol get feature inventory --watch
  kubectl eol switch inventory --to implementation
  kubectl eol run inventory add_stock --input '{\"sku\": \"A-1\", \"quantity\": 3}' --wait
  kubectl eol logs inventory-add-stock-x7k2p
  kubectl eol compare inventory

Install: put `kubectl-eol` on your PATH (kubectl finds plugins there), or `kubectl krew install --manifest=kubectl-eol/krew/eol.yaml --archive=...`."
)]
pub struct Cli {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true, env = "EOL_NAMESPACE")]
    pub namespace: Option<String>,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a Feature as a tree: phases, switch progress, configurations, pods and last runs.
    #[command(after_help = "Examples:
  kubectl eol get feature inventory
  kubectl eol get feature inventory --watch     # redraws on every change; Ctrl-C to stop")]
    Get {
        /// What to show.
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Switch a Feature, or one of its operations, to another phase (a rolling update).
    #[command(after_help = "Examples:
  kubectl eol switch inventory --to implementation
  kubectl eol switch support --to prototyping --operation classify_ticket
  kubectl eol switch inventory --to implementation --watch   # then follow the switch live

A whole-feature switch sets spec.phase. An operation switch rewrites the Feature's source (inline, or
the ConfigMap its configMapKeyRef names) so that operation has the new phase, and sets spec.phase to
hybrid. The operator rolls the new configuration out and completes the switch only when its tests pass.")]
    Switch(SwitchArgs),
    /// Run one operation of a Feature in a pod of its own (a FeatureRun).
    #[command(after_help = "Examples:
  kubectl eol run inventory add_stock --input '{\"sku\": \"A-1\", \"quantity\": 3}'
  kubectl eol run inventory add_stock --input @input.json --wait
  kubectl eol run inventory --tests --wait      # run the Feature's tests")]
    Run(RunArgs),
    /// Print the logs of a FeatureRun's pod.
    #[command(after_help = "Examples:
  kubectl eol logs inventory-add-stock-x7k2p
  kubectl eol logs inventory-add-stock-x7k2p --follow")]
    Logs {
        /// The FeatureRun.
        run: String,
        /// Keep printing new lines until the pod ends (waiting first, up to 2 minutes, for a new
        /// run's pod to start).
        #[arg(short, long)]
        follow: bool,
    },
    /// Print a shell completion script for `kubectl-eol`.
    #[command(after_help = "Examples:
  kubectl-eol completions bash > /etc/bash_completion.d/kubectl-eol
  kubectl-eol completions zsh > \"${fpath[1]}/_kubectl-eol\"")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (kubectl-eol.1 and one per command) into a directory.
    #[command(after_help = "Examples:
  kubectl-eol man /usr/local/share/man/man1 && man kubectl-eol-get")]
    Man {
        /// Where to write the pages.
        dir: std::path::PathBuf,
    },
    /// Show how a shadow switch's candidate compares with the serving phase.
    #[command(after_help = "Examples:
  kubectl eol compare inventory")]
    Compare {
        /// The Feature.
        name: String,
    },
}

/// What `get` shows.
#[derive(Subcommand, Debug)]
pub enum GetWhat {
    /// One Feature as a tree.
    #[command(visible_aliases = ["features", "ft"])]
    Feature {
        /// The Feature.
        name: String,
        /// Redraw whenever anything in the tree changes, until Ctrl-C.
        #[arg(short, long)]
        watch: bool,
    },
}

/// `switch`'s arguments.
#[derive(Args, Debug)]
pub struct SwitchArgs {
    /// The Feature.
    pub name: String,
    /// The phase to switch to.
    #[arg(long)]
    pub to: PhaseArg,
    /// Switch only this operation (to prototyping or implementation).
    #[arg(long)]
    pub operation: Option<String>,
    /// Follow the switch as a live tree until it completes or fails.
    #[arg(short, long)]
    pub watch: bool,
}

/// `run`'s arguments.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The Feature.
    pub name: String,
    /// The operation to run.
    #[arg(required_unless_present = "tests", conflicts_with = "tests")]
    pub operation: Option<String>,
    /// The operation's input: a JSON object, or @FILE to read it from a file.
    #[arg(long, requires = "operation")]
    pub input: Option<String>,
    /// Run the Feature's tests instead of one operation.
    #[arg(long)]
    pub tests: bool,
    /// The phase to run in (default: the Feature's).
    #[arg(long)]
    pub phase: Option<PhaseArg>,
    /// Wait for the run to end, print its output and exit 1 when it did not succeed.
    #[arg(short, long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// A phase, as the command line spells it (listed in `--help` and completions).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseArg {
    /// An LLM runs each operation.
    Prototyping,
    /// Each operation runs its Python code.
    Implementation,
    /// Each operation runs in the phase its `Phase:` line says.
    Hybrid,
}

impl From<PhaseArg> for Phase {
    fn from(arg: PhaseArg) -> Self {
        match arg {
            PhaseArg::Prototyping => Phase::Prototyping,
            PhaseArg::Implementation => Phase::Implementation,
            PhaseArg::Hybrid => Phase::Hybrid,
        }
    }
}

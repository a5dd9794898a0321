//! `kubectl eol`: a kubectl plugin for EOL. kubectl runs any `kubectl-<name>`
//! on the PATH as `kubectl <name>`; this one shows a Feature as a live tree,
//! switches phases, starts runs and reads their logs and shadow comparisons,
//! all as the kubeconfig's user, with that user's RBAC.

mod access;
mod args;
mod compare;
mod complete;
mod docs;
mod error;
mod get;
mod logs;
mod run;
mod snapshot;
mod switch;
mod tree;

use access::Target;
use args::{Cli, Command, GetWhat};
use clap::Parser;
use error::Error;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // kubectl's completion (through `kubectl_complete-eol`), outside clap: its
    // words are whatever the user typed so far, flags and all.
    let words: Vec<String> = std::env::args().skip(1).collect();
    if words.first().map(String::as_str) == Some(complete::COMMAND) {
        complete::complete(&words[1..]).await;
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Error> {
    // These need no cluster.
    match &cli.command {
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Man { dir } => return docs::man(dir),
        _ => {}
    }
    let target = Target::connect(cli.context.as_deref(), cli.namespace.as_deref()).await?;
    match &cli.command {
        Command::Get {
            what: GetWhat::Feature { name, watch },
        } => {
            if *watch {
                get::watch(&target, name, |_| None::<()>).await?;
                Ok(())
            } else {
                get::once(&target, name).await
            }
        }
        Command::Switch(args) => {
            let generation = switch::switch(&target, args).await?;
            let what = match &args.operation {
                Some(op) => format!("operation {op} of Feature {}", args.name),
                None => format!("Feature {}", args.name),
            };
            println!(
                "switching {what} to {} (generation {generation})",
                eol_core::Phase::from(args.to)
            );
            if !args.watch {
                return Ok(());
            }
            match get::watch(&target, &args.name, |f| switch::ended(f, generation)).await? {
                Some(ended) if ended.succeeded => {
                    println!("switch ended: {}", ended.summary);
                    Ok(())
                }
                Some(ended) => Err(Error::Failed(format!("switch ended: {}", ended.summary))),
                None => Ok(()),
            }
        }
        Command::Run(args) => run::run(&target, args).await,
        Command::Logs { run, follow } => logs::logs(&target, run, *follow).await,
        Command::Compare { name } => compare::compare(&target, name).await,
        Command::Completions { .. } | Command::Man { .. } => Ok(()),
    }
}

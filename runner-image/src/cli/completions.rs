//! `eol completions`: a shell completion script on stdout; `eol man`: man
//! pages for `eol` and each of its commands.

use super::Failure;
use super::args::Cli;
use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

pub(super) fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Failure> {
    clap_complete::generate(shell, &mut Cli::command(), "eol", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Writes `eol.1` and `eol-COMMAND.1` for each command into `dir`.
pub(super) fn man(dir: &Path) -> Result<ExitCode, Failure> {
    let failed = |what: &str, e: std::io::Error| {
        Failure::usage(format!("cannot write {what} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| failed("the man pages", e))?;
    let eol = Cli::command();
    let mut pages = vec![("eol".to_owned(), eol.clone())];
    for command in eol.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("eol-{}", command.get_name());
        // The page's title and synopsis name the command as typed: `eol run`.
        let titled = command
            .clone()
            .name(name.clone())
            .bin_name(format!("eol {}", command.get_name()));
        pages.push((name, titled));
    }
    for (name, command) in &pages {
        let file = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone())
            .render(&mut page)
            .and_then(|()| std::fs::write(&file, page))
            .map_err(|e| failed(&format!("{name}.1"), e))?;
    }
    println!("wrote {} man pages to {}", pages.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

//! `completions` and `man`: the plugin's own shell completions and man pages.

use crate::args::Cli;
use crate::error::Error;
use clap::CommandFactory;
use std::path::Path;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "kubectl-eol",
        &mut std::io::stdout(),
    );
    Ok(())
}

/// Writes `kubectl-eol.1` and `kubectl-eol-COMMAND.1` for each command into `dir`.
pub fn man(dir: &Path) -> Result<(), Error> {
    let failed = |what: &str, e: std::io::Error| {
        Error::Refused(format!("cannot write {what} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| failed("the man pages", e))?;
    let cli = Cli::command();
    let mut pages = vec![("kubectl-eol".to_owned(), cli.clone())];
    for command in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("kubectl-eol-{}", command.get_name());
        // The page's synopsis names the command as typed: `kubectl eol get`.
        let titled = command
            .clone()
            .name(name.clone())
            .bin_name(format!("kubectl eol {}", command.get_name()));
        pages.push((name, titled));
    }
    for (name, command) in &pages {
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone())
            .render(&mut page)
            .and_then(|()| std::fs::write(dir.join(format!("{name}.1")), page))
            .map_err(|e| failed(&format!("{name}.1"), e))?;
    }
    println!("wrote {} man pages to {}", pages.len(), dir.display());
    Ok(())
}

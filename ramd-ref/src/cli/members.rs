//! `ramctrl members list|add|remove`: consensus membership over `/api/v1/members`.

use std::fmt::Write as _;

use clap::Subcommand;

use ramd_ref::api::members::{AddMemberRequest, MembersView};

use super::{CliError, Ctx, confirm, print_json, report};

/// `ramctrl members …`.
#[derive(Subcommand, Debug, Clone)]
pub enum MembersCmd {
    /// Consensus voters and learners.
    List,
    /// Add a member: start its agent (without itself in `peers`), then run this.
    Add {
        /// Member name (its `name` in its own configuration).
        name: String,
        /// Numeric consensus id: unique, never reused.
        #[arg(long)]
        raft_id: u64,
        /// Base URL of its agent API, e.g. https://10.0.0.4:8008.
        #[arg(long)]
        api_url: String,
    },
    /// Remove a member (not the primary, not the last voter). Stop its agent first.
    Remove {
        /// Member name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
        /// Remove it although its agent still reports (a host being decommissioned while
        /// its agent runs); that agent then stops taking part.
        #[arg(long)]
        even_if_running: bool,
    },
}

/// Runs one `members` command.
pub async fn run(cmd: MembersCmd, ctx: &Ctx) -> Result<(), CliError> {
    match cmd {
        MembersCmd::List => {
            let m = ctx.client.members().await?;
            if ctx.json {
                return print_json(&m);
            }
            print!("{}", table(&m));
            Ok(())
        }
        MembersCmd::Add {
            name,
            raft_id,
            api_url,
        } => {
            let req = AddMemberRequest {
                name,
                raft_id,
                api_url,
            };
            req.validate().map_err(CliError::Usage)?;
            report(ctx, &ctx.client.add_member(&req).await?)
        }
        MembersCmd::Remove {
            name,
            force,
            even_if_running,
        } => {
            confirm(&format!("Remove {name} from the consensus members?"), force)?;
            report(
                ctx,
                &ctx.client.remove_member(&name, even_if_running).await?,
            )
        }
    }
}

/// The members as a table, the consensus leader marked with `*`.
pub fn table(m: &MembersView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<20} {:>8}  {:<8} API", "MEMBER", "RAFT ID", "ROLE");
    let rows = m
        .voters
        .iter()
        .map(|p| (p, "voter"))
        .chain(m.learners.iter().map(|p| (p, "learner")));
    for (p, role) in rows {
        let mark = if m.leader.as_deref() == Some(p.name.as_str()) {
            "*"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:<20} {:>8}  {:<8} {}",
            format!("{}{mark}", p.name),
            p.raft_id,
            role,
            p.api_url
        );
    }
    let _ = writeln!(out, "(term {}; * consensus leader)", m.term);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramd_ref::api::members::PeerView;

    #[test]
    fn table_marks_the_leader() {
        let p = |name: &str, id| PeerView {
            name: name.into(),
            raft_id: id,
            api_url: format!("https://h{id}:8008"),
        };
        let m = MembersView {
            voters: vec![p("n1", 1), p("n2", 2)],
            learners: vec![p("n4", 4)],
            leader: Some("n2".into()),
            term: 7,
        };
        let t = table(&m);
        assert!(t.contains("n2*"), "{t}");
        assert!(t.contains("learner"), "{t}");
        assert!(t.contains("term 7"), "{t}");
    }
}

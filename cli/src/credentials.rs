//! Who the `cirrus` commands act as: a token (`--token` / `CIRRUS_TOKEN`), or a password
//! login with OpenStack's variables (`OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`), as
//! written by `cirrus up` into `<data-dir>/openrc`. The identity service is the API's own
//! (`<server>/identity/v3`).

use std::sync::Arc;

use cirrus_client::Client;
use cirrus_client::auth::{PasswordLogin, StaticToken, TokenSource};
use serde_json::Value;

/// Credential options shared by every command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CredentialArgs {
    /// A token to send as it is (skips the login).
    #[arg(long, global = true, env = "CIRRUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// User to log in as.
    #[arg(long = "os-username", global = true, env = "OS_USERNAME")]
    pub username: Option<String>,
    /// That user's password.
    #[arg(
        long = "os-password",
        global = true,
        env = "OS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Project the token is scoped to.
    #[arg(long = "os-project-name", global = true, env = "OS_PROJECT_NAME")]
    pub project_name: Option<String>,
}

impl CredentialArgs {
    /// The token source these options describe for the API at `server`; `None` when no
    /// credentials were given (every call but health checks will then get `401`).
    pub fn token_source(&self, server: &str) -> Option<Arc<dyn TokenSource>> {
        if let Some(token) = &self.token {
            return Some(Arc::new(StaticToken(token.clone())));
        }
        match (&self.username, &self.password) {
            (Some(user), Some(password)) => Some(PasswordLogin::new(
                server,
                user.clone(),
                password.clone(),
                self.project_name.clone(),
            )),
            _ => None,
        }
    }
}

/// The id of the project `project` names: a project of the caller's with that id or
/// Keystone name (`GET /identity/v3/auth/projects`), else — for admins, who may address any
/// project — the project of that name (`GET /identity/v3/projects?name=`), else `project`
/// itself, taken as an id. So `-p` accepts both, as `openstack` takes a project's name or id.
pub async fn project_id(client: &Client, project: &str) -> String {
    if client.auth.is_none() {
        return project.to_string();
    }
    let urls = [
        client.url(&["identity", "v3", "auth", "projects"]),
        client
            .url(&["identity", "v3", "projects"])
            .map(|url| format!("{url}?name={}", cirrus_client::encode_query_value(project))),
    ];
    for url in urls.into_iter().flatten() {
        // Refused (not an admin) or unreachable: the command's own call will say why.
        let Ok(answer) = client.get_json::<Value>(&url).await else {
            continue;
        };
        let projects = answer["projects"].as_array().cloned().unwrap_or_default();
        if projects.iter().any(|p| p["id"] == project) {
            return project.to_string();
        }
        if let Some(id) = projects
            .iter()
            .find(|p| p["name"] == project)
            .and_then(|p| p["id"].as_str())
        {
            return id.to_string();
        }
    }
    project.to_string()
}

//! `…/servers/{id}/ips[/{network}]`: a server's addresses by network, as Nova lists them.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The server's addresses by network name, Nova's plain form.
async fn addresses_of(state: &ApiState, server: &Server) -> Result<Value, Fault> {
    let related = Related::load(state, Some(project_of(server)))
        .await
        .map_err(api)?;
    Ok(server_view::plain_addresses(&server_view::addresses(
        server, &related,
    )))
}

/// `GET /servers/{id}/ips`.
pub(super) async fn ips(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Read).await?;
    let addresses = addresses_of(&state, &server).await?;
    Ok(ok(StatusCode::OK, json!({ "addresses": addresses })))
}

/// `GET /servers/{id}/ips/{network}`.
pub(super) async fn ips_of_network(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, network)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let server = find_server(&state, &caller, &id, Action::Read).await?;
    let addresses = addresses_of(&state, &server).await?;
    match addresses.get(&network) {
        Some(list) => Ok(ok(StatusCode::OK, json!({ network: list }))),
        None => Err(Fault::not_found(
            D,
            "Instance is not a member of specified network",
        )),
    }
}

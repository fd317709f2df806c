//! The admin rules of issue #11 on a real control plane and Postgres (and, for allow-lists,
//! a real gateway fed by the config stream): the permission table decides every write for
//! every role, PATCH touches only what it names, an empty allow-list allows nothing,
//! tokens expire and are revoked, 422s name every field, lists under unknown orgs are 404
//! and idempotency keys are scoped to route and org.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_control_plane::auth::rbac::{Action, Role, allows};
use tollgate_tests::control::{ControlPlane, cli, token_in};
use tollgate_tests::env::TestDb;

use crate::config_push::{Plane, call, until_ready, until_status};
use crate::http;

async fn send(method: Method, url: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = tollgate_tests::control::authorize(http().request(method, url), token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// POSTs as the platform admin and returns the created object's id.
async fn create(cp: &ControlPlane, path: &str, body: Value) -> String {
    let response = send(Method::POST, &cp.api(path), &cp.admin_token, Some(body)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "POST {path}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// A user with `role` in `org` (in `team`, if given) and a token for it.
async fn person(
    db: &TestDb,
    cp: &ControlPlane,
    org: &str,
    email: &str,
    role: &str,
    team: Option<&str>,
) -> String {
    let mut body = json!({"email": email, "role": role});
    if let Some(team) = team {
        body["team_id"] = json!(team);
    }
    create(cp, &format!("/orgs/{org}/members"), body).await;
    token_in(
        &cli(db, &["tokens", "create", "--email", email])
            .await
            .unwrap(),
    )
    .unwrap()
}

/// One org `a` with team `t` (and model `m` in the catalog) and one person per role.
struct World {
    db: TestDb,
    cp: ControlPlane,
    a: String,
    t: String,
    /// `(role, token)`; the platform admin's is the control plane's own.
    people: Vec<(Role, String)>,
    /// The email of each of `people`, in the same order.
    emails: Vec<String>,
}

async fn world() -> World {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    create(&cp, "/models", json!({"name": "m", "aliases": ["m-alias"]})).await;
    create(&cp, "/models", json!({"name": "n", "aliases": []})).await;
    let a = create(&cp, "/orgs", json!({"slug": "a", "name": "A"})).await;
    let t = create(
        &cp,
        &format!("/orgs/{a}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await;
    let mut people = vec![(Role::PlatformAdmin, cp.admin_token.clone())];
    let mut emails = vec!["admin@example.com".to_owned()];
    for (role, email, row, team) in [
        (Role::OrgAdmin, "oa@a.com", "org_admin", None),
        (Role::OrgMember, "om@a.com", "member", None),
        (Role::OrgViewer, "ov@a.com", "viewer", None),
        (Role::TeamAdmin, "ta@a.com", "team_admin", Some(t.as_str())),
        (Role::TeamMember, "tm@a.com", "member", Some(t.as_str())),
        (Role::TeamViewer, "tv@a.com", "viewer", Some(t.as_str())),
    ] {
        people.push((role, person(&db, &cp, &a, email, row, team).await));
        emails.push(email.to_owned());
    }
    World {
        db,
        cp,
        a,
        t,
        people,
        emails,
    }
}

/// Fresh objects for one role's pass over the write routes, so that what one role
/// deletes or changes never decides another's answer.
struct Fixture {
    ids: Vec<(&'static str, String)>,
    /// For `DELETE /orgs/{org_id}`: an org nobody but the platform admin is in.
    spare_org: String,
    n: usize,
}

async fn fixture(w: &World, n: usize) -> Fixture {
    let (cp, a, t) = (&w.cp, &w.a, &w.t);
    let project = create(
        cp,
        &format!("/orgs/{a}/projects"),
        json!({"team_id": t, "slug": format!("scope-{n}"), "name": "Scope"}),
    )
    .await;
    let patched_project = create(
        cp,
        &format!("/orgs/{a}/projects"),
        json!({"team_id": t, "slug": format!("p-{n}"), "name": "P"}),
    )
    .await;
    let key = create(cp, &format!("/orgs/{a}/keys"), json!({"team_id": t})).await;
    let budget = create(
        cp,
        &format!("/orgs/{a}/budgets"),
        json!({"scope_kind": "project", "scope_id": project, "amount_micros": 1000, "period": "month"}),
    )
    .await;
    let rate_limit = create(
        cp,
        &format!("/orgs/{a}/rate-limits"),
        json!({"scope_kind": "project", "scope_id": project, "rpm": 10}),
    )
    .await;
    let freeze = create(
        cp,
        &format!("/orgs/{a}/freezes"),
        json!({"scope_kind": "key", "scope_id": key, "reason": "fixture"}),
    )
    .await;
    let webhook = create(
        cp,
        &format!("/orgs/{a}/webhooks"),
        json!({"url": "https://hooks.a.example/tollgate"}),
    )
    .await;
    let spare_team = create(
        cp,
        &format!("/orgs/{a}/teams"),
        json!({"slug": format!("spare-{n}"), "name": "Spare"}),
    )
    .await;
    let membership = create(
        cp,
        &format!("/orgs/{a}/members"),
        json!({"email": format!("gone-{n}@a.com"), "role": "viewer"}),
    )
    .await;
    let spare_org = create(
        cp,
        "/orgs",
        json!({"slug": format!("spare-{n}"), "name": "Spare"}),
    )
    .await;
    cli(
        &w.db,
        &["tokens", "create", "--email", &format!("gone-{n}@a.com")],
    )
    .await
    .unwrap();
    let token_rows = cli(
        &w.db,
        &["tokens", "list", "--email", &format!("gone-{n}@a.com")],
    )
    .await
    .unwrap();
    let token = token_rows.split_whitespace().next().unwrap().to_owned();
    // Sign-in objects: an org connection to map from, a mapping, a session of gone-n.
    let connection = send(
        Method::PUT,
        &cp.api(&format!("/orgs/{a}/idp-connection")),
        &cp.admin_token,
        Some(json!({"issuer": format!("https://idp-fixture-{n}.a.example"), "client_id": "tg", "client_secret": "s"})),
    )
    .await;
    assert_eq!(connection.status(), 200);
    let mapping = create(
        cp,
        &format!("/orgs/{a}/group-mappings"),
        json!({"value": format!("g-{n}"), "role": "viewer"}),
    )
    .await;
    let gone = format!("gone-{n}@a.com");
    tollgate_tests::control::session_caller(&w.db, &gone)
        .await
        .unwrap();
    let pool = w.db.pool().await.unwrap();
    let (session, user): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT s.id, u.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = $1",
    )
    .bind(&gone)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    Fixture {
        ids: vec![
            ("{project_id}", patched_project),
            ("{key_id}", key),
            ("{budget_id}", budget),
            ("{rate_limit_id}", rate_limit),
            ("{freeze_id}", freeze),
            ("{webhook_id}", webhook),
            ("{team_id}", spare_team),
            ("{membership_id}", membership),
            ("{token_id}", token),
            ("{mapping_id}", mapping),
            ("{session_id}", session.to_string()),
            ("{user_id}", user.to_string()),
            ("{domain}", format!("d{n}.a.example")),
            ("{scope_project}", project),
        ],
        spare_org,
        n,
    }
}

impl Fixture {
    fn id(&self, name: &str) -> &str {
        &self.ids.iter().find(|(k, _)| *k == name).unwrap().1
    }
}

/// What a write route needs and a body that succeeds for a role that may: the action,
/// whether it lives under `/orgs/{org_id}` of org `a`, and the concrete path and body.
/// `None` for a route this test was not taught (it fails, so no route is skipped).
fn case(
    w: &World,
    f: &Fixture,
    method: &Method,
    path: &str,
) -> Option<(Action, bool, String, Option<Value>)> {
    let n = f.n;
    let (a, t) = (&w.a, &w.t);
    let scope = f.id("{scope_project}");
    let org_route = path.starts_with("/api/v1/orgs/{org_id}");
    let (action, body) = match (method.as_str(), path.trim_start_matches("/api/v1")) {
        ("POST", "/orgs") => (
            Action::ManagePlatform,
            Some(json!({"slug": format!("new-{n}"), "name": "N"})),
        ),
        ("PATCH", "/orgs/{org_id}") => (Action::AdminOrg, Some(json!({"name": "A"}))),
        ("DELETE", "/orgs/{org_id}") => (Action::ManagePlatform, None),
        ("POST", "/orgs/{org_id}/teams") => (
            Action::AdminOrg,
            Some(json!({"slug": format!("new-{n}"), "name": "N"})),
        ),
        // PATCH acts on team `t` itself (where team roles reach), DELETE on a spare team.
        ("PATCH", "/orgs/{org_id}/teams/{team_id}") => {
            (Action::AdminTeam, Some(json!({"name": "T"})))
        }
        ("DELETE", "/orgs/{org_id}/teams/{team_id}") => (Action::AdminOrg, None),
        ("POST", "/orgs/{org_id}/members") => (
            Action::AdminOrg,
            Some(json!({"email": format!("new-{n}@a.com"), "role": "viewer"})),
        ),
        ("DELETE", "/orgs/{org_id}/members/{membership_id}") => (Action::AdminOrg, None),
        ("POST", "/orgs/{org_id}/keys") => (Action::MintKey, Some(json!({"team_id": t}))),
        // The fixture key is a team key (no owner): changing it takes a team admin.
        ("PATCH", "/orgs/{org_id}/keys/{key_id}") => {
            (Action::AdminTeam, Some(json!({"name": "k"})))
        }
        ("POST", "/orgs/{org_id}/keys/{key_id}/rotate") => (Action::AdminTeam, Some(json!({}))),
        ("POST", "/orgs/{org_id}/keys/{key_id}/revoke") => (Action::AdminTeam, None),
        ("POST", "/orgs/{org_id}/projects") => (
            Action::AdminTeam,
            Some(json!({"team_id": t, "slug": format!("new-{n}"), "name": "N"})),
        ),
        ("PATCH", "/orgs/{org_id}/projects/{project_id}") => {
            (Action::AdminTeam, Some(json!({"name": "P2"})))
        }
        ("DELETE", "/orgs/{org_id}/projects/{project_id}") => (Action::AdminTeam, None),
        ("POST", "/orgs/{org_id}/budgets") => (
            Action::AdminTeam,
            Some(
                json!({"scope_kind": "project", "scope_id": scope, "amount_micros": 500, "period": "day"}),
            ),
        ),
        ("PATCH", "/orgs/{org_id}/budgets/{budget_id}") => {
            (Action::AdminTeam, Some(json!({"amount_micros": 900})))
        }
        // Removing a cap is for org admins, even where team admins set it.
        ("DELETE", "/orgs/{org_id}/budgets/{budget_id}") => (Action::AdminOrg, None),
        ("POST", "/orgs/{org_id}/rate-limits") => (
            Action::AdminTeam,
            Some(json!({"scope_kind": "project", "scope_id": scope, "rpm": 5})),
        ),
        ("PATCH", "/orgs/{org_id}/rate-limits/{rate_limit_id}") => {
            (Action::AdminTeam, Some(json!({"rpm": 20})))
        }
        ("DELETE", "/orgs/{org_id}/rate-limits/{rate_limit_id}") => (Action::AdminTeam, None),
        // Freezing follows the scope as budgets and limits do: the project is team t's.
        ("POST", "/orgs/{org_id}/freezes") => (
            Action::AdminTeam,
            Some(json!({"scope_kind": "project", "scope_id": scope, "reason": "incident"})),
        ),
        ("POST", "/orgs/{org_id}/freezes/{freeze_id}/lift") => (Action::AdminTeam, None),
        ("POST", "/orgs/{org_id}/webhooks") => (
            Action::AdminOrg,
            Some(json!({"url": "https://hooks.a.example/new"})),
        ),
        ("DELETE", "/orgs/{org_id}/webhooks/{webhook_id}") => (Action::AdminOrg, None),
        // Someone else's token: platform admins only.
        ("POST", "/tokens/{token_id}/revoke") => (Action::ManagePlatform, None),
        ("PUT", "/orgs/{org_id}/idp-connection") => (
            Action::AdminOrg,
            Some(
                json!({"issuer": format!("https://idp-{n}.a.example"), "client_id": "tg", "client_secret": "s"}),
            ),
        ),
        ("DELETE", "/orgs/{org_id}/idp-connection") => (Action::AdminOrg, None),
        // Which IdP may speak for an email domain is the platform's to say.
        ("POST", "/orgs/{org_id}/domains") => (
            Action::ManagePlatform,
            Some(json!({"domain": format!("d{n}.a.example")})),
        ),
        ("DELETE", "/orgs/{org_id}/domains/{domain}") => (Action::ManagePlatform, None),
        ("POST", "/orgs/{org_id}/group-mappings") => (
            Action::AdminOrg,
            Some(json!({"value": format!("new-{n}"), "role": "viewer"})),
        ),
        ("DELETE", "/orgs/{org_id}/group-mappings/{mapping_id}") => (Action::AdminOrg, None),
        ("POST", "/orgs/{org_id}/sessions/{session_id}/end") => (Action::AdminOrg, None),
        // Someone else's session: platform admins only.
        ("POST", "/sessions/{session_id}/end") => (Action::ManagePlatform, None),
        ("POST", "/users/{user_id}/deactivate") => (
            Action::ManagePlatform,
            Some(json!({"keys": "hand_to_team"})),
        ),
        // Minted from a session by anyone with one; never with a token (checked apart).
        ("POST", "/tokens") => (Action::ReadModels, Some(json!({"name": "mine"}))),
        ("DELETE", "/gateways/credentials/{credential_id}") => (Action::ManagePlatform, None),
        (_, p)
            if ["/regions", "/providers", "/models", "/deployments"]
                .iter()
                .any(|prefix| p.starts_with(prefix)) =>
        {
            (Action::ManagePlatform, Some(json!({})))
        }
        _ => return None,
    };
    let org = if *method == Method::DELETE && path == "/api/v1/orgs/{org_id}" {
        f.spare_org.as_str()
    } else {
        a.as_str()
    };
    let mut concrete = path.replace("{org_id}", org);
    if path == "/api/v1/orgs/{org_id}/teams/{team_id}" && *method == Method::PATCH {
        concrete = concrete.replace("{team_id}", t);
    }
    for (name, id) in &f.ids {
        concrete = concrete.replace(name, id);
    }
    // Catalog routes name objects that need not exist: what is checked is the role.
    for name in [
        "{region_id}",
        "{provider_id}",
        "{model_id}",
        "{deployment_id}",
        "{credential_id}",
    ] {
        concrete = concrete.replace(name, "01900000-0000-7000-8000-000000000000");
    }
    assert!(
        !concrete.contains('{'),
        "{path}: teach this test the path parameter"
    );
    Some((action, org_route, concrete, body))
}

#[tokio::test]
async fn the_permission_table_decides_every_write_for_every_role() {
    let w = world().await;
    permission_table(&w, &w.people).await;
}

/// The same with browser sessions (cookie and CSRF token) instead of bearer tokens.
#[tokio::test]
async fn the_permission_table_decides_every_write_for_every_role_with_sessions() {
    let w = world().await;
    let mut people = Vec::new();
    for ((role, _), email) in w.people.iter().zip(&w.emails) {
        let caller = tollgate_tests::control::session_caller(&w.db, email)
            .await
            .unwrap();
        people.push((*role, caller));
    }
    permission_table(&w, &people).await;
}

async fn permission_table(w: &World, people: &[(Role, String)]) {
    let doc: Value = http()
        .get(format!("{}/api/openapi.json", w.cp.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut writes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if method != Method::GET {
                writes.push((method, path.clone()));
            }
        }
    }
    // Deletes last, so each role's changes still find their object.
    writes.sort_by_key(|(method, path)| (*method == Method::DELETE, path.clone()));
    assert!(writes.len() >= 35, "only {} write routes", writes.len());
    let mut checked = 0;
    for (n, (role, token)) in people.iter().enumerate() {
        let f = fixture(w, n).await;
        for (method, path) in &writes {
            let (action, org_route, url, body) = case(w, &f, method, path)
                .unwrap_or_else(|| panic!("{method} {path}: teach this test the new write route"));
            let response = send(method.clone(), &format!("{}{url}", w.cp.url), token, body).await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            let what = format!("{method} {path} as {role:?} ({action:?}): {status} {text}");
            if *method == Method::POST && path == "/api/v1/tokens" {
                let session = token.starts_with(tollgate_tests::control::SESSION_CALLER);
                let expected = if session { 201 } else { 403 };
                assert_eq!(
                    status, expected,
                    "personal tokens come from sessions: {what}"
                );
            } else if allows(*role, action) {
                assert!(status != 401 && status != 403, "allowed, refused: {what}");
                if org_route {
                    assert_ne!(status, 404, "allowed, refused: {what}");
                }
            } else if org_route && url.contains(&w.a) {
                assert_eq!(status, 403, "denied within its org: {what}");
            } else if org_route
                || path.starts_with("/api/v1/tokens")
                || path.starts_with("/api/v1/sessions")
            {
                assert_eq!(status, 404, "denied, and must not learn it exists: {what}");
            } else {
                assert_eq!(status, 403, "denied: {what}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, writes.len() * 7);
}

#[tokio::test]
async fn viewers_and_org_wide_members_cannot_mint_but_team_members_can() {
    let w = world().await;
    let keys = w.cp.api(&format!("/orgs/{}/keys", w.a));
    let body = json!({"team_id": w.t});
    for (role, token) in &w.people {
        let status = send(Method::POST, &keys, token, Some(body.clone()))
            .await
            .status()
            .as_u16();
        let expected = match role {
            Role::OrgViewer | Role::TeamViewer | Role::OrgMember => 403,
            _ => 201,
        };
        assert_eq!(status, expected, "{role:?} mints a key in team t");
    }
    // A team member's key is its own; an org-wide member reads no team.
    let (_, member) = w
        .people
        .iter()
        .find(|(r, _)| *r == Role::OrgMember)
        .unwrap();
    let team = w.cp.api(&format!("/orgs/{}/teams/{}", w.a, w.t));
    assert_eq!(send(Method::GET, &team, member, None).await.status(), 403);
}

#[tokio::test]
async fn patch_changes_only_what_it_names_and_team_admins_stay_within_the_allow_list() {
    let w = world().await;
    let team = w.cp.api(&format!("/orgs/{}/teams/{}", w.a, w.t));
    let admin = &w.cp.admin_token;
    let set = send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"allowed_models": ["m"]})),
    )
    .await;
    assert_eq!(set.status(), 200);
    let renamed: Value = send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"name": "Renamed"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(renamed["name"], "Renamed");
    assert_eq!(
        renamed["allowed_models"],
        json!(["m"]),
        "a rename keeps the allow-list"
    );

    let (_, team_admin) = w
        .people
        .iter()
        .find(|(r, _)| *r == Role::TeamAdmin)
        .unwrap();
    for widen in [
        json!({"allowed_models": null}),
        json!({"allowed_models": ["m", "n"]}),
    ] {
        let refused = send(Method::PATCH, &team, team_admin, Some(widen.clone())).await;
        assert_eq!(refused.status(), 403, "a team admin widens with {widen}");
    }
    let renamed = send(
        Method::PATCH,
        &team,
        team_admin,
        Some(json!({"name": "Mine"})),
    )
    .await;
    assert_eq!(renamed.status(), 200, "a team admin renames its team");
    // Within the team's list: by name or alias, never beyond it.
    let keys = w.cp.api(&format!("/orgs/{}/keys", w.a));
    let outside = send(
        Method::POST,
        &keys,
        team_admin,
        Some(json!({"team_id": w.t, "allowed_models": ["n"]})),
    )
    .await;
    assert_eq!(outside.status(), 422);
    let inside = send(
        Method::POST,
        &keys,
        team_admin,
        Some(json!({"team_id": w.t, "allowed_models": ["m-alias"]})),
    )
    .await;
    assert_eq!(inside.status(), 201);
    let projects = w.cp.api(&format!("/orgs/{}/projects", w.a));
    let outside = send(
        Method::POST,
        &projects,
        team_admin,
        Some(json!({"team_id": w.t, "slug": "x", "name": "X", "allowed_models": ["n"]})),
    )
    .await;
    assert_eq!(outside.status(), 422);

    // Not set and empty are different things, and both survive a rename.
    let empty: Value = send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"allowed_models": []})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(empty["allowed_models"], json!([]));
    let cleared: Value = send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"allowed_models": null})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(cleared["allowed_models"], Value::Null);
}

#[tokio::test]
async fn an_empty_allow_list_refuses_every_model_and_an_alias_entry_allows_its_model() {
    let plane = Plane::start().await;
    let pool = plane.db.pool().await.unwrap();
    sqlx::query("UPDATE models SET aliases = '{m-alias}' WHERE name = 'm'")
        .execute(&pool)
        .await
        .unwrap();
    let token = plane.enrollment_token("eu").await;
    let gateway = plane
        .gateway(
            "eu",
            "gw-rules",
            plane.cp.grpc.as_deref().unwrap(),
            &token,
            "lkg.bin",
        )
        .await;
    until_ready(&gateway).await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;

    let team = plane
        .cp
        .api(&format!("/orgs/{}/teams/{}", plane.org, plane.team));
    let admin = &plane.cp.admin_token;
    // An alias in the list stands for its model, by either name.
    let aliased = send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"allowed_models": ["m-alias"]})),
    )
    .await;
    assert_eq!(aliased.status(), 200);
    until_status(&gateway, &key, "strict", 403).await;
    assert_eq!(call(&gateway, &key, "m").await.status(), 200);
    assert_eq!(call(&gateway, &key, "m-alias").await.status(), 200);

    let emptied = send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"allowed_models": []})),
    )
    .await;
    assert_eq!(emptied.status(), 200);
    until_status(&gateway, &key, "m", 403).await;
    for model in ["m", "m-alias", "strict", "slow"] {
        assert_eq!(call(&gateway, &key, model).await.status(), 403, "{model}");
    }
    // Renaming the team leaves it empty: nothing is widened by an edit.
    send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"name": "Renamed"})),
    )
    .await;
    let cleared = send(
        Method::PATCH,
        &team,
        admin,
        Some(json!({"allowed_models": null})),
    )
    .await;
    assert_eq!(cleared.status(), 200);
    until_status(&gateway, &key, "strict", 200).await;
}

#[tokio::test]
async fn tokens_expire_and_can_be_revoked_and_memberships_removed() {
    let w = world().await;
    let (_, viewer) = w
        .people
        .iter()
        .find(|(r, _)| *r == Role::OrgViewer)
        .unwrap();
    let orgs = w.cp.api("/orgs");
    assert_eq!(send(Method::GET, &orgs, viewer, None).await.status(), 200);
    // Every token carries an expiry: 90 days unless the minter says otherwise.
    let mine: Value = send(Method::GET, &w.cp.api("/tokens"), viewer, None)
        .await
        .json()
        .await
        .unwrap();
    let mine = mine.as_array().unwrap();
    assert_eq!(
        mine.len(),
        1,
        "a viewer lists only its own tokens: {mine:?}"
    );
    let expires = time::OffsetDateTime::parse(
        mine[0]["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!((89..=90).contains(&days), "{days} days");

    let revoked = send(
        Method::POST,
        &w.cp.api(&format!(
            "/tokens/{}/revoke",
            mine[0]["id"].as_str().unwrap()
        )),
        viewer,
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let refused = send(Method::GET, &orgs, viewer, None).await;
    assert_eq!(
        refused.status(),
        401,
        "a revoked token is refused on the next request"
    );
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );

    // An expired token is refused the same way.
    let short = token_in(
        &cli(
            &w.db,
            &[
                "tokens",
                "create",
                "--email",
                "ov@a.com",
                "--expires-days",
                "1",
            ],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(send(Method::GET, &orgs, &short, None).await.status(), 200);
    let pool = w.db.pool().await.unwrap();
    sqlx::query(
        "UPDATE admin_tokens SET expires_at = now() - interval '1 second' WHERE prefix = $1",
    )
    .bind(&short[..10])
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(send(Method::GET, &orgs, &short, None).await.status(), 401);

    // The CLI lists and revokes too, and removing a membership ends its role.
    let (_, member) = w
        .people
        .iter()
        .find(|(r, _)| *r == Role::TeamMember)
        .unwrap();
    let members: Value = send(
        Method::GET,
        &w.cp.api(&format!("/orgs/{}/members", w.a)),
        &w.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let users: Value = send(Method::GET, &w.cp.api("/tokens"), &w.cp.admin_token, None)
        .await
        .json()
        .await
        .unwrap();
    let tm_user = users
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["email"] == "tm@a.com")
        .unwrap()["user_id"]
        .clone();
    let membership = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == tm_user)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = w.cp.api(&format!("/orgs/{}/keys", w.a));
    let removed = send(
        Method::DELETE,
        &w.cp.api(&format!("/orgs/{}/members/{membership}", w.a)),
        &w.cp.admin_token,
        None,
    )
    .await;
    assert_eq!(removed.status(), 204);
    let after = send(Method::POST, &keys, member, Some(json!({"team_id": w.t}))).await;
    assert_eq!(after.status(), 404, "no role left in the org");

    let listed = cli(&w.db, &["tokens", "list", "--email", "tm@a.com"])
        .await
        .unwrap();
    let id = listed.split_whitespace().next().unwrap();
    assert!(listed.contains("active"), "{listed}");
    cli(&w.db, &["tokens", "revoke", "--id", id]).await.unwrap();
    assert_eq!(send(Method::GET, &orgs, member, None).await.status(), 401);
    let listed = cli(&w.db, &["tokens", "list", "--email", "tm@a.com"])
        .await
        .unwrap();
    assert!(listed.contains("revoked"), "{listed}");

    let audit: Value = send(Method::GET, &w.cp.api("/audit"), &w.cp.admin_token, None)
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["object_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(kinds.contains(&("update", "admin_token")), "{kinds:?}");
    assert!(kinds.contains(&("delete", "membership")), "{kinds:?}");
}

#[tokio::test]
async fn a_422_lists_every_bad_field_in_plain_words() {
    let w = world().await;
    let response = send(
        Method::POST,
        &w.cp.api(&format!("/orgs/{}/keys", w.a)),
        &w.cp.admin_token,
        Some(json!({"project_id": 7, "name": ["x"], "expires_at": "tomorrow", "colour": "red"})),
    )
    .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["colour", "expires_at", "name", "project_id", "team_id"],
        "{problem}"
    );
    let text = problem.to_string();
    for words in [
        "missing",
        "must be a UUID",
        "must be a string",
        "RFC 3339",
        "unknown field",
    ] {
        assert!(text.contains(words), "{words}: {problem}");
    }
}

#[tokio::test]
async fn lists_under_an_unknown_org_are_404() {
    let w = world().await;
    let nowhere = "01900000-0000-7000-8000-000000000000";
    for list in [
        "teams",
        "members",
        "keys",
        "projects",
        "budgets",
        "rate-limits",
        "webhooks",
        "freezes",
    ] {
        let status = send(
            Method::GET,
            &w.cp.api(&format!("/orgs/{nowhere}/{list}")),
            &w.cp.admin_token,
            None,
        )
        .await
        .status();
        assert_eq!(status, 404, "GET /orgs/<unknown>/{list} as platform admin");
    }
}

#[tokio::test]
async fn an_idempotency_key_reused_in_another_org_is_a_new_request() {
    let w = world().await;
    let b = create(&w.cp, "/orgs", json!({"slug": "b", "name": "B"})).await;
    let post = |org: String| {
        http()
            .post(w.cp.api(&format!("/orgs/{org}/teams")))
            .bearer_auth(&w.cp.admin_token)
            .header("idempotency-key", "same-key")
            .json(&json!({"slug": "dup", "name": "Dup"}))
            .send()
    };
    let in_a: Value = post(w.a.clone()).await.unwrap().json().await.unwrap();
    let in_b = post(b.clone()).await.unwrap();
    assert_eq!(in_b.status(), 201);
    let in_b: Value = in_b.json().await.unwrap();
    assert_eq!(
        in_b["org_id"],
        b.as_str(),
        "created in b, not replayed from a"
    );
    assert_ne!(in_b["id"], in_a["id"]);
    // Within one org and route the key still replays.
    let again: Value = post(b.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], in_b["id"]);
}

//! Authentication and authorization for the stand-in Kubernetes API server, as kube-apiserver
//! does them with bearer tokens and the RBAC authorizer:
//!
//! - the token of `Authorization: Bearer TOKEN` names a user; a request without one, or with a
//!   token no user has, gets 401 Unauthorized;
//! - a request (verb, API group, resource, namespace, name) is allowed if a rule matches it in a
//!   Role bound to the user in the request's namespace by a RoleBinding, or in a ClusterRole
//!   bound by a RoleBinding in that namespace or by a ClusterRoleBinding; a rule matches when
//!   its `apiGroups`, `resources` and `verbs` hold the request's (or `*`) and its
//!   `resourceNames` is empty or holds the name. Anything else gets 403 Forbidden, with the
//!   message the API server writes;
//! - the decision comes before the resource is looked up: a request that is not allowed gets
//!   403 whether or not the object exists.
//!
//! [`Rbac::default`] starts where a cluster kubeadm sets up does: [`ADMIN_TOKEN`] is
//! `kubernetes-admin`'s, a member of group `system:masters`, which a ClusterRoleBinding binds to
//! the ClusterRole `cluster-admin` (every verb on every resource).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Map, Value};

/// The token of the kubeconfig [`KubeApi::kubeconfig`](super::kube_api::KubeApi::kubeconfig)
/// writes: a cluster admin's.
pub const ADMIN_TOKEN: &str = "stand-in-token";

const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// An authenticated user: a name and the groups it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// The user a token authenticator reports for `name`: in `system:authenticated` and, for a
    /// service account (`system:serviceaccount:NAMESPACE:NAME`), in `system:serviceaccounts`
    /// and `system:serviceaccounts:NAMESPACE`.
    pub fn named(name: &str) -> Self {
        let mut groups = Vec::new();
        if let Some((namespace, _)) = name
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
            .and_then(|rest| rest.split_once(':'))
        {
            groups.push("system:serviceaccounts".to_owned());
            groups.push(format!("system:serviceaccounts:{namespace}"));
        }
        groups.push("system:authenticated".to_owned());
        User {
            name: name.to_owned(),
            groups,
        }
    }

    /// The user of the service account `name` in `namespace`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        User::named(&format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"))
    }
}

/// What a request asks to do, as the authorizer sees it: a namespaced resource request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    /// The object's name; `None` on a collection (`list`, `create`).
    pub name: Option<&'a str>,
}

/// What the path of a request names: a resource in an API group and a namespace, and maybe
/// one object of it.
#[derive(Debug, Clone, Copy)]
pub struct Path<'a> {
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
    /// `None` when the path is the collection.
    pub name: Option<&'a str>,
}

/// The response refusing the request (401 or 403, with a `metav1.Status`), if `rbac` refuses
/// it; `None` when it is allowed, or when no RBAC is configured.
pub fn refusal(
    rbac: Option<&Rbac>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    path: Path<'_>,
) -> Option<(StatusCode, Value)> {
    let verb = verb(method, path.name.is_some(), uri.query());
    let request = Request {
        verb: &verb,
        api_group: path.group,
        resource: path.resource,
        namespace: path.namespace,
        name: path.name,
    };
    rbac?.check(headers, &request).err()
}

/// The verb of a request, as kube-apiserver derives it from the method and whether the path
/// names an object (`item`): `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
/// `deletecollection`, else the method in lower case.
pub fn verb(method: &Method, item: bool, query: Option<&str>) -> String {
    let watch = query.is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    let verb = match (method.as_str(), item) {
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => return other.to_ascii_lowercase(),
    };
    verb.to_owned()
}

/// Tokens, roles and bindings.
pub struct Rbac {
    tokens: BTreeMap<String, User>,
    /// (namespace, name) → Role.
    roles: BTreeMap<(String, String), Role>,
    cluster_roles: BTreeMap<String, ClusterRole>,
    /// (namespace, name) → RoleBinding.
    role_bindings: BTreeMap<(String, String), RoleBinding>,
    cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
}

impl Default for Rbac {
    /// [`ADMIN_TOKEN`] for a cluster admin, and nothing else.
    fn default() -> Self {
        let mut rbac = Rbac::empty();
        rbac.token(
            ADMIN_TOKEN,
            User {
                name: "kubernetes-admin".to_owned(),
                groups: strings(&["system:masters", "system:authenticated"]),
            },
        );
        let name = "cluster-admin".to_owned();
        let metadata = ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        };
        rbac.cluster_roles.insert(
            name.clone(),
            ClusterRole {
                metadata: metadata.clone(),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(strings(&["*"])),
                    resources: Some(strings(&["*"])),
                    verbs: strings(&["*"]),
                    ..PolicyRule::default()
                }]),
                ..ClusterRole::default()
            },
        );
        rbac.cluster_role_bindings.insert(
            name.clone(),
            ClusterRoleBinding {
                metadata,
                role_ref: RoleRef {
                    api_group: RBAC_GROUP.to_owned(),
                    kind: "ClusterRole".to_owned(),
                    name,
                },
                subjects: Some(vec![Subject {
                    api_group: Some(RBAC_GROUP.to_owned()),
                    kind: "Group".to_owned(),
                    name: "system:masters".to_owned(),
                    namespace: None,
                }]),
            },
        );
        rbac
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

impl Rbac {
    /// No token, no role, no binding: every request is unauthorized.
    pub fn empty() -> Self {
        Rbac {
            tokens: BTreeMap::new(),
            roles: BTreeMap::new(),
            cluster_roles: BTreeMap::new(),
            role_bindings: BTreeMap::new(),
            cluster_role_bindings: BTreeMap::new(),
        }
    }

    /// Requests bearing `token` are made by `user`.
    pub fn token(&mut self, token: &str, user: User) {
        self.tokens.insert(token.to_owned(), user);
    }

    /// Creates or replaces a Role, ClusterRole, RoleBinding or ClusterRoleBinding, as
    /// `kubectl apply` would; refuses any other kind, and a namespaced object without a
    /// namespace.
    pub fn apply(&mut self, object: &Value) -> Result<(), String> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or_else(|| format!("a {kind} without metadata.name"))?
            .to_owned();
        let namespaced = || {
            object["metadata"]["namespace"]
                .as_str()
                .map(|namespace| (namespace.to_owned(), name.clone()))
                .ok_or_else(|| format!("{kind} {name:?} has no metadata.namespace"))
        };
        let typed = |error: serde_json::Error| format!("{kind} {name:?}: {error}");
        match kind {
            "Role" => {
                let role = serde_json::from_value(object.clone()).map_err(typed)?;
                self.roles.insert(namespaced()?, role);
            }
            "RoleBinding" => {
                let binding = serde_json::from_value(object.clone()).map_err(typed)?;
                self.role_bindings.insert(namespaced()?, binding);
            }
            "ClusterRole" => {
                let role = serde_json::from_value(object.clone()).map_err(typed)?;
                self.cluster_roles.insert(name, role);
            }
            "ClusterRoleBinding" => {
                let binding = serde_json::from_value(object.clone()).map_err(typed)?;
                self.cluster_role_bindings.insert(name, binding);
            }
            other => return Err(format!("{other:?} is not an RBAC kind")),
        }
        Ok(())
    }

    /// [`Rbac::apply`] on each document of a YAML stream.
    pub fn apply_yaml(&mut self, yaml: &str) -> Result<(), String> {
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let object: Value =
                serde::Deserialize::deserialize(document).map_err(|e| e.to_string())?;
            if !object.is_null() {
                self.apply(&object)?;
            }
        }
        Ok(())
    }

    /// The user of the request's bearer token, if it has one that names a user.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<&User> {
        let value = headers.get("authorization")?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        self.tokens.get(token.trim())
    }

    /// Whether a rule bound to `user` allows `request`.
    pub fn allows(&self, user: &User, request: &Request<'_>) -> bool {
        let cluster_wide = self
            .cluster_role_bindings
            .values()
            .filter(|binding| binding.role_ref.kind == "ClusterRole")
            .filter(|binding| applies_to(binding.subjects.as_deref(), user, ""))
            .filter_map(|binding| {
                let role = self.cluster_roles.get(&binding.role_ref.name)?;
                role.rules.as_deref()
            });
        let in_namespace = self
            .role_bindings
            .iter()
            .filter(|((namespace, _), _)| namespace == request.namespace)
            .filter(|(_, binding)| applies_to(binding.subjects.as_deref(), user, request.namespace))
            .filter_map(|(_, binding)| self.bound_rules(request.namespace, binding));
        cluster_wide
            .chain(in_namespace)
            .flatten()
            .any(|rule| rule_allows(rule, request))
    }

    /// The rules of the Role or ClusterRole a RoleBinding in `namespace` refers to.
    fn bound_rules(&self, namespace: &str, binding: &RoleBinding) -> Option<&[PolicyRule]> {
        let name = &binding.role_ref.name;
        match binding.role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_owned(), name.clone()))?
                .rules
                .as_deref(),
            "ClusterRole" => self.cluster_roles.get(name)?.rules.as_deref(),
            _ => None,
        }
    }

    /// Authenticates and authorizes a request: `Err` holds the response the API server gives
    /// a request it refuses (401 or 403, with a `metav1.Status`).
    pub fn check(
        &self,
        headers: &HeaderMap,
        request: &Request<'_>,
    ) -> Result<(), (StatusCode, Value)> {
        let Some(user) = self.authenticate(headers) else {
            return Err(unauthorized());
        };
        if self.allows(user, request) {
            Ok(())
        } else {
            Err(forbidden(user, request))
        }
    }
}

/// Whether one of `subjects` is `user`; a ServiceAccount subject without a namespace is in
/// the binding's `namespace`.
fn applies_to(subjects: Option<&[Subject]>, user: &User, namespace: &str) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|subject| match subject.kind.as_str() {
            "User" => subject.name == user.name,
            "Group" => user.groups.contains(&subject.name),
            "ServiceAccount" => {
                let namespace = subject
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(namespace);
                !namespace.is_empty()
                    && user.name == format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{}", subject.name)
            }
            _ => false,
        })
}

/// The RBAC authorizer's `RuleAllows` for a resource request.
fn rule_allows(rule: &PolicyRule, request: &Request<'_>) -> bool {
    let holds = |values: &[String], value: &str| values.iter().any(|v| v == "*" || v == value);
    let resource_names = rule.resource_names.as_deref().unwrap_or_default();
    holds(&rule.verbs, request.verb)
        && holds(
            rule.api_groups.as_deref().unwrap_or_default(),
            request.api_group,
        )
        && holds(
            rule.resources.as_deref().unwrap_or_default(),
            request.resource,
        )
        && (resource_names.is_empty()
            || request
                .name
                .is_some_and(|name| resource_names.iter().any(|n| n == name)))
}

fn unauthorized() -> (StatusCode, Value) {
    (
        StatusCode::UNAUTHORIZED,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }),
    )
}

/// The API server's Forbidden status: `envoyfilters.networking.istio.io "NAME" is forbidden:
/// User "U" cannot patch resource "envoyfilters" in API group "networking.istio.io" in the
/// namespace "NS"`.
fn forbidden(user: &User, request: &Request<'_>) -> (StatusCode, Value) {
    let Request {
        verb,
        api_group,
        resource,
        namespace,
        name,
    } = request;
    let qualified = if api_group.is_empty() {
        (*resource).to_owned()
    } else {
        format!("{resource}.{api_group}")
    };
    let subject = match name {
        Some(name) => format!("{qualified} {name:?}"),
        None => qualified,
    };
    // As metav1.StatusDetails writes them: empty fields left out.
    let mut details = Map::new();
    if let Some(name) = name {
        details.insert("name".into(), json!(name));
    }
    if !api_group.is_empty() {
        details.insert("group".into(), json!(api_group));
    }
    details.insert("kind".into(), json!(resource));
    (
        StatusCode::FORBIDDEN,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "{subject} is forbidden: User {:?} cannot {verb} resource {resource:?} in API group {api_group:?} in the namespace {namespace:?}",
                user.name
            ),
            "reason": "Forbidden",
            "details": details,
            "code": 403,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARYCTL: &str = "system:serviceaccount:canary-system:canaryctl";

    /// A narrow Role for canaryctl in `bookinfo`, a wide one for `ops` in `shop`, a ClusterRole
    /// bound only in `staging`, and one bound to nobody.
    const OBJECTS: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: canaryctl, namespace: bookinfo }
rules:
- apiGroups: [networking.istio.io]
  resources: [envoyfilters]
  resourceNames: [reviews-canary]
  verbs: [get, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: canaryctl, namespace: bookinfo }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: canaryctl }
subjects: [{ kind: ServiceAccount, name: canaryctl, namespace: canary-system }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: everything, namespace: shop }
rules:
- { apiGroups: ["*"], resources: ["*"], verbs: ["*"] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: ops, namespace: shop }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: everything }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: ops }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: istio-reader }
rules:
- apiGroups: [extensions.istio.io, networking.istio.io]
  resources: ["*"]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: readers, namespace: staging }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: istio-reader }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:serviceaccounts:canary-system" }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: unbound }
rules:
- { apiGroups: ["*"], resources: ["*"], verbs: ["*"] }
"#;

    fn rbac() -> Rbac {
        let mut rbac = Rbac::default();
        rbac.apply_yaml(OBJECTS).expect("the objects apply");
        rbac
    }

    fn request<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        namespace: &'a str,
        name: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            verb,
            api_group: group,
            resource,
            namespace,
            name,
        }
    }

    #[test]
    fn the_authorizer_allows_only_what_a_bound_rule_matches() {
        let rbac = rbac();
        let net = "networking.istio.io";
        let ext = "extensions.istio.io";
        let ef = Some("reviews-canary");
        #[rustfmt::skip]
        let cases: &[(&str, Request<'_>, bool, &str)] = &[
            (CANARYCTL, request("get", net, "envoyfilters", "bookinfo", ef), true, "granted"),
            (CANARYCTL, request("patch", net, "envoyfilters", "bookinfo", ef), true, "granted"),
            (CANARYCTL, request("update", net, "envoyfilters", "bookinfo", ef), false, "wrong verb"),
            (CANARYCTL, request("delete", net, "envoyfilters", "bookinfo", ef), false, "wrong verb"),
            (CANARYCTL, request("get", net, "envoyfilters", "bookinfo", Some("other")), false, "another name"),
            (CANARYCTL, request("list", net, "envoyfilters", "bookinfo", None), false, "resourceNames: no list"),
            (CANARYCTL, request("create", net, "envoyfilters", "bookinfo", None), false, "resourceNames: no create"),
            (CANARYCTL, request("get", net, "envoyfilters", "shop", ef), false, "wrong namespace"),
            (CANARYCTL, request("get", ext, "wasmplugins", "bookinfo", ef), false, "wrong resource and group"),
            (CANARYCTL, request("get", ext, "envoyfilters", "bookinfo", ef), false, "wrong group"),
            (CANARYCTL, request("get", net, "virtualservices", "bookinfo", ef), false, "wrong resource"),
            ("ops", request("delete", "apps", "deployments", "shop", Some("web")), true, "* on everything"),
            ("ops", request("list", "", "secrets", "shop", None), true, "* on the core group too"),
            ("ops", request("get", "", "secrets", "bookinfo", Some("x")), false, "* only in shop"),
            ("dev", request("get", "", "secrets", "shop", Some("x")), false, "not bound"),
            (CANARYCTL, request("list", ext, "wasmplugins", "staging", None), true, "ClusterRole bound in staging, to the group"),
            (CANARYCTL, request("patch", ext, "wasmplugins", "staging", Some("w")), false, "the ClusterRole has no patch"),
            (CANARYCTL, request("get", ext, "wasmplugins", "shop", Some("w")), false, "ClusterRole bound only in staging"),
            ("system:serviceaccount:other:canaryctl", request("get", net, "envoyfilters", "bookinfo", ef), false, "same name, other namespace"),
            ("system:serviceaccount:canary-system:other", request("get", net, "envoyfilters", "bookinfo", ef), false, "another service account"),
            (CANARYCTL, request("delete", "", "namespaces", "kube-system", Some("x")), false, "ClusterRole unbound"),
        ];
        for (user, request, want, why) in cases {
            assert_eq!(
                rbac.allows(&User::named(user), request),
                *want,
                "{why}: {user} {request:?}"
            );
        }
        let admin = rbac
            .authenticate(&bearer(ADMIN_TOKEN))
            .expect("the admin token");
        assert!(rbac.allows(
            admin,
            &request("deletecollection", "", "pods", "kube-system", None)
        ));
    }

    #[test]
    fn bindings_follow_the_rbac_subject_and_role_ref_rules() {
        let mut rbac = Rbac::empty();
        rbac.apply_yaml(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: reader, namespace: shop }
rules: [{ apiGroups: [""], resources: [configmaps], verbs: [get] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: reader, namespace: shop }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader }
subjects: [{ kind: ServiceAccount, name: app }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: borrowed, namespace: bookinfo }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader }
subjects: [{ kind: ServiceAccount, name: app, namespace: shop }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: pod-reader }
rules: [{ apiGroups: [""], resources: [pods], verbs: [get] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: pod-reader }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader }
subjects: [{ kind: ServiceAccount, name: app, namespace: shop }]
"#,
        )
        .expect("the objects apply");
        let app = User::service_account("shop", "app");
        let get = |resource, namespace| request("get", "", resource, namespace, Some("x"));
        assert!(
            rbac.allows(&app, &get("configmaps", "shop")),
            "a ServiceAccount subject without a namespace is in the binding's"
        );
        assert!(
            !rbac.allows(&app, &get("configmaps", "bookinfo")),
            "a RoleBinding's Role is the one in the binding's namespace"
        );
        assert!(
            rbac.allows(&app, &get("pods", "bookinfo")),
            "a ClusterRoleBinding applies in every namespace"
        );
        assert!(!rbac.allows(&User::named("app"), &get("pods", "shop")));
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {token}").parse().expect("a header value");
        headers.insert("authorization", value);
        headers
    }

    #[test]
    fn tokens_name_users_and_refusals_are_the_api_servers() {
        let mut rbac = rbac();
        rbac.token("t1", User::named(CANARYCTL));
        let patch = request(
            "patch",
            "networking.istio.io",
            "envoyfilters",
            "bookinfo",
            Some("reviews-canary"),
        );
        assert_eq!(rbac.check(&bearer("t1"), &patch), Ok(()));

        let (code, status) = rbac
            .check(&bearer("t2"), &patch)
            .expect_err("an unknown token");
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            "authorization",
            "Basic dDE6".parse().expect("a header value"),
        );
        for headers in [HeaderMap::new(), basic] {
            assert_eq!(
                rbac.check(&headers, &patch).map_err(|(code, _)| code),
                Err(StatusCode::UNAUTHORIZED),
                "{headers:?}"
            );
        }

        let other = Request {
            name: Some("other"),
            ..patch.clone()
        };
        let (code, status) = rbac.check(&bearer("t1"), &other).expect_err("not granted");
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(
            status,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "envoyfilters.networking.istio.io \"other\" is forbidden: User \
                            \"system:serviceaccount:canary-system:canaryctl\" cannot patch \
                            resource \"envoyfilters\" in API group \"networking.istio.io\" in \
                            the namespace \"bookinfo\"",
                "reason": "Forbidden",
                "details": {"name": "other", "group": "networking.istio.io", "kind": "envoyfilters"},
                "code": 403,
            })
        );
        let list = request("list", "", "secrets", "bookinfo", None);
        let (_, status) = rbac.check(&bearer("t1"), &list).expect_err("not granted");
        assert_eq!(
            status["message"],
            "secrets is forbidden: User \"system:serviceaccount:canary-system:canaryctl\" \
             cannot list resource \"secrets\" in API group \"\" in the namespace \"bookinfo\""
        );
        assert_eq!(status["details"], json!({"kind": "secrets"}));
    }

    #[test]
    fn verbs_come_from_the_method_and_the_path() {
        let cases = [
            (Method::GET, true, None, "get"),
            (Method::GET, false, None, "list"),
            (
                Method::GET,
                false,
                Some("watch=true&resourceVersion=1"),
                "watch",
            ),
            (
                Method::GET,
                false,
                Some("labelSelector=watch%3Dtrue"),
                "list",
            ),
            (Method::POST, false, None, "create"),
            (Method::PUT, true, None, "update"),
            (Method::PATCH, true, Some("fieldManager=canaryctl"), "patch"),
            (Method::DELETE, true, None, "delete"),
            (Method::DELETE, false, None, "deletecollection"),
            (Method::OPTIONS, true, None, "options"),
        ];
        for (method, item, query, want) in cases {
            assert_eq!(
                verb(&method, item, query),
                want,
                "{method} {item} {query:?}"
            );
        }
    }
}

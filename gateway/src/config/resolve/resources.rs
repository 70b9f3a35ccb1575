//! `gateway.protected_resources`: RFC 9728 protected resources, checked.
//! The metadata documents are built with the snapshot
//! (`crate::resource_metadata`), where the policies are known.

use super::*;

/// The prefix of every protected resource metadata path (RFC 9728
/// section 3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// One protected resource, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The resource identifier as configured (the document's `resource`).
    pub resource: String,
    /// Where its metadata is served: [`WELL_KNOWN`] and the resource's path.
    pub path: String,
    /// The metadata's url, for challenges: the resource's origin and `path`.
    pub metadata_url: String,
    pub services: Vec<String>,
    /// `None`: every configured Authority's issuer.
    pub authorization_servers: Option<Vec<String>>,
    /// `None`: from the services' policies.
    pub scopes_supported: Option<Vec<String>>,
    pub resource_documentation: Option<String>,
    pub resource_name: Option<String>,
}

/// A url the metadata may carry: `http` or `https` (`https_only`), a
/// host, no fragment, and nothing a quoted challenge parameter or a JSON
/// consumer would trip on (quotes, backslashes, spaces, controls).
fn checked_url(text: &str, https_only: bool) -> Result<http::Uri, &'static str> {
    if text
        .bytes()
        .any(|b| b <= b' ' || b == b'"' || b == b'\\' || b == b'#' || b >= 0x7f)
    {
        return Err("must be a url without spaces, quotes, backslashes or a fragment");
    }
    let uri: http::Uri = text.parse().map_err(|_| "is not a url")?;
    let scheme_ok = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => !https_only,
        _ => false,
    };
    if !scheme_ok {
        return Err(if https_only {
            "must be an https url"
        } else {
            "must be an http or https url"
        });
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(uri),
        _ => Err("must name a host (and no user info)"),
    }
}

/// The section, checked: urls, services that exist, each service and each
/// metadata path once.
pub(super) fn protected_resources(
    e: &mut Errors,
    sections: &[ProtectedResourceSection],
    service_names: &[&str],
) -> Vec<ProtectedResource> {
    let mut out: Vec<ProtectedResource> = Vec::new();
    let mut claimed: Vec<(&str, usize)> = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        let at = |k: &str| format!("gateway.protected_resources[{i}].{k}");
        let mut ok = true;
        let parsed = match section.resource.as_deref().map(str::trim) {
            None | Some("") => {
                e.add(&at("resource"), "is required");
                None
            }
            Some(text) => match checked_url(text, true) {
                Ok(uri) if uri.query().is_some() => {
                    e.add(&at("resource"), "must not have a query");
                    None
                }
                Ok(uri) => Some((text.to_owned(), uri)),
                Err(problem) => {
                    e.add(&at("resource"), problem);
                    None
                }
            },
        };
        for (j, service) in section.services.iter().enumerate() {
            if !service_names.contains(&service.as_str()) {
                e.add(
                    &format!("{}[{j}]", at("services")),
                    "names no configured service",
                );
                ok = false;
            } else if let Some((_, other)) = claimed.iter().find(|(s, _)| *s == service) {
                e.add(
                    &format!("{}[{j}]", at("services")),
                    format!("already belongs to gateway.protected_resources[{other}]"),
                );
                ok = false;
            } else {
                claimed.push((service, i));
            }
        }
        for (key, list) in [
            ("authorization_servers", &section.authorization_servers),
            ("scopes_supported", &section.scopes_supported),
        ] {
            match list {
                Some(items) if items.is_empty() => {
                    e.add(&at(key), "must not be empty (leave it out for the default)");
                    ok = false;
                }
                Some(items) => {
                    for (j, item) in items.iter().enumerate() {
                        let problem = match key {
                            "authorization_servers" => checked_url(item, false).err(),
                            _ if item.is_empty()
                                || item.bytes().any(|b| b <= b' ' || b == b'"' || b == b'\\') =>
                            {
                                Some("must be a scope token (no spaces, quotes or backslashes)")
                            }
                            _ => None,
                        };
                        if let Some(problem) = problem {
                            e.add(&format!("{}[{j}]", at(key)), problem);
                            ok = false;
                        }
                    }
                }
                None => {}
            }
        }
        if let Some(doc) = &section.resource_documentation {
            if let Err(problem) = checked_url(doc, false) {
                e.add(&at("resource_documentation"), problem);
                ok = false;
            }
        }
        let Some((resource, uri)) = parsed else {
            continue;
        };
        // RFC 9728 section 3.1: the well-known path goes between the host
        // and the resource's path; a path of `/` alone adds nothing.
        let suffix = match uri.path() {
            "/" | "" => "",
            p => p,
        };
        let path = format!("{WELL_KNOWN}{suffix}");
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        if out.iter().any(|r| r.path == path) {
            e.add(
                &at("resource"),
                "has the same metadata path as another protected resource",
            );
            continue;
        }
        if ok {
            out.push(ProtectedResource {
                metadata_url: format!("{origin}{path}"),
                path,
                resource,
                services: section.services.clone(),
                authorization_servers: section.authorization_servers.clone(),
                scopes_supported: section.scopes_supported.clone(),
                resource_documentation: section.resource_documentation.clone(),
                resource_name: section.resource_name.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(resource: &str, services: &[&str]) -> ProtectedResourceSection {
        ProtectedResourceSection {
            resource: Some(resource.into()),
            services: services.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn check(sections: &[ProtectedResourceSection]) -> (Vec<ProtectedResource>, Vec<String>) {
        let mut e = Errors(Vec::new());
        let out = protected_resources(&mut e, sections, &["echo", "orders"]);
        let errors = e.0.iter().map(|e| e.to_string()).collect();
        (out, errors)
    }

    #[test]
    fn the_metadata_url_puts_the_well_known_path_before_the_resource_path() {
        let (out, errors) = check(&[
            section("https://api.example.com/orders", &["orders"]),
            section("https://api.example.com", &["echo"]),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out[0].path, "/.well-known/oauth-protected-resource/orders");
        assert_eq!(
            out[0].metadata_url,
            "https://api.example.com/.well-known/oauth-protected-resource/orders"
        );
        assert_eq!(out[1].path, "/.well-known/oauth-protected-resource");
        assert_eq!(out[1].resource, "https://api.example.com");
    }

    #[test]
    fn bad_resources_are_clear_config_errors() {
        let (out, errors) = check(&[
            section("http://api.example.com/a", &[]),
            section("https://api.example.com/b?x=1", &[]),
            section("https://api.example.com/c#f", &[]),
            section("https://api.example.com/d", &["nope"]),
            section("https://api.example.com/e", &["echo"]),
            section("https://api.example.com/f", &["echo"]),
            section("https://other.example.com/e", &[]),
            ProtectedResourceSection::default(),
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        let joined = errors.join("\n");
        for expected in [
            "gateway.protected_resources[0].resource: must be an https url",
            "gateway.protected_resources[1].resource: must not have a query",
            "gateway.protected_resources[2].resource: must be a url without spaces",
            "gateway.protected_resources[3].services[0]: names no configured service",
            "gateway.protected_resources[5].services[0]: already belongs to gateway.protected_resources[4]",
            "gateway.protected_resources[6].resource: has the same metadata path",
            "gateway.protected_resources[7].resource: is required",
        ] {
            assert!(joined.contains(expected), "{expected} not in\n{joined}");
        }
    }
}

//! The step that is missing when an OAuth2 login fails, in the provider's own terms:
//! Microsoft 365 refuses the same way whether consent, the service principal, the
//! mailbox permission or SMTP AUTH is missing, so the failure's code (AADSTS, `535
//! 5.7.139`) and the roles the token carries decide which step to name.

use crate::config::{OAuth2, Protocol, Provider};
use crate::probe::{ErrorKind, Failure, Phase};

/// The step to take for `failure` of a `protocol` login with `login`, whose token
/// carried `roles`; `None` when the failure is not about the login's setup.
pub fn for_failure(
    login: &OAuth2,
    protocol: Protocol,
    failure: &Failure,
    roles: &[String],
) -> Option<String> {
    match (failure.phase, failure.kind) {
        (Phase::Token, ErrorKind::TokenRejected) => token_refused(login, &failure.message),
        (Phase::Auth, ErrorKind::AuthFailed) => login_refused(login, protocol, failure, roles),
        _ => None,
    }
}

/// The identity provider refused the client.
fn token_refused(login: &OAuth2, message: &str) -> Option<String> {
    let has = |code: &str| message.contains(code);
    let text = match login.provider() {
        Provider::Microsoft if has("AADSTS7000215") || has("AADSTS7000222") => {
            "create a new client secret (Entra ID → App registrations → the application → \
             Certificates & secrets) and put its Value, not its Secret ID, in the secret file"
        }
        Provider::Microsoft if has("AADSTS700016") || has("AADSTS90002") => {
            "check `client_id` and the tenant in `token_url`; an application registered in \
             another tenant needs admin consent in this one first"
        }
        Provider::Microsoft if has("AADSTS65001") || has("AADSTS650057") => {
            "grant admin consent: Entra ID → App registrations → the application → API \
             permissions → Grant admin consent for the tenant"
        }
        Provider::Microsoft if has("AADSTS700027") => {
            "upload `client_certificate` to the application (Certificates & secrets → \
             Certificates); the key must be that certificate's"
        }
        Provider::Microsoft if has("AADSTS70011") => {
            "set `scope: https://outlook.office365.com/.default` (app-only Exchange access)"
        }
        Provider::Microsoft if has("AADSTS700024") => {
            "set this host's clock right (NTP): the signed assertion is outside its time window"
        }
        Provider::Google if has("unauthorized_client") => {
            "authorize the service account's client ID for the scope https://mail.google.com/ \
             (Admin console → Security → Access and data control → API controls → Manage \
             domain-wide delegation)"
        }
        Provider::Google if has("invalid_grant") => {
            "check that `subject` (the mailbox) is a user of the Workspace domain and that the \
             service-account key is not deleted or disabled"
        }
        _ => return None,
    };
    Some(text.to_owned())
}

/// The mail server (or EWS) refused the token.
fn login_refused(
    login: &OAuth2,
    protocol: Protocol,
    failure: &Failure,
    roles: &[String],
) -> Option<String> {
    let message = &failure.message;
    match login.provider() {
        Provider::Microsoft => {
            if protocol == Protocol::Smtp && message.contains("5.7.139") {
                return Some(
                    "turn SMTP AUTH on: it is disabled for the tenant (Set-TransportConfig \
                     -SmtpClientAuthenticationDisabled $false) or the mailbox (Set-CASMailbox \
                     -Identity MAILBOX -SmtpClientAuthenticationDisabled $false), or security \
                     defaults block it"
                        .to_owned(),
                );
            }
            let role = match protocol {
                Protocol::Imap => "IMAP.AccessAsApp",
                Protocol::Pop3 => "POP.AccessAsApp",
                Protocol::Smtp => "SMTP.SendAsApp",
                _ => "full_access_as_app",
            };
            if !roles.iter().any(|r| r == role) {
                return Some(format!(
                    "add the application permission Office 365 Exchange Online → {role} to the \
                     application and grant admin consent (the token carries {})",
                    if roles.is_empty() {
                        "no app role".to_owned()
                    } else {
                        format!("only {}", roles.join(", "))
                    }
                ));
            }
            Some(match protocol {
                Protocol::Exchange => {
                    "the token carries full_access_as_app: check that no application access \
                     policy excludes this mailbox"
                        .to_owned()
                }
                _ => format!(
                    "register the application's service principal in Exchange Online \
                     (New-ServicePrincipal -AppId {} -ObjectId ENTERPRISE_APP_OBJECT_ID) and give \
                     it the mailbox (Add-MailboxPermission -Identity MAILBOX -User \
                     SERVICE_PRINCIPAL_ID -AccessRights FullAccess){}",
                    login.client_id,
                    match protocol {
                        Protocol::Imap =>
                            "; IMAP must be enabled for the mailbox (Set-CASMailbox -ImapEnabled $true)",
                        Protocol::Pop3 =>
                            "; POP must be enabled for the mailbox (Set-CASMailbox -PopEnabled $true)",
                        _ => "",
                    }
                ),
            })
        }
        Provider::Google => Some(
            "check that the service account is delegated https://mail.google.com/ and that \
             IMAP or POP is enabled for the user (Admin console → Apps → Google Workspace → \
             Gmail → End User Access)"
                .to_owned(),
        ),
        Provider::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientCredential, Mechanism, Secret};

    fn login(token_url: &str) -> OAuth2 {
        OAuth2 {
            token_url: url::Url::parse(token_url).unwrap(),
            client_id: "app-id".into(),
            credential: ClientCredential::Secret(Secret::new("s".into())),
            scope: "x".into(),
            subject: None,
            mechanism: Mechanism::Auto,
        }
    }

    fn refused(message: &str) -> Failure {
        Failure {
            phase: Phase::Auth,
            kind: ErrorKind::AuthFailed,
            message: message.into(),
        }
    }

    #[test]
    fn a_refused_login_names_the_missing_role_or_the_service_principal() {
        let m365 = login("https://login.microsoftonline.com/contoso/oauth2/v2.0/token");
        let roles = |names: &[&str]| names.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>();
        let no_role = for_failure(&m365, Protocol::Imap, &refused("NO"), &[]).unwrap();
        assert!(no_role.contains("→ IMAP.AccessAsApp") && no_role.contains("no app role"));
        let other_role = for_failure(
            &m365,
            Protocol::Pop3,
            &refused("-ERR"),
            &roles(&["IMAP.AccessAsApp"]),
        )
        .unwrap();
        assert!(other_role.contains("→ POP.AccessAsApp") && other_role.contains("only IMAP"));
        let granted = for_failure(
            &m365,
            Protocol::Imap,
            &refused("NO"),
            &roles(&["IMAP.AccessAsApp"]),
        )
        .unwrap();
        assert!(
            granted.contains("New-ServicePrincipal -AppId app-id"),
            "{granted}"
        );
        let smtp_off = for_failure(
            &m365,
            Protocol::Smtp,
            &refused("535 5.7.139 Authentication unsuccessful"),
            &roles(&["SMTP.SendAsApp"]),
        )
        .unwrap();
        assert!(smtp_off.contains("turn SMTP AUTH on"), "{smtp_off}");
        let google = login("https://oauth2.googleapis.com/token");
        assert!(
            for_failure(&google, Protocol::Imap, &refused("NO"), &[])
                .unwrap()
                .contains("delegated")
        );
        let other = login("https://idp.example.com/token");
        assert_eq!(
            for_failure(&other, Protocol::Imap, &refused("NO"), &[]),
            None
        );
        let timeout = Failure {
            kind: ErrorKind::Timeout,
            ..refused("slow")
        };
        assert_eq!(for_failure(&m365, Protocol::Imap, &timeout, &[]), None);
    }
}

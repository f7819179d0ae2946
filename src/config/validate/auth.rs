//! `auth:` — a user name and where its secret comes from: a password, or an OAuth2
//! client ([`super::oauth2`]).

use std::path::PathBuf;

use serde_saphyr::{Location, Spanned};

use super::Validator;
use crate::config::files::{MAX_SECRET_BYTES, read_bounded, world_readable};
use crate::config::raw::RawAuth;
use crate::config::{ConfigError, Credentials, Secret, Secrets};

/// Rejected logins in a row after which the credential is no longer sent: three is
/// what a person mistyping a password does, and well below the thresholds of
/// Dovecot's auth penalty, fail2ban (5) and Microsoft 365 smart lockout (10).
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;
/// The most `auth.max_failures` may be: beyond that the lockout protection no longer
/// protects anything.
const MAX_AUTH_FAILURES_LIMIT: i64 = 100;

/// Why a secret was not read.
pub(super) enum Unread {
    /// It is not here (no such file, not readable by us, an unset variable): what
    /// `check-config` meets on a machine without the secrets.
    Absent(String),
    /// It is here and wrong (a FIFO, a device, too large, empty).
    Invalid(String),
}

impl Validator<'_> {
    /// The credentials of `auth` (at `field`), which may go over a connection without
    /// TLS when `plaintext_allowed`. A secret that cannot be resolved is an error, or
    /// with [`Secrets::Optional`] a warning (and an empty secret: nothing is probed).
    pub(super) fn credentials(
        &self,
        auth: &Spanned<RawAuth>,
        field: &str,
        plaintext_allowed: bool,
    ) -> Result<Credentials, ConfigError> {
        let errors = &self.site;
        let raw = &auth.value;
        let Some(username) = &raw.username else {
            return Err(errors.at(
                auth.referenced,
                format!("{field}.username"),
                "`auth` needs `username`: the login name",
            ));
        };
        if username.value.is_empty() {
            return Err(errors.at(
                username.referenced,
                format!("{field}.username"),
                "the login name is empty",
            ));
        }
        let max_failures = match &raw.max_failures {
            None => DEFAULT_MAX_AUTH_FAILURES,
            Some(max) => u32::try_from(max.value)
                .ok()
                .filter(|max| (1..=MAX_AUTH_FAILURES_LIMIT).contains(&i64::from(*max)))
                .ok_or_else(|| {
                    errors.at(
                        max.referenced,
                        format!("{field}.max_failures"),
                        format!(
                            "{} is out of range: after 1 to {MAX_AUTH_FAILURES_LIMIT} rejected \
                             logins in a row the credential is no longer sent",
                            max.value
                        ),
                    )
                })?,
        };
        if let Some(oauth2) = &raw.oauth2 {
            if let Some((key, at)) = [
                (
                    "password_file",
                    raw.password_file.as_ref().map(|v| v.referenced),
                ),
                (
                    "password_env",
                    raw.password_env.as_ref().map(|v| v.referenced),
                ),
            ]
            .into_iter()
            .find_map(|(key, at)| at.map(|at| (key, at)))
            {
                return Err(errors.at(
                    at,
                    format!("{field}.{key}"),
                    "set either a password or `oauth2`, not both",
                ));
            }
            let oauth2 = self.oauth2(oauth2, &format!("{field}.oauth2"), &username.value)?;
            return Ok(Credentials {
                username: username.value.clone(),
                password: Secret::new(String::new()),
                plaintext_allowed,
                oauth2: Some(std::sync::Arc::new(oauth2)),
                max_failures,
            });
        }
        let password = match (&raw.password_file, &raw.password_env) {
            (Some(_), Some(env)) => {
                return Err(errors.at(
                    env.referenced,
                    format!("{field}.password_env"),
                    "set either `password_file` or `password_env`, not both",
                ));
            }
            (None, None) => {
                return Err(errors.at(
                    auth.referenced,
                    field,
                    "`auth` needs `password_file` (a file holding the password) or \
                     `password_env` (an environment variable holding it), or `oauth2`; a \
                     password is never written in the configuration itself",
                ));
            }
            (Some(file), None) => self.secret_line(file, &format!("{field}.password_file"))?,
            (None, Some(env)) => self.secret_env(env, &format!("{field}.password_env"))?,
        };
        Ok(Credentials {
            username: username.value.clone(),
            password,
            plaintext_allowed,
            oauth2: None,
            max_failures,
        })
    }

    /// The first line of the secret file `file` (a password, a client secret); empty
    /// when it is absent and secrets are optional.
    pub(super) fn secret_line(
        &self,
        file: &Spanned<PathBuf>,
        field: &str,
    ) -> Result<Secret, ConfigError> {
        let read = self.read_secret(file, field).and_then(|bytes| {
            // The secret is the first line; a trailing newline is not part of it.
            let text = String::from_utf8(bytes).map_err(|_| {
                Unread::Invalid(format!(
                    "cannot read `{}`: it is not UTF-8 text",
                    file.value.display()
                ))
            })?;
            let first_line = text.lines().next().unwrap_or_default();
            if first_line.is_empty() {
                Err(Unread::Invalid(format!(
                    "`{}` is empty",
                    file.value.display()
                )))
            } else {
                Ok(first_line.to_owned())
            }
        });
        Ok(Secret::new(
            self.resolved(read, file.referenced, field)?
                .unwrap_or_default(),
        ))
    }

    /// The secret in environment variable `env`; empty when it is unset and secrets
    /// are optional.
    pub(super) fn secret_env(
        &self,
        env: &Spanned<String>,
        field: &str,
    ) -> Result<Secret, ConfigError> {
        let read = std::env::var(&env.value).map_err(|_| {
            Unread::Absent(format!("environment variable `{}` is not set", env.value))
        });
        Ok(Secret::new(
            self.resolved(read, env.referenced, field)?
                .unwrap_or_default(),
        ))
    }

    /// The bytes of the secret file `file`, warning when everyone may read it.
    pub(super) fn read_secret(
        &self,
        file: &Spanned<PathBuf>,
        field: &str,
    ) -> Result<Vec<u8>, Unread> {
        let mut watched = self.secret_files.borrow_mut();
        if !watched.contains(&file.value) {
            watched.push(file.value.clone());
        }
        drop(watched);
        let bytes = read_bounded(&file.value, MAX_SECRET_BYTES).map_err(|error| {
            let message = format!("cannot read `{}`: {error}", file.value.display());
            // Not there, or not ours to read: where the secret is not (a CI
            // machine). Anything else is wrong wherever it is checked.
            if error.is_absent() {
                Unread::Absent(message)
            } else {
                Unread::Invalid(message)
            }
        })?;
        if world_readable(&file.value) {
            self.warn(
                file.referenced,
                field,
                format!(
                    "`{}` is readable by every user of this machine: `chmod 600` it \
                     (or 640, with the group mailprobe runs as)",
                    file.value.display()
                ),
            );
        }
        Ok(bytes)
    }

    /// A secret as read, or why not: an error, or — for a secret that is absent here,
    /// with [`Secrets::Optional`] — a warning and `None`.
    pub(super) fn resolved<T>(
        &self,
        read: Result<T, Unread>,
        at: Location,
        field: &str,
    ) -> Result<Option<T>, ConfigError> {
        match (read, self.secrets) {
            (Ok(value), _) => Ok(Some(value)),
            (Err(Unread::Invalid(message) | Unread::Absent(message)), Secrets::Required)
            | (Err(Unread::Invalid(message)), Secrets::Optional) => {
                Err(self.site.at(at, field, message))
            }
            (Err(Unread::Absent(message)), Secrets::Optional) => {
                self.warn(
                    at,
                    field,
                    format!("{message} (a warning here; the agent needs it to start)"),
                );
                Ok(None)
            }
        }
    }
}

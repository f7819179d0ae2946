//! `auth:` — a user name and where its secret comes from.

use serde_saphyr::Spanned;

use super::Validator;
use crate::config::files::{MAX_SECRET_BYTES, read_text, world_readable};
use crate::config::raw::RawAuth;
use crate::config::{ConfigError, Credentials, Secret, Secrets};

/// Why a secret was not read.
enum Unread {
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
                     `password_env` (an environment variable holding it); a password is never \
                     written in the configuration itself",
                ));
            }
            (Some(file), None) => {
                let field = format!("{field}.password_file");
                let read = read_text(&file.value, MAX_SECRET_BYTES)
                    .map_err(|error| {
                        let message = format!("cannot read `{}`: {error}", file.value.display());
                        // Not there, or not ours to read: where the secret is not (a CI
                        // machine). Anything else is wrong wherever it is checked.
                        if error.is_absent() {
                            Unread::Absent(message)
                        } else {
                            Unread::Invalid(message)
                        }
                    })
                    .and_then(|contents| {
                        // The password is the first line; a trailing newline is not part
                        // of it.
                        let first_line = contents.lines().next().unwrap_or_default();
                        if first_line.is_empty() {
                            Err(Unread::Invalid(format!(
                                "`{}` is empty",
                                file.value.display()
                            )))
                        } else {
                            Ok(first_line.to_owned())
                        }
                    });
                if read.is_ok() && world_readable(&file.value) {
                    self.warn(
                        file.referenced,
                        &field,
                        format!(
                            "`{}` is readable by every user of this machine: `chmod 600` it \
                             (or 640, with the group mailprobe runs as)",
                            file.value.display()
                        ),
                    );
                }
                self.resolved(read, file.referenced, &field)?
            }
            (None, Some(env)) => {
                let read = std::env::var(&env.value).map_err(|_| {
                    Unread::Absent(format!("environment variable `{}` is not set", env.value))
                });
                self.resolved(read, env.referenced, &format!("{field}.password_env"))?
            }
        };
        Ok(Credentials {
            username: username.value.clone(),
            password,
            plaintext_allowed,
        })
    }

    /// A secret as read, or why not: an error, or — for a secret that is absent here,
    /// with [`Secrets::Optional`] — a warning and an empty secret.
    fn resolved(
        &self,
        read: Result<String, Unread>,
        at: serde_saphyr::Location,
        field: &str,
    ) -> Result<Secret, ConfigError> {
        match (read, self.secrets) {
            (Ok(value), _) => Ok(Secret::new(value)),
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
                Ok(Secret::new(String::new()))
            }
        }
    }
}

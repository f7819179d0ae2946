//! `auth:` — a user name and where its secret comes from.

use serde_saphyr::Spanned;

use crate::config::error::ErrorSite;
use crate::config::raw::RawAuth;
use crate::config::{ConfigError, Credentials, Secret};

pub(super) fn credentials(
    errors: &ErrorSite<'_>,
    auth: &Spanned<RawAuth>,
    field: &str,
) -> Result<Credentials, ConfigError> {
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
                "`auth` needs `password_file` (a file holding the password) or `password_env` \
                 (an environment variable holding it); a password is never written in the \
                 configuration itself",
            ));
        }
        (Some(file), None) => {
            let contents = std::fs::read_to_string(&file.value).map_err(|error| {
                errors.at(
                    file.referenced,
                    format!("{field}.password_file"),
                    format!("cannot read `{}`: {error}", file.value.display()),
                )
            })?;
            // The password is the first line; a trailing newline is not part of it.
            let first_line = contents.lines().next().unwrap_or_default();
            if first_line.is_empty() {
                return Err(errors.at(
                    file.referenced,
                    format!("{field}.password_file"),
                    format!("`{}` is empty", file.value.display()),
                ));
            }
            Secret::new(first_line.to_owned())
        }
        (None, Some(env)) => {
            let value = std::env::var(&env.value).map_err(|_| {
                errors.at(
                    env.referenced,
                    format!("{field}.password_env"),
                    format!("environment variable `{}` is not set", env.value),
                )
            })?;
            Secret::new(value)
        }
    };
    Ok(Credentials {
        username: username.value.clone(),
        password,
    })
}

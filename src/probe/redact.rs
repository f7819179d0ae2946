//! Secrets out of everything a server sent: a server may echo a command, a header or
//! a SASL exchange back in an error, and that text reaches `/debug`, the logs, the
//! metrics' messages and the commands' output. Every form a secret travels in is
//! removed: the password itself, its base64, HTTP Basic's `user:password`, SASL
//! PLAIN's `\0user\0password`, and (added by the token code) bearer tokens.

use std::borrow::Cow;

use base64::Engine as _;

use crate::config::Credentials;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// The forms of the secrets one probe uses.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a form containing another is replaced whole.
    forms: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("forms", &self.forms.len())
            .finish()
    }
}

impl Redactor {
    /// The forms of `credentials`' password.
    pub fn for_credentials(credentials: &Credentials) -> Redactor {
        let mut redactor = Redactor::default();
        redactor.add_credentials(credentials);
        redactor
    }

    /// Adds the forms of `credentials`' password, or of their OAuth2 client secret.
    pub fn add_credentials(&mut self, credentials: &Credentials) {
        if let Some(oauth2) = &credentials.oauth2
            && let crate::config::ClientCredential::Secret(secret) = &oauth2.credential
        {
            self.add_secret(secret.expose());
        }
        let password = credentials.password.expose();
        if password.is_empty() {
            return;
        }
        let user = &credentials.username;
        self.add_secret(password);
        self.add_encoded(format!("{user}:{password}").as_bytes());
        self.add_encoded(format!("\0{user}\0{password}").as_bytes());
    }

    /// Adds a secret (a password, a token, a client secret) and its base64 forms.
    pub fn add_secret(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        self.push(secret.to_owned());
        self.add_encoded(secret.as_bytes());
        let form_encoded: String =
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        self.push(form_encoded);
    }

    /// Adds the base64 forms (padded and not) of `bytes`, which contain a secret.
    pub fn add_encoded(&mut self, bytes: &[u8]) {
        let padded = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.push(padded.trim_end_matches('=').to_owned());
        self.push(padded);
        self.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    }

    fn push(&mut self, form: String) {
        if form.is_empty() || self.forms.contains(&form) {
            return;
        }
        let at = self.forms.partition_point(|f| f.len() >= form.len());
        self.forms.insert(at, form);
    }

    /// Adds every form `other` removes (a side trip's secrets, such as a token).
    pub fn absorb(&mut self, other: &Redactor) {
        for form in &other.forms {
            self.push(form.clone());
        }
    }

    /// Whether there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// `text` with every form of every secret replaced by [`REDACTED`].
    pub fn clean<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut clean = Cow::Borrowed(text);
        for form in &self.forms {
            if clean.contains(form.as_str()) {
                clean = Cow::Owned(clean.replace(form.as_str(), REDACTED));
            }
        }
        clean
    }

    /// Cleans `text` in place.
    pub fn clean_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.clean(text) {
            *text = clean;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn credentials() -> Credentials {
        Credentials {
            username: "tim".into(),
            password: Secret::new("hunter2!".into()),
            plaintext_allowed: false,
            oauth2: None,
            max_failures: 3,
        }
    }

    #[test]
    fn every_form_of_a_password_is_removed() {
        let redactor = Redactor::for_credentials(&credentials());
        let engine = base64::engine::general_purpose::STANDARD;
        for echoed in [
            "hunter2!".to_owned(),
            engine.encode("hunter2!"),
            engine.encode("hunter2!").trim_end_matches('=').to_owned(),
            engine.encode("tim:hunter2!"),
            format!("Basic {}", engine.encode("tim:hunter2!")),
            engine.encode("\0tim\0hunter2!"),
            "hunter2%21".to_owned(),
        ] {
            let text = format!("NO [{echoed}] rejected");
            let clean = redactor.clean(&text);
            assert!(!clean.contains(&echoed), "{echoed} in {clean}");
            assert!(clean.contains(REDACTED), "{clean}");
        }
        assert_eq!(redactor.clean("nothing secret"), "nothing secret");
    }

    #[test]
    fn a_longer_form_is_replaced_whole() {
        let mut redactor = Redactor::default();
        redactor.add_secret("abc");
        redactor.add_secret("abcdef");
        assert_eq!(
            redactor.clean("x abcdef y abc"),
            "x <redacted> y <redacted>"
        );
    }
}

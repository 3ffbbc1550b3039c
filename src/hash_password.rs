//! `redshift-auth-proxy hash-password [USER]`: makes a line for the `--client-users` file
//! from a password read on stdin (typed without echo when stdin is a terminal), so the
//! password itself is never written anywhere, not even in shell history.

use std::io::{BufRead, IsTerminal, Write};

use crate::client::auth::{UserNameError, check_user_name, hash_password};
use crate::credentials::Secret;

/// Why no line was made.
#[derive(Debug, thiserror::Error)]
pub enum HashPasswordError {
    /// The user name cannot be written in the users file.
    #[error("user name {user:?}: {why}")]
    User {
        /// What was given.
        user: String,
        /// Why it is refused.
        why: UserNameError,
    },
    /// stdin could not be read (or the terminal set up).
    #[error("cannot read the password: {0}")]
    Read(#[from] std::io::Error),
    /// An empty password would let anyone who knows the user name in.
    #[error("the password is empty")]
    Empty,
    /// The two typed passwords differ.
    #[error("the passwords do not match")]
    Mismatch,
}

/// Reads the password (prompting twice without echo on a terminal, else one line from
/// stdin) and returns the users-file line: `USER:SCRAM-SHA-256$…`, or the verifier alone
/// without a user.
pub fn run(user: Option<&str>) -> Result<String, HashPasswordError> {
    if let Some(user) = user {
        check_user_name(user).map_err(|why| HashPasswordError::User {
            user: user.to_owned(),
            why,
        })?;
    }
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt("Password: ")?;
        let second = prompt("Password again: ")?;
        if first != second {
            return Err(HashPasswordError::Mismatch);
        }
        first
    } else {
        read_line(&mut stdin.lock())?
    };
    line(user, &password)
}

/// The users-file line for `user` and `password`.
pub fn line(user: Option<&str>, password: &Secret) -> Result<String, HashPasswordError> {
    if password.expose().is_empty() {
        return Err(HashPasswordError::Empty);
    }
    let verifier = hash_password(password.expose());
    Ok(match user {
        Some(user) => format!("{user}:{verifier}"),
        None => verifier,
    })
}

/// One line without its line ending.
fn read_line(input: &mut impl BufRead) -> Result<Secret, HashPasswordError> {
    let mut text = String::new();
    input.read_line(&mut text)?;
    while text.ends_with(['\n', '\r']) {
        text.pop();
    }
    // Taken over, not copied: the buffer is wiped when the secret is dropped.
    Ok(Secret::new(text))
}

/// Asks on stderr and reads a line from the terminal with echo off.
fn prompt(question: &str) -> Result<Secret, HashPasswordError> {
    let mut stderr = std::io::stderr();
    stderr.write_all(question.as_bytes())?;
    stderr.flush()?;
    let guard = EchoOff::new(libc::STDIN_FILENO)?;
    let password = read_line(&mut std::io::stdin().lock());
    drop(guard);
    password
}

/// Terminal echo turned off until dropped (the newline is still echoed, so the prompt
/// moves on when Enter is pressed).
struct EchoOff {
    fd: libc::c_int,
    saved: libc::termios,
}

// The terminal settings need libc calls; each block says why it is sound.
#[allow(unsafe_code)]
impl EchoOff {
    fn new(fd: libc::c_int) -> std::io::Result<EchoOff> {
        let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills the termios struct when it returns 0, which is checked
        // before the value is read.
        let saved = unsafe {
            if libc::tcgetattr(fd, saved.as_mut_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            saved.assume_init()
        };
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: `quiet` is a valid termios copied from the terminal's own settings.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EchoOff { fd, saved })
    }
}

#[allow(unsafe_code)]
impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::auth::ScramVerifier;

    #[test]
    fn line_for_a_user_parses_back() {
        let text = line(Some("alice"), &Secret::new("pw")).unwrap();
        let (user, verifier) = text.split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(ScramVerifier::parse(verifier).is_ok());
        assert!(
            line(None, &Secret::new("pw"))
                .unwrap()
                .starts_with("SCRAM-SHA-256$4096:")
        );
        assert!(matches!(
            line(None, &Secret::new("")),
            Err(HashPasswordError::Empty)
        ));
    }

    #[test]
    fn reads_one_line_without_its_ending() {
        let mut input = std::io::Cursor::new(b"pass word\r\nignored\n".to_vec());
        assert_eq!(read_line(&mut input).unwrap().expose(), "pass word");
    }
}

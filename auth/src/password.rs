//! Password hashing with argon2id.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) with a fresh
//! 16-byte random salt each time, which is what `UserSpec::password_hash` stores. The
//! parameters are OWASP's recommended argon2id minimum: 19 MiB of memory ([`M_COST_KIB`]),
//! 2 passes ([`T_COST`]), 1 lane ([`P_COST`]), 32-byte output — tens of milliseconds per
//! hash, so a login costs the server little while an offline guesser pays the same per try.
//! "Little" is per login: each hash or verification holds [`M_COST_KIB`] of memory and a core
//! while it runs, so a server must bound how many run at once and how often a caller may ask
//! (the API caps them at the number of cores and rate-limits logins; see
//! `cirrus_api::identity::throttle`).
//! Verification reads the parameters from the stored hash, so raising them later keeps old
//! hashes valid; the final comparison of hash outputs is constant-time (the `phc` crate's
//! `Output` compares with `ctutils::CtEq`).

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// Memory cost in KiB (19 MiB).
pub const M_COST_KIB: u32 = 19 * 1024;
/// Number of passes over the memory.
pub const T_COST: u32 = 2;
/// Degree of parallelism (lanes).
pub const P_COST: u32 = 1;
/// Largest memory cost (KiB) accepted from a stored hash: 256 MiB. A hash written with
/// absurd parameters would otherwise turn every login attempt into a memory bomb.
pub const MAX_M_COST_KIB: u32 = 256 * 1024;
/// Largest pass count accepted from a stored hash.
pub const MAX_T_COST: u32 = 16;
/// Largest password accepted, in bytes (hashing is cheap per byte, but requests are not free).
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// The stored hash is not a PHC string argon2 can read (corrupt or hand-written).
    #[error("malformed password hash: {0}")]
    Malformed(String),
    /// The stored hash names an algorithm other than argon2.
    #[error("unsupported password hash algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The stored hash asks for more memory or passes than [`MAX_M_COST_KIB`]/[`MAX_T_COST`].
    #[error(
        "password hash parameters exceed the accepted limits (m<={MAX_M_COST_KIB}, t<={MAX_T_COST})"
    )]
    ParamsTooLarge,
    /// The password is longer than [`MAX_PASSWORD_LEN`].
    #[error("password longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    /// Hashing itself failed (random source unavailable, out of memory).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .expect("the documented argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with argon2id and a random salt; returns the PHC string to store.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    let hash = hasher()
        .hash_password(password.as_bytes())
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

/// A hash of a random password nobody knows, made once per process: a login for an unknown,
/// disabled or password-less user verifies against it, so that it costs one verification
/// like any other login and its timing tells nothing. Call it where blocking is fine (the
/// first call hashes).
///
/// # Panics
/// When the first hash fails (no random source: nothing about passwords can work then).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).expect("the random source works");
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        hash_password(&secret).expect("hashing a short password works")
    })
}

/// Checks `password` against a stored PHC string: `Ok(true)` on a match, `Ok(false)` for a
/// wrong password, an error when the stored hash itself is unusable (which is a server-side
/// problem, not a failed login, and is reported as such).
pub fn verify_password(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::Malformed(e.to_string()))?;
    let alg = parsed.algorithm.as_str();
    if !alg.starts_with("argon2") {
        return Err(PasswordError::UnsupportedAlgorithm(alg.to_string()));
    }
    let limits = [("m", MAX_M_COST_KIB), ("t", MAX_T_COST)];
    for (name, max) in limits {
        if let Some(value) = parsed.params.get_decimal(name)
            && value > max
        {
            return Err(PasswordError::ParamsTooLarge);
        }
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    match hasher().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(argon2::password_hash::Error::Algorithm) => {
            Err(PasswordError::UnsupportedAlgorithm(alg.to_string()))
        }
        Err(e) => Err(PasswordError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_phc_and_never_the_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_ne!(hash, "correct horse");
        assert!(!hash.contains("correct horse"));
        assert_eq!(hash.split('$').count(), 6, "{hash}");
    }

    #[test]
    fn same_password_gets_a_different_salt_each_time() {
        let a = hash_password("pw").unwrap();
        let b = hash_password("pw").unwrap();
        assert_ne!(a, b);
        assert!(verify_password("pw", &a).unwrap());
        assert!(verify_password("pw", &b).unwrap());
    }

    #[test]
    fn right_password_verifies_wrong_one_does_not() {
        let hash = hash_password("s3cret").unwrap();
        assert!(verify_password("s3cret", &hash).unwrap());
        assert!(!verify_password("s3cret ", &hash).unwrap());
        assert!(!verify_password("", &hash).unwrap());
        assert!(!verify_password("S3cret", &hash).unwrap());
    }

    #[test]
    fn malformed_hash_is_a_typed_error() {
        for bad in [
            "",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$!!!$???",
        ] {
            match verify_password("x", bad) {
                Err(PasswordError::Malformed(_)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn foreign_algorithm_and_huge_params_are_rejected() {
        let hash = hash_password("pw").unwrap();
        let foreign = hash.replacen("argon2id", "scrypt", 1);
        assert!(matches!(
            verify_password("pw", &foreign),
            Err(PasswordError::UnsupportedAlgorithm(_))
        ));
        let bomb = hash.replacen("m=19456", "m=4000000", 1);
        assert_eq!(
            verify_password("pw", &bomb),
            Err(PasswordError::ParamsTooLarge)
        );
    }

    #[test]
    fn tampered_hash_does_not_verify() {
        let hash = hash_password("pw").unwrap();
        // Change the last character of the hash output (still valid base64).
        let mut chars: Vec<char> = hash.chars().collect();
        let last = chars.len() - 2;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert!(!verify_password("pw", &tampered).unwrap_or(false));
    }

    #[test]
    fn the_decoy_hash_is_stable_and_matches_no_ordinary_password() {
        let decoy = decoy_hash();
        assert_eq!(decoy, decoy_hash(), "made once");
        assert!(decoy.starts_with("$argon2id$"), "{decoy}");
        assert!(!verify_password("", decoy).unwrap());
        assert!(!verify_password("cirrus: no such user", decoy).unwrap());
    }

    #[test]
    fn oversized_password_is_refused_for_hashing_and_fails_verification() {
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert_eq!(hash_password(&long), Err(PasswordError::TooLong));
        let hash = hash_password("pw").unwrap();
        assert!(!verify_password(&long, &hash).unwrap());
    }
}

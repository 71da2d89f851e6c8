//! What an error means, the question every error type of Colony answers
//! ([`Classify`]), and the exit code each answer gives a process
//! (DESIGN.md: 0 done, 2 bad configuration or input, 3 fenced out by a
//! replacement, 4 a tick that carried out its plan but some actions failed,
//! 1 anything else). Reporting and the exit itself are the shared crate's
//! (`colony::exit`).

pub const OK: u8 = 0;
pub const FAILURE: u8 = 1;
pub const BAD_CONFIG: u8 = 2;
pub const FENCED: u8 = 3;
pub const ACTIONS_FAILED: u8 = 4;

/// What an error means for whoever meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The operator fixes it by changing configuration or input.
    Config,
    /// It may pass: a database or network away, a timeout. Worth another try.
    Transient,
    /// Trying again will not help (a 404, media ffmpeg cannot decode).
    Permanent,
    /// This process no longer holds what it was writing: a replacement does.
    Fenced,
}

impl ErrorClass {
    /// The one mapping from an error's class to a process's exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Config => BAD_CONFIG,
            ErrorClass::Fenced => FENCED,
            ErrorClass::Transient | ErrorClass::Permanent => FAILURE,
        }
    }
}

/// Every error type of Colony says which class it is. The planner's errors
/// answer too: this trait lives here, below every crate, for that reason.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}

impl Classify for crate::UnknownKind {
    /// A job kind that does not exist was asked for.
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}

impl Classify for crate::UnknownPlatform {
    /// A platform that does not exist was named.
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}

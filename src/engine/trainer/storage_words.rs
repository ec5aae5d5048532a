//! What the trainer says of a write that failed.

/// What to do about a failed write, from its OS error (a walkthrough's
/// "Operation not permitted" was told to free space).
pub(super) fn storage_remedy(error: &str) -> &'static str {
    let os_error = |code: i32| error.contains(&format!("(os error {code})"));
    if os_error(libc::ENOSPC) || os_error(libc::EDQUOT) {
        "free space"
    } else if os_error(libc::EACCES) || os_error(libc::EPERM) {
        "make the session folder writable"
    } else if os_error(libc::EFBIG) {
        "raise the file-size limit (ulimit -f)"
    } else if os_error(libc::EROFS) {
        "remount the file system read-write"
    } else {
        "fix the cause"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_remedy_follows_the_os_error() {
        let remedy = super::storage_remedy;
        assert_eq!(
            remedy("cannot write: No space left on device (os error 28)"),
            "free space"
        );
        assert_eq!(
            remedy("cannot write: Operation not permitted (os error 1)"),
            "make the session folder writable"
        );
        assert_eq!(
            remedy("Permission denied (os error 13)"),
            "make the session folder writable"
        );
        assert_eq!(
            remedy("Read-only file system (os error 30)"),
            "remount the file system read-write"
        );
        assert_eq!(
            remedy("File too large (os error 27)"),
            "raise the file-size limit (ulimit -f)"
        );
        assert_eq!(remedy("something else"), "fix the cause");
        // Not a prefix of another code.
        assert_eq!(remedy("(os error 130)"), "fix the cause");
    }
}

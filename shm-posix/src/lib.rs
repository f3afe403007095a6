//! Placeholder: filled by the backends issue.

//! orchctl

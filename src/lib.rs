//! Quern

//! Placeholder: the temporary PostgreSQL database helper is being written.

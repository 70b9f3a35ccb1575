//! Stella Gateway: a Pingora reverse proxy that is the policy decision point
//! for the services behind it. One module per pipeline stage; the Pingora
//! glue stays thin and calls pure functions from the others.

pub mod cli;
pub mod config;
pub mod identity;
pub mod jose;
pub mod routing;

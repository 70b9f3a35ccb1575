//! Stella Gateway: a Pingora reverse proxy that is the policy decision point
//! for the services behind it. One module per pipeline stage; the Pingora
//! glue stays thin and calls pure functions from the others.

pub mod admin;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod decision_log;
pub mod forward;
pub mod front;
pub mod gateway;
pub mod keyset;
pub mod log_queue;
pub mod openapi;
pub mod otel;
pub mod proxy;
pub mod reload;
pub mod resource_metadata;
pub mod response;
pub mod revocation;
pub mod server;
pub mod signing;
pub mod ssf;
pub mod telemetry;
pub mod tls;
pub mod upgrade;
pub mod upstream;

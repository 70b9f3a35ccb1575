//! `stella-load`: the load generator of the operations drills
//! (`scripts/drills/`). It sends a mix of request kinds (anonymous, Bearer,
//! DPoP) at a constant rate, open loop, records every response, and prints a
//! table per step; a request whose status is not expected, or that gets no
//! response, fails the run.
//!
//! - `spec`: request kinds and expected statuses (pure);
//! - `report`: recording and the tables (pure);
//! - `tokens`: client-credentials tokens from the Authority, refreshed;
//! - `http`: the pooled HTTP/1.1 client;
//! - `run`: the schedule, the stdin commands and the judging;
//! - `cli`: the command line.

pub mod cli;
pub mod http;
pub mod report;
pub mod run;
pub mod spec;
pub mod tokens;

//! One module per drill; each is a function of the running [`Drill`], its
//! full and short step lengths next to it in [`find`].

mod authority_outage;
mod binary_upgrade;
mod game_day;
mod key_rotation;
mod replay_capacity;
mod replica_restart;
mod revocation;
mod routes_policies;
mod schemathesis;
mod slow_clients;
mod trust_flip;

use crate::harness::Outcome;
use crate::Drill;

/// A drill: its body, and its step length in seconds in full and short.
pub type Entry = (fn(&mut Drill) -> Outcome, u64, u64);

/// The drill named `name`.
pub fn find(name: &str) -> Option<Entry> {
    Some(match name {
        "key-rotation" => (key_rotation::run, 25, 3),
        "trust-flip" => (trust_flip::run, 25, 3),
        "routes-policies" => (routes_policies::run, 25, 3),
        "replica-restart" => (replica_restart::run, 25, 3),
        "slow-clients" => (slow_clients::run, 25, 3),
        "authority-outage" => (authority_outage::run, 25, 3),
        "binary-upgrade" => (binary_upgrade::run, 25, 3),
        // Four identities, a hold after each: 2 s keeps --short near 25 s.
        "revocation" => (revocation::run, 10, 2),
        // Its own schedule (game_day::Timing); the step length is unused.
        "game-day" => (game_day::run, 600, 45),
        // Longer than the proof window: 60 s by default, 10 s with --short.
        "replay-capacity" => (replay_capacity::run, 90, 25),
        "schemathesis" => (schemathesis::run, 25, 3),
        _ => return None,
    })
}

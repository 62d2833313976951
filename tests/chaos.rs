//! The seeded chaos runner: random fault schedules against real ciq workers and a real Redis,
//! each checked against the invariants of DESIGN. Being written; it runs no schedule yet.

fn main() {
    println!("chaos: 0 schedules, 0 lost, 0 double-counted, 0 invariant violations");
}

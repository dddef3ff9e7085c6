use autoharmonize_tests::sim::{NetConfig, Sim, ms};
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let loss: f64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let mut sim = Sim::new(
        1,
        n,
        0,
        NetConfig {
            loss,
            jitter: ms(30),
            ..NetConfig::default()
        },
    );
    for step in 0..40 {
        sim.run_until(ms(250 * (step + 1)));
        let rooms = sim.rooms();
        let mut line = format!("t={:>5}ms rooms={} ", sim.now() / 1_000_000, rooms.len());
        for (room, members) in &rooms {
            let i = members[0];
            let leader = members
                .iter()
                .find(|&&i| sim.member(i).unwrap().is_leader());
            let st = leader.map(|&l| sim.member(l).unwrap().status(sim.local_now(l)));
            line += &format!(
                "[{:?}: {} members, leader view {:?} commit {:?} term {:?}] ",
                room.map(|r| r.founder.0 % 1000),
                members.len(),
                st.as_ref().map(|s| s.view.len()),
                st.as_ref().map(|s| s.commit.round.0),
                st.as_ref().map(|s| s.term.0)
            );
            let _ = i;
        }
        println!("{line}");
    }
}

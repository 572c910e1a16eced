"""The journals that make the line survive kill -9, tested without sockets: what a killed
decision stage or reject controller left behind is exactly what its successor restores."""

from __future__ import annotations

from pipeline.journal import COMPACT_EVERY, DecisionJournal, GateLog, LineJournal, PulseJournal
from pipeline.pulses import ALARMED, ARM, FIRED, PASS, REJECT, PulseSchedule

MS = 1_000_000
S = 1_000 * MS
GATE = 1_000 * S


def decision(seq: int, verdict: str = "reject", due: int = GATE + 8 * S, reason: str = "defect") -> dict:
    return {"seq": seq, "t_gate_ns": GATE + seq, "due_ns": due + seq, "decision": verdict, "reason": reason}


def test_decision_journal_restores_open_unacked_recent_and_totals(tmp_path):
    path = tmp_path / "decision.journal"
    journal = DecisionJournal(path, keep_recent_ns=60 * S)
    assert journal.lost == [] and journal.unacked() == [] and journal.same_boot
    for seq in (1, 2, 3, 4):
        journal.opened((seq, GATE + seq))
    journal.decided(decision(1))
    journal.decided(decision(2, "pass", reason="ok"))
    journal.ack((1, GATE + 1))
    assert not journal.ack((1, GATE + 1)) and not journal.ack((9, 9))  # once, and only what is owed
    journal.compact(GATE + 9 * S)
    journal.decided(decision(3))
    # kill -9 here: a torn last line, as a crash mid-write leaves it
    with open(path, "a") as f:
        f.write("decided 4 123 {\"seq\":")
    again = DecisionJournal(path, keep_recent_ns=60 * S)
    assert again.lost == [(4, GATE + 4)]  # open at the crash: the stage rejects it
    assert [d["seq"] for d in again.unacked()] == [2, 3]  # the writer never confirmed them
    assert [d["seq"] for d in again.recent(GATE + 9 * S)] == [1, 2, 3]
    assert again.recent(GATE + 80 * S) == []  # ejector times long past: nothing to tell a relay
    assert again.totals == {"decided": 3, "passes": 1, "rejects": {"defect": 2}}  # each counted once


def test_totals_survive_restarts_in_a_row(tmp_path):
    """The soak found counts lost when the stage died twice between compactions."""
    path = tmp_path / "j"
    seq = 0
    for restart in range(4):
        journal = DecisionJournal(path, keep_recent_ns=60 * S)
        assert journal.totals["decided"] == seq
        for _ in range(5):
            seq += 1
            journal.decided(decision(seq, "pass" if seq % 2 else "reject"))
        if restart == 2:
            journal.compact(GATE)
        journal.file._file.flush()  # kill -9: no close
    final = DecisionJournal(path, keep_recent_ns=60 * S).totals
    assert final == {"decided": 20, "passes": 10, "rejects": {"defect": 10}}


def test_decision_journal_forgets_acknowledged_old_decisions_and_keeps_unacked(tmp_path):
    journal = DecisionJournal(tmp_path / "j", keep_recent_ns=60 * S)
    for seq in range(5):
        journal.decided(decision(seq))
    for seq in range(3):
        journal.ack((seq, GATE + seq))
    journal.compact(GATE + 200 * S)
    assert sorted(k[0] for k in journal.decisions) == [3, 4]  # unacked stay however old
    assert sorted(d["seq"] for d in DecisionJournal(tmp_path / "j", 60 * S).unacked()) == [3, 4]


def test_a_journal_from_another_boot_never_schedules_by_its_old_clock(tmp_path):
    path = tmp_path / "j"
    journal = DecisionJournal(path, keep_recent_ns=60 * S)
    journal.opened((7, GATE + 7))
    journal.decided(decision(5))
    journal.file.close()
    text = path.read_text().splitlines()
    path.write_text("\n".join(["boot another-boot"] + text[1:]) + "\n")
    again = DecisionJournal(path, keep_recent_ns=60 * S)
    assert not again.same_boot
    assert again.recent(GATE) == []  # nothing goes to the reject controller
    assert [(d["seq"], d["t_gate_ns"], d["due_ns"]) for d in again.unacked()] == [(5, 0, 0)]  # the writer still gets it
    assert again.lost == [(7, 0)]


def test_journal_on_a_full_disk_degrades_to_memory_and_recovers(tmp_path):
    journal = LineJournal(tmp_path / "j")
    journal.rewrite(["a"])
    journal._file.close()
    journal._file = open("/dev/full", "w")  # every write: ENOSPC
    journal.append("b")
    assert journal.degraded  # no exception: the stage goes on
    journal.rewrite(["a", "b"])
    assert not journal.degraded and LineJournal.peek(tmp_path / "j")[0] == ["a", "b"]


def test_pulse_schedule_restores_what_a_killed_controller_had():
    lead = 30 * MS
    now = GATE + 5 * S
    key = lambda seq: (seq, GATE + seq)  # noqa: E731
    events = [
        (ARM, key(1), now + 1 * S, False),                      # armed, undecided, ahead: fail-safe pulse
        (ARM, key(2), now + 2 * S, False), (PASS, key(2), now + 2 * S, False),    # passed: nothing
        (ARM, key(3), now + 3 * S, False), (REJECT, key(3), now + 3 * S, False),  # reject ahead: pulse
        (REJECT, key(4), now - 1 * S, False),                   # reject whose ejector time passed: alarm
        (REJECT, key(5), now - 2 * S, False), (FIRED, key(5), now - 2 * S, False),  # fired: done
        (ARM, key(6), now - 1 * S, False),                      # armed, ejector passed: overdue
        (REJECT, key(7), now - 3 * S, False), (ALARMED, key(7), now - 3 * S, False),  # alarmed before
        (ARM, key(8), now - 4 * S, False), (FIRED, key(8), now - 4 * S, True),    # fail-safe fired
    ]
    restored = PulseSchedule.restore(lead, events, now)
    schedule = restored.schedule
    assert [(p.key[0], p.failsafe) for p in (schedule.pop(), schedule.pop())] == [(1, True), (3, False)]
    assert len(schedule) == 0
    assert restored.missed == [(key(4), now - 1 * S)]
    assert restored.overdue == {key(6): now - 1 * S}
    assert set(restored.seen) == {key(2), key(3), key(4), key(5), key(7)}
    assert schedule.decide(key(8), "pass", now - 4 * S, now) == "overruled"  # it was ejected
    assert schedule.decide(key(6), "reject", now - 1 * S, now) == "missed"  # an overdue reject: alarm


def test_pulse_journal_round_trip_and_compaction(tmp_path):
    path = tmp_path / "state.journal"
    journal = PulseJournal(path, keep_ns=10 * S)
    journal.add(ARM, (1, GATE), GATE + 8 * S)
    journal.add(FIRED, (1, GATE), GATE + 8 * S, failsafe=True)
    journal.add(REJECT, (2, GATE + 1), GATE + 9 * S)
    assert PulseJournal(path, keep_ns=10 * S).events == [
        (ARM, (1, GATE), GATE + 8 * S, False), (FIRED, (1, GATE), GATE + 8 * S, True),
        (REJECT, (2, GATE + 1), GATE + 9 * S, False)]
    journal = PulseJournal(path, keep_ns=10 * S)
    journal.file._lines = COMPACT_EVERY
    journal.compact_if_due(GATE + 18_500 * MS)  # 1's ejector time is 10.5 s past, 2's 9.5 s
    assert [e[1][0] for e in PulseJournal(path, keep_ns=10 * S).events] == [2]


def test_gate_log_keeps_the_recent_gates_for_a_restarted_decision_stage(tmp_path):
    path = tmp_path / "gates.log"
    log = GateLog(path)
    for seq in range(3 * GateLog.KEEP):
        log.add(seq, GATE + seq)
    gates = GateLog.read(path)
    assert gates[-1] == (3 * GateLog.KEEP - 1, GATE + 3 * GateLog.KEEP - 1)
    assert GateLog.KEEP <= len(gates) < 2 * GateLog.KEEP
    assert gates == sorted(gates) and gates[0][1] - gates[0][0] == GATE  # the newest, in order, whole


def test_a_rewrite_killed_midway_leaves_the_old_journal_and_its_successor_sweeps_the_debris(tmp_path):
    """kill -9 inside atomic_write: the journal on disk is the old one, and the temporary
    file it left is removed when the next process opens the journal (nothing piles up)."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "relay.journal"
    journal = LineJournal(path)
    journal.rewrite(["fired 1"])
    child = subprocess.Popen([sys.executable, "-c", (
        "import os, sys\n"
        "from storage.files import atomic_write\n"
        f"with atomic_write({str(path)!r}, fsync=False) as fh:\n"
        "    fh.write('boot x\\nhalf')\n"
        "    fh.flush()\n"
        "    print('inside', flush=True)\n"
        "    sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "inside"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name != path.name]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".{path.name}.")
    successor = LineJournal(path)
    assert successor.old_lines == ["fired 1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_station_killed_between_its_gate_log_and_its_number_file_neither_loses_nor_reuses(tmp_path):
    """The soak once lost container 314: the station saved the number, was killed before the
    gate log had the line, and nothing named the container again. Now the log comes first
    and a restart numbers above both files."""
    from pipeline.feed import SeqMap

    gates = GateLog(tmp_path / "gates.log")
    seqs = SeqMap(tmp_path / "last_seq", floor=gates.last_seq)
    for camera_seq in (1, 2):
        seq = seqs(camera_seq)
        gates.add(seq, GATE + seq)
        seqs.save()
    seq = seqs(3)
    gates.add(seq, GATE + seq)  # kill -9 here: the gate is logged, its number not saved
    assert (tmp_path / "last_seq").read_text() == "2"
    restarted_gates = GateLog(tmp_path / "gates.log")
    restarted = SeqMap(tmp_path / "last_seq", floor=restarted_gates.last_seq)
    assert restarted(1) == 4, "the station's own count restarts at 1; numbers go on above the logged 3"
    assert [s for s, _ in GateLog.read(tmp_path / "gates.log")] == [1, 2, 3], "the decision stage adopts 3"


def test_a_new_run_counts_from_zero_and_keeps_what_it_owes_the_writer(tmp_path):
    """`edge run` twice on one data folder: the second run's status counts its own containers."""
    path = tmp_path / "j"
    journal = DecisionJournal(path, keep_recent_ns=60 * S)
    for seq in (1, 2, 3):
        journal.decided(decision(seq))
    journal.ack((1, GATE + 1))
    journal.file._file.flush()  # the previous run was killed: no close
    again = DecisionJournal(path, keep_recent_ns=60 * S)
    assert again.totals["decided"] == 3
    again.count_from_zero()
    after_kill = DecisionJournal(path, keep_recent_ns=60 * S)  # killed right after: the zero was written
    assert after_kill.totals == {"decided": 0, "passes": 0, "rejects": {}}
    assert [d["seq"] for d in after_kill.unacked()] == [2, 3]  # still owed to the writer

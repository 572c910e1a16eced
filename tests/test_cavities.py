"""Mould cavities: read at the gate, carried to the database, counted by `edge db stats --by`,
and moulds taken out rejected with reason `mould` (config and `edge mould reject`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import TypeAdapter

from camera.config import GateConfig
from camera.gates.base import build_gate
from storage.moulds import delivered
from edge.cli import main
from edge.config import ConfigError, LineConfig, load_config
from pipeline import codec
from pipeline.mould_rejects import MouldRejects
from pipeline.relay import plc_line
from pipeline.writer import to_record
from storage.db import Container, open_database
from storage.writer import Recorder
from decision_support import decide, decision_book, write_config

ROOT = Path(__file__).resolve().parent.parent
MACHINE = {"sections": 8, "cavities": 2}
LINE = LineConfig(speed_cpm=1200, travel_time_ms=1000, machine=MACHINE)


# -- the gate ----------------------------------------------------------------------------

def test_serial_lines_reads_section_and_cavity_by_the_template(pty_pair):
    master, port = pty_pair
    config = TypeAdapter(GateConfig).validate_python(
        {"driver": "serial_lines", "port": port, "debounce_ms": 0, "message": "C{seq};S{section};K{cavity}"})
    with build_gate(config, LINE) as gate:
        os.write(master, b"C101;S3;K1\r\nC102;S3;K2\ngarbage\nC104;S4;K1\n")
        events, end = [], time.monotonic() + 10
        while len(events) < 4 and time.monotonic() < end:
            event = gate.wait(0.1)
            if event is not None:
                events.append(event)
    assert [(e.seq, e.section, e.cavity) for e in events] == [(101, 3, 1), (102, 3, 2), (103, None, None),
                                                              (104, 4, 1)]
    assert gate.stats()["malformed"] == 1


def test_a_template_with_an_unknown_field_is_refused_at_config_check(tmp_path):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["gate"] = {"driver": "serial_lines", "port": "/dev/ttyUSB0", "message": "{seq} {mold}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"gate.message.*\{mold\} is not a field"):
        load_config(path)


def test_simulated_gate_delivers_moulds_round_robin():
    with build_gate(TypeAdapter(GateConfig).validate_python({"driver": "simulated", "debounce_ms": 0}), LINE) as gate:
        events = [gate.wait(1.0) for _ in range(18)]
    assert [f"{e.section}-{e.cavity}" for e in events[:4]] == ["1-1", "1-2", "2-1", "2-2"]
    assert f"{events[16].section}-{events[16].cavity}" == "1-1"  # 16 moulds, then again
    assert str(delivered(5, 8, 2)) == "3-1"


def test_bad_mould_must_be_on_the_machine(tmp_path):
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["line"]["machine"] = MACHINE
    raw["cameras"][0]["bad_mould"] = {"mould": "9-1"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="mould '9-1' is not on a machine of 8 sections x 2 cavities"):
        load_config(path)
    raw["cameras"][0]["bad_mould"] = {"mould": "3-1", "defect_free_share": 0.0}
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.cameras[0].machine.sections == 8  # line.machine given to the renderer


def test_the_renderer_gives_the_bad_mould_more_defects(tmp_path):
    from camera.base import build_camera

    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["line"]["machine"] = {"sections": 2, "cavities": 1}
    raw["cameras"][0].update(bad_mould={"mould": "1-1", "defect_free_share": 0.0}, defect_free_share=1.0,
                             width=160, height=200)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    camera = build_camera(load_config(path).cameras[0])
    camera.open()
    renderer = {seq: (camera._bad_renderer if camera._from_bad_mould(seq) else camera._renderer) for seq in (1, 2)}
    assert renderer[1].container(7, 1).defects and not renderer[2].container(7, 2).defects


# -- through the decision ------------------------------------------------------------------

def test_decision_carries_the_mould_and_the_codec_keeps_it():
    decision = decide(decision_book(), 5, "3-1")
    assert (decision["section"], decision["cavity"], decision["reason"]) == (3, 1, "ok")
    msg = codec.unpack([codec.pack("decision", **decision)], ("decision",))
    assert (msg["section"], msg["cavity"]) == (3, 1)
    gate = codec.unpack([codec.pack("gate", seq=1, t_gate_ns=5, section=2, cavity=1)], ("gate",))
    assert (gate["section"], gate["cavity"]) == (2, 1)
    assert to_record(decision).cavity == 1


def test_the_gate_message_after_a_view_still_gives_the_mould():
    b = decision_book()
    b.view({"seq": 1, "t_gate_ns": 100, "view": 0, "camera_id": "c", "outcome": "inferred"}, 200)
    b.gate(1, 100, 200, section=4, cavity=2)
    assert (b.open[(1, 100)].section, b.open[(1, 100)].cavity) == (4, 2)


def test_a_mould_taken_out_rejects_with_reason_mould_before_defect():
    b = decision_book()
    b.reject_moulds = {"3-1"}
    assert decide(b, 1, "3-1")["reason"] == "mould"
    assert decide(b, 2, "3-1", defect=True)["decision"] == "reject"
    assert decide(b, 3, "3-1", defect=True)["reason"] == "mould"
    assert decide(b, 4, "3-2")["decision"] == "pass"
    assert decide(b, 5, None)["decision"] == "pass"  # no mould reader: nothing to match


def test_plc_output_echoes_the_mould():
    assert plc_line("{seq} {decision} {section} {cavity}\n", 7, "reject", "mould", 3, 1) == b"7 REJECT 3 1\n"
    assert plc_line("{seq} {section}-{cavity}\n", 8, "pass", "ok") == b"8 0-0\n"


def test_edge_mould_reject_and_release_reach_the_decision_stage(tmp_path):
    config_path = write_config(tmp_path, machine=MACHINE, reject_moulds=["5-2"])
    config = load_config(config_path)
    moulds = MouldRejects(config.data_dir, config.line.reject_moulds)
    assert moulds.current() == {"5-2"}
    runner = CliRunner()
    result = runner.invoke(main, ["mould", "reject", "3-1", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert moulds.current() == {"5-2", "3-1"}
    result = runner.invoke(main, ["mould", "reject", "9-1", "--config", str(config_path)])
    assert result.exit_code == 2 and "not on a machine of 8 sections" in result.output
    result = runner.invoke(main, ["mould", "release", "5-2", "--config", str(config_path)])
    assert result.exit_code == 2 and "line.reject_moulds" in result.output
    assert runner.invoke(main, ["mould", "release", "3-1", "--config", str(config_path)]).exit_code == 0
    assert moulds.current() == {"5-2"}
    (config.data_dir / "mould_rejects.json").write_text("{not json")
    assert moulds.current() == {"5-2"}  # a broken file keeps the last good list


# -- storage and statistics ------------------------------------------------------------------

def test_moulds_are_stored_and_counted_by_edge_db_stats(tmp_path):
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    b = decision_book()
    b.reject_moulds = {"2-2"}
    with Recorder(config.database_url, config.data_dir, config.storage) as rec:
        for seq in range(1, 33):
            mould = str(delivered(seq, 8, 2))
            rec.record(to_record(decide(b, seq, mould, defect=mould == "3-1")), {})
        rec.record(to_record(decide(b, 40, None)), {})
    db = open_database(config.database_url)
    with db.session() as s:
        assert s.query(Container).filter_by(section=3, cavity=1).count() == 2
        assert s.query(Container).filter(Container.cavity.is_(None)).count() == 1
    db.close()

    runner = CliRunner()
    result = runner.invoke(main, ["db", "stats", "--by", "cavity", "--json", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["containers"] == 33 and out["by_reason"] == {"defect": 2, "mould": 2}
    rows = {g["cavity"]: g for g in out["groups"]}
    assert list(rows)[:3] == ["1-1", "1-2", "2-1"] and list(rows)[-1] == "-"
    assert rows["3-1"]["by_reason"] == {"defect": 2} and rows["3-1"]["reject_rate"] == 1.0
    assert rows["2-2"]["by_reason"] == {"mould": 2} and rows["1-1"]["passed"] == 2

    result = runner.invoke(main, ["db", "stats", "--by", "cavity,class", "--json", "--config", str(config_path)])
    assert json.loads(result.output)["groups"] == [{"cavity": "3-1", "class": "bubble", "containers": 2, "passed": None,
                                                   "rejected": 2, "reject_rate": 1.0, "by_reason": {}}]
    result = runner.invoke(main, ["db", "stats", "--by", "section,hour", "--config", str(config_path)])
    assert result.exit_code == 0 and "by section, hour:" in result.output
    result = runner.invoke(main, ["db", "stats", "--by", "mould", "--config", str(config_path)])
    assert result.exit_code == 2 and "group by cavity, section, hour, class, camera" in result.output

"""The command line's pure parts: argument parsing, levels, overrides, config advice."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pytest

from zkpy import cli
from zkpy.cli import control
from zkpy.confcheck import closest_key, config_warnings
from zkpy.config import DEFAULT_SOURCE, ConfigError, load_config, parse_properties_text


def parse(*argv: str) -> argparse.Namespace:
    return cli.server_parser().parse_args(list(argv))


@pytest.mark.parametrize("name, level", [
    ("debug", logging.DEBUG), ("DEBUG", logging.DEBUG), ("Info", logging.INFO),
    ("warn", logging.WARNING), ("WARNING", logging.WARNING), ("error", logging.ERROR),
    ("trace", logging.DEBUG), ("fatal", logging.CRITICAL), (" critical ", logging.CRITICAL),
    ("15", 15),
])
def test_log_levels_in_any_case(name: str, level: int) -> None:
    assert cli.parse_level(name) == level


def test_unknown_log_level_is_a_usage_error() -> None:
    with pytest.raises(cli.UsageError, match="unknown log level 'loud'"):
        cli.parse_level("loud")


def test_zkpy_log_level_debug_configures_debug(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        cli.configure_logging(parse(), {"ZKPY_LOG_LEVEL": "debug"})
        assert root.level == logging.DEBUG
        log_file = tmp_path / "zkpy.log"
        cli.configure_logging(parse("--log-file", str(log_file), "--log-level", "INFO"), {})
        logging.getLogger("zkpy.test").info("to the file")
        for handler in root.handlers:
            handler.flush()
        assert "to the file" in log_file.read_text()
        kinds = {type(h).__name__: h for h in root.handlers}
        assert kinds["RotatingFileHandler"].maxBytes == 64 << 20
        assert kinds["StreamHandler"].level == logging.WARNING  # stderr keeps warnings
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])


def test_flags_and_properties() -> None:
    args = parse("zoo.cfg", "--port", "2182", "--host", "127.0.0.2", "--data-dir", "d",
                 "-Dzookeeper.snapCount=10", "-D", "jute.maxbuffer=0x100000", "-Dflag")
    assert args.config == "zoo.cfg"
    assert cli.overrides_from(args) == {"clientPort": "2182", "clientPortAddress": "127.0.0.2",
                                        "dataDir": os.path.abspath("d")}
    assert cli.parse_props(args.props) == {"zookeeper.snapCount": "10",
                                           "jute.maxbuffer": "0x100000", "flag": ""}


@pytest.mark.parametrize("argv", [["--port", "x"], ["--port", "70000"], ["a.cfg", "b.cfg"],
                                  ["--bogus"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert "usage: zkpy" in capsys.readouterr().err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"], {})
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("zkpy 0.1.0")
    with pytest.raises(SystemExit):
        cli.main(["--help"], {})
    out = capsys.readouterr().out
    for word in ("--in-memory", "--data-dir", "--log-file", "status", "stop", "shell",
                 "backup", "restore", "./zkpy-data"):
        assert word in out


def test_zero_config_keeps_data_in_zkpy_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = cli.load_server_config(parse(), {})
    assert cfg.source == DEFAULT_SOURCE
    assert cfg.data_dir == str(tmp_path / "zkpy-data")
    assert (cfg.client_port_address, cfg.client_port) == ("127.0.0.1", 2181)
    cfg = cli.load_server_config(parse("--port", "2190", "--data-dir", "elsewhere"),
                                 {"JVMFLAGS": "-Dzookeeper.snapCount=7"})
    assert cfg.client_port == 2190 and cfg.data_dir == str(tmp_path / "elsewhere")
    assert cfg.snap_count == 7
    assert cli.load_server_config(parse("--in-memory"), {}, "/tmp/x").data_dir == "/tmp/x"


def test_flags_override_a_zoo_cfg(tmp_path: Path) -> None:
    path = tmp_path / "zoo.cfg"
    path.write_text(f"dataDir={tmp_path / 'd'}\nclientPort=2181\ntickTime=200\n")
    cfg = cli.load_server_config(parse(str(path), "--port", "3000", "--host", "127.0.0.1"), {})
    assert (cfg.client_port_address, cfg.client_port, cfg.tick_time) == ("127.0.0.1", 3000, 200)
    with pytest.raises(ConfigError, match="clientPort"):
        load_config(str(path), {}, {"clientPort": "http"})


def test_status_address_from_config(tmp_path: Path) -> None:
    path = tmp_path / "zoo.cfg"
    path.write_text(f"dataDir={tmp_path}\nsecureClientPort=2281\n")
    assert control.client_address(load_config(str(path))) == ("127.0.0.1", 2281, True)
    path.write_text(f"dataDir={tmp_path}\nclientPort=2181\nclientPortAddress=127.0.0.3\n")
    assert control.client_address(load_config(str(path))) == ("127.0.0.3", 2181, False)


def test_pid_file_is_written_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "d" / cli.PID_FILE
    with cli.PidFile(str(path)):
        assert cli.read_pid(str(path)) == os.getpid()
    assert not path.exists()


# --- zoo.cfg advice ------------------------------------------------------------

@pytest.mark.parametrize("typo, meant", [
    ("tickTme", "tickTime"), ("ticktime", "tickTime"), ("dataDri", "dataDir"),
    ("clientport", "clientPort"), ("4lw.command.whitelist", "4lw.commands.whitelist"),
    ("autopurge.purgeIntervall", "autopurge.purgeInterval"), ("snapcount", "snapCount"),
])
def test_did_you_mean(typo: str, meant: str) -> None:
    assert closest_key(typo) == meant


def test_warnings_name_unknown_keys_and_inline_comments() -> None:
    text = ("tickTme=2000\ndataDir=/var/lib/zk        # holds myid\nclientPort=2181\n"
            "server.1=127.0.0.1:2888:3888\nssl.keyStore.password=a #b\nsnapCount=10\n"
            "completelyDifferent=1\n")
    warnings = config_warnings(parse_properties_text(text), "zoo.cfg")
    assert len(warnings) == 4
    assert warnings[0].startswith("zoo.cfg:1: unknown key 'tickTme'")
    assert warnings[0].endswith("did you mean 'tickTime'?")
    assert warnings[1].startswith("zoo.cfg:2: the value of 'dataDir' is "
                                  "'/var/lib/zk        # holds myid'")
    assert "a #b" not in warnings[2]  # a secret's value is not logged
    assert "unknown key 'completelyDifferent'" in warnings[3]
    assert "did you mean" not in warnings[3]


def test_inline_comment_stays_in_the_value_as_in_zookeeper(tmp_path: Path) -> None:
    # Measured on ZooKeeper 3.8.0: it creates the directory "c1        # holds myid"
    # and stops on "clientPort=12185 # the port" with a NumberFormatException.
    path = tmp_path / "zoo.cfg"
    path.write_text(f"tickTime=2000   \ndataDir={tmp_path}/c1        # holds myid\n"
                    "clientPort=2181\n")
    assert load_config(str(path)).data_dir == f"{tmp_path}/c1        # holds myid"
    assert load_config(str(path)).tick_time == 2000  # trailing blanks are trimmed
    path.write_text(f"dataDir={tmp_path}\nclientPort=12185 # the port\n")
    with pytest.raises(ConfigError, match="zoo.cfg:2: clientPort: '12185 # the port'"):
        load_config(str(path))


def test_pid_file_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / cli.PID_FILE
    path.write_text(f"{os.getppid()}\n")  # our parent: alive, not us
    with cli.PidFile(str(path)):
        assert cli.read_pid(str(path)) == os.getppid()
    assert cli.read_pid(str(path)) == os.getppid()

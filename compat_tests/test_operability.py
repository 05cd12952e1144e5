"""zkpy run as an operator runs it: the README's examples, zero-config restarts,
status/stop, the shell, busy ports, the four-letter-word whitelist, logging.

The scenarios that need ZooKeeper's fixed ports (2181, 8080, 2888...) run in a
private network namespace (compat_tests/netns_scenarios.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from compat_tests.netns_scenarios import ROOT, namespaces_available, run_isolated
from zkpy.testing.launchers import (
    ServerError,
    find_apache_zookeeper,
    four_letter,
    free_port,
    server_from_name,
)

NO_NAMESPACES = namespaces_available()
isolated = pytest.mark.skipif(NO_NAMESPACES is not None,
                              reason=f"needs network namespaces: {NO_NAMESPACES}")
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def zkpy(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 60
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zkpy", *args], cwd=cwd, env=ENV, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


@isolated
def test_readme_ensemble_as_written_serves_on_one_host_with_busy_ports(tmp_path: Path) -> None:
    r = run_isolated("readme_ensemble", str(ROOT / "README.md"), str(tmp_path))
    assert "#" not in r["config"]  # pasteable: no inline comment in a value
    assert sorted(r["modes"]) == ["follower", "follower", "leader"]
    assert r["replicated"] == "from the README"
    assert r["alive"] == [True, True, True]
    assert r["exit_codes"] == [0, 0, 0]
    code, out = r["status"]
    assert code == 0 and "Client port found: 2182" in out
    assert "Mode: leader" in out or "Mode: follower" in out
    for log in r["logs"]:  # 8080 was someone else's: each member said so and served on
        assert "Problem starting AdminServer on address 0.0.0.0, port 8080" in log
        assert "serving without it" in log


@isolated
def test_zero_config_keeps_data_across_a_restart(tmp_path: Path) -> None:
    r = run_isolated("zero_config", str(tmp_path))
    assert r["first_exit"] == 0
    assert "version-2" in r["data_dir_entries"]
    assert r["after_restart"] == "kept"
    code, out, pid = r["status"]
    assert code == 0 and "Mode: standalone" in out and f"Pid: {pid}" in out
    code, out, server_exit = r["stop"]
    assert code == 0 and out.strip().endswith("STOPPED") and server_exit == 0
    code, out = r["status_after_stop"]
    assert code == 1 and "It is probably not running" in out
    assert r["in_memory_sees"] is False and r["scratch_after_restart"] is False
    assert f"data directory {tmp_path}/zkpy-data (kept across restarts)" in r["logs"]["first.log"]
    assert "deleted at exit (--in-memory)" in r["logs"]["in-memory.log"]
    assert "Started AdminServer on address 127.0.0.1, port 8080" in r["logs"]["first.log"]
    assert "Problem starting AdminServer on address 127.0.0.1, port 8080" in \
        r["logs"]["second.log"]
    assert "serving without it" in r["logs"]["second.log"]


def _server(tmp_path: Path, extra: str = "") -> tuple[Path, int]:
    port = free_port()
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"tickTime=500\ndataDir={tmp_path / 'data'}\nclientPort={port}\n"
                   f"clientPortAddress=127.0.0.1\nadmin.enableServer=false\n{extra}")
    return cfg, port


def _wait_serving(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "server exited"
        try:
            if "Mode:" in four_letter("127.0.0.1", port, "srvr", timeout=1):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "server did not come up"
        time.sleep(0.1)


def _start(tmp_path: Path, cfg: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen[Any]:
    log = open(tmp_path / "server.log", "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "zkpy", str(cfg), *args], cwd=tmp_path,
                                env=env or ENV, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def _finish(proc: subprocess.Popen[Any]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def test_status_and_stop_by_pid_file_and_by_client_port(tmp_path: Path) -> None:
    cfg, port = _server(tmp_path)
    proc = _start(tmp_path, cfg)
    try:
        _wait_serving(port, proc)
        status = zkpy("status", str(cfg), cwd=tmp_path)
        assert status.returncode == 0, status
        assert f"Client port found: {port}. Client address: 127.0.0.1." in status.stdout
        assert "Mode: standalone" in status.stdout and f"Pid: {proc.pid}" in status.stdout
        assert zkpy("stop", str(cfg), cwd=tmp_path).stdout.strip().endswith("STOPPED")
        assert proc.wait(10) == 0
        assert not (tmp_path / "data" / "zookeeper_server.pid").exists()
        assert zkpy("status", str(cfg), cwd=tmp_path).returncode == 1
        nothing = zkpy("stop", str(cfg), cwd=tmp_path)
        assert nothing.returncode == 1 and "no zkpy to stop" in nothing.stdout
        # Without its pid file, stop finds the zkpy listening on the client port.
        proc = _start(tmp_path, cfg)
        _wait_serving(port, proc)
        (tmp_path / "data" / "zookeeper_server.pid").unlink()
        assert zkpy("stop", str(cfg), cwd=tmp_path).returncode == 0
        assert proc.wait(10) == 0
    finally:
        _finish(proc)


def test_shell_from_stdin_and_one_command(tmp_path: Path) -> None:
    cfg, port = _server(tmp_path)
    proc = _start(tmp_path, cfg)
    try:
        _wait_serving(port, proc)
        target = f"127.0.0.1:{port}"
        script = ("create /app hello\ncreate -e -s /app/n x\nls /app\nget /app\n"
                  'set /app "new data"\nget -s /app\ntree /app\ngetAcl /app\n'
                  "setAcl /app world:anyone:cdrwa,digest:u:hash:r\nacl /app\n"
                  "delete /missing\nstat /app\n")
        run = zkpy("shell", target, cwd=tmp_path, stdin=script)
        lines = run.stdout.splitlines()
        assert run.returncode == 1  # one command (delete /missing) failed
        assert lines[:4] == ["Created /app", "Created /app/n0000000000", "[n0000000000]",
                             "hello"]
        assert lines[4] == "new data" and lines[5] == "cZxid = 0x2"
        assert "dataVersion = 1" in lines and "numChildren = 1" in lines
        assert lines[lines.index("/app") + 1] == "  n0000000000"
        assert ["'world,'anyone", ": cdrwa", "'world,'anyone", ": cdrwa",
                "'digest,'u:hash", ": r"] == [ln for ln in lines if ln.startswith(("'", ": "))]
        assert "Node does not exist: /missing" in lines
        one = zkpy("shell", target, "ls", "/", cwd=tmp_path)
        assert (one.returncode, one.stdout) == (0, "[app, zookeeper]\n")
        _watch_through_the_shell(tmp_path, target)
    finally:
        _finish(proc)


def _watch_through_the_shell(tmp_path: Path, target: str) -> None:
    from kazoo.client import KazooClient

    shell = subprocess.Popen([sys.executable, "-m", "zkpy", "shell", target], cwd=tmp_path,
                             env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    client = KazooClient(hosts=target)
    try:
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write("watch /app\n")
        shell.stdin.flush()
        assert shell.stdout.readline() == "watching /app\n"
        client.start()
        client.set("/app", b"changed")
        event = shell.stdout.readline()
        assert event == ("WATCHER:: WatchedEvent state:SyncConnected type:NodeDataChanged "
                         "path:/app\n")
        shell.stdin.close()
        assert shell.wait(30) == 0
    finally:
        client.stop()
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def test_member_and_standalone_with_a_taken_metrics_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        prometheus = ("metricsProvider.className=org.apache.zookeeper.metrics.prometheus."
                      f"PrometheusMetricsProvider\nmetricsProvider.httpHost=127.0.0.1\n"
                      f"metricsProvider.httpPort={taken}\n")
        cfg, _ = _server(tmp_path, prometheus)
        standalone = zkpy(str(cfg), cwd=tmp_path)  # exits by itself, as ZooKeeper does
        assert standalone.returncode == 1
        assert f"cannot start /metrics server on 127.0.0.1:{taken}" in standalone.stderr
        member_dir = tmp_path / "member"
        member_dir.mkdir()
        (member_dir / "myid").write_text("1\n")
        q, e = free_port(), free_port()
        cfg, port = _server(tmp_path, prometheus + f"dataDir={member_dir}\nstandaloneEnabled="
                            f"false\nserver.1=127.0.0.1:{q}:{e}\n")
        proc = _start(tmp_path, cfg)
        try:
            _wait_serving(port, proc)
            assert "Mode: leader" in four_letter("127.0.0.1", port, "srvr")
        finally:
            assert _finish(proc) == 0
        log = (tmp_path / "server.log").read_text()
        assert "serving without it (set metricsProvider.httpPort to move it)" in log


@pytest.mark.parametrize("kind", ["zkpy", "zookeeper"])
def test_without_a_whitelist_only_srvr_answers(kind: str) -> None:
    if kind == "zookeeper" and find_apache_zookeeper()[0] is None:
        pytest.skip("Apache ZooKeeper (Java) is not installed")
    srv = server_from_name(kind, settings={"4lw.commands.whitelist": None})
    try:
        srv.start(wait=False)  # the launcher's readiness check asks ruok, refused here
        deadline = time.monotonic() + 60
        while True:
            try:
                if srv.four_letter("srvr", timeout=1).startswith("Zookeeper version"):
                    break
            except OSError:
                pass
            assert srv.running and time.monotonic() < deadline, srv.log_tail()
            time.sleep(0.2)
        for word in ("ruok", "stat", "mntr", "conf", "isro", "envi", "wchs"):
            assert srv.four_letter(word) == f"{word} is not executed because it is not in " \
                                            "the whitelist.\n"
        assert srv.four_letter("srvr").startswith("Zookeeper version: 3.8.0")
    finally:
        srv.cleanup()


def test_unknown_key_warning_and_debug_logging_to_a_file(tmp_path: Path) -> None:
    cfg, port = _server(tmp_path, "tickTme=2000\n")
    log_file = tmp_path / "zkpy.log"
    env = dict(ENV, ZKPY_LOG_LEVEL="debug")
    proc = _start(tmp_path, cfg, "--log-file", str(log_file), env=env)
    try:
        _wait_serving(port, proc)
    finally:
        assert _finish(proc) == 0
    text = log_file.read_text()
    assert "[DEBUG]" in text
    assert "unknown key 'tickTme'" in text and "did you mean 'tickTime'?" in text
    stderr = (tmp_path / "server.log").read_text()
    assert "did you mean 'tickTime'?" in stderr and "[INFO]" not in stderr


@pytest.mark.parametrize("kind", ["zkpy", "zookeeper"])
def test_zoo_cfg_syntax_is_read_as_zookeeper_reads_it(kind: str) -> None:
    """Separators, blanks around them, trailing blanks, a continuation line, a
    \\u escape and a '#' after a value: both servers end up with the same settings;
    an empty number (a continuation into a blank line) stops both with exit code 2."""
    if kind == "zookeeper" and find_apache_zookeeper()[0] is None:
        pytest.skip("Apache ZooKeeper (Java) is not installed")
    srv = server_from_name(kind)
    try:
        base = srv.workdir / "d"
        text = ("# a comment line\n! another\n"
                f"tickTime : 700   \ndataDir = {base}/da\\\n      ta\\u0041 # kept\n"
                f"clientPort {srv.port}\nclientPortAddress=127.0.0.1\n"
                "4lw.commands.whitelist=*\nadmin.enableServer=false\n")
        srv.config_path.write_text(text)
        srv.start(timeout=60, keep_config=True)
        conf = dict(line.split("=", 1) for line in srv.four_letter("conf").splitlines()
                    if "=" in line)
        assert conf["tickTime"] == "700"
        assert conf["dataDir"] == f"{base}/dataA # kept/version-2"
        assert conf["clientPort"] == str(srv.port)
        srv.stop()
        srv.config_path.write_text(text + "maxClientCnxns=\\\n\n")
        with pytest.raises(ServerError):
            srv.start(timeout=60, keep_config=True)
        assert srv.returncode == 2
    finally:
        srv.cleanup()

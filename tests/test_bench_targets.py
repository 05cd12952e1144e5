"""What the benchmark runs as ``zkpy@<rev>``: that revision's zkpy package,
exported from git into a directory of its own and removed afterwards."""

from __future__ import annotations

import subprocess

import pytest

from bench.probe import REPO_ROOT
from bench.targets import RevisionCheckout


def _is_git_checkout() -> bool:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _is_git_checkout(), reason="not a git checkout: no revisions to export")
def test_a_revision_is_exported_and_removed() -> None:
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    co = RevisionCheckout("HEAD")
    try:
        assert co.sha == head
        assert (co.dir / "zkpy" / "__main__.py").is_file()
        assert (co.dir / "zkpy" / "server" / "core.py").is_file() or \
            (co.dir / "zkpy" / "core.py").is_file()
        assert not (co.dir / "bench").exists()  # the benchmark itself is never the old one
    finally:
        co.cleanup()
    assert not co.dir.exists()


def test_an_unknown_revision_is_refused() -> None:
    if not _is_git_checkout():
        pytest.skip("not a git checkout")
    with pytest.raises(ValueError, match="not a git revision"):
        RevisionCheckout("no-such-revision-anywhere")


def test_a_zkpy_kind_may_ask_for_the_accelerator_or_pure_python() -> None:
    from bench.targets import Kind, parse_kinds

    assert parse_kinds("zkpy+pure,zkpy+mypyc,zkpy@main+mypyc,zkpy") == [
        Kind("zkpy+pure", "zkpy", None, "off"), Kind("zkpy+mypyc", "zkpy", None, "require"),
        Kind("zkpy@main+mypyc", "zkpy", "main", "require"), Kind("zkpy", "zkpy")]
    with pytest.raises(ValueError, match="only zkpy takes a variant"):
        parse_kinds("zookeeper+mypyc")
    with pytest.raises(ValueError, match="only zkpy takes a variant"):
        parse_kinds("zkpy+fast")


def test_a_compiled_revision_whose_build_fails_is_refused_and_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``zkpy@<rev>+mypyc`` builds that revision's accelerator in its directory
    (about 1.5 min, so the build itself is exercised by the benchmarks, not
    here); a build that fails says which revision and leaves nothing behind."""
    if not _is_git_checkout():
        pytest.skip("not a git checkout")
    import bench.targets as targets

    made: list = []
    real_mkdtemp = targets.tempfile.mkdtemp
    monkeypatch.setattr(targets.tempfile, "mkdtemp",
                        lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    monkeypatch.setattr(targets.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="zkpy@HEAD: building its accelerator failed"):
        RevisionCheckout("HEAD", compiled=True)
    assert len(made) == 1 and not targets.Path(made[0]).exists()

"""pytest configuration for compat_tests."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "kazoo_suite: runs Kazoo's own test suite against zkpy and compares "
        "with Apache ZooKeeper (slow; select with -m kazoo_suite)",
    )
    config.addinivalue_line(
        "markers",
        "reference: needs Apache ZooKeeper (Java) installed",
    )

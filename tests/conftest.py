"""Shared fixtures: real servers live in tests/fixtures/ and are loaded as plugins."""

pytest_plugins = ["tests.fixtures.s3_server", "tests.fixtures.postgres", "tests.fixtures.platform"]

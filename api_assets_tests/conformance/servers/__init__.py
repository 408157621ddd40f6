"""The conformance suite's server apps: small apps on third-party frameworks, each started as a
subprocess (`python -m api_assets_tests.conformance.servers.<app> --port N`) by a fixture."""

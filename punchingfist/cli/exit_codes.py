"""The exit codes of the `punchingfist` command."""

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_FAILED = 1
"""`run`: the Workflow ran and did not succeed."""

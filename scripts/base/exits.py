"""The exit codes of DESIGN.md, shared by every layer: 0 ok, 1 an expectation failed,
2 bad usage, 77 skipped, 99 harness or system failure."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SKIP, EXIT_SYSTEM = 0, 1, 2, 77, 99

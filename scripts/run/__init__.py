"""One scenario into one run directory: runner.py (with timeline.py, the RSS/threads sampler)
and gateway.py (the rw_gateway load driver)."""

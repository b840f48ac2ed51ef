"""Looking into a live process from outside: threads.py is the Python half of `leaklab threads PID`
(the C half, threaddump, is in threadcheck/outside/)."""

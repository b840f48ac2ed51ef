"""What every layer shares and that imports nothing of leaklab: exits.py (the exit codes),
eventlog.py (the events.jsonl reader)."""

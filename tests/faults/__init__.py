"""The fault suite: real PostgreSQL, Redis, server, Celery and agent processes of its own, and real
faults (kill -9, SIGSTOP, service restarts). See stack.py and ledger.py."""

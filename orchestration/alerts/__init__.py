"""SLA alerts: policies, the evaluator that opens and resolves incidents, and notifications.

- ``models.py``      the tables (registered with the orchestration app)
- ``selectors.py``   every read: policies, incidents, channels, deliveries, coverage previews, p95s
- ``policies.py``    policy writes (create, update, pause, delete; SDK registration) with audit rows
- ``evaluator.py``   the one evaluation pass: each kind's breaches now, by the database clock
- ``incidents.py``   open / deduplicate / correlate / resolve, acknowledge and snooze, timeline, events
- ``actions.py``     what a policy does on a breach (cancel, fail, pause schedules), through the engine
- ``triggers.py``    the engine's hook: a run that starts or ends has its flow's policies evaluated now
- ``tasks_evaluate.py``, ``tasks_delivery.py``  the Celery adapters (registered via ``orchestration.tasks``)
- ``messages.py``    what each channel kind is sent
- ``channels.py``    notification channel writes and target checks (A2)
- ``delivery.py``    the messages and their delivery with retries; the one server module that sends HTTP
"""
